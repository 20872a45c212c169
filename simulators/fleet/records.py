"""One lane's cache, generated: carriers, trucks with their crews, trips, lookouts (DESIGN 2.6).

`Fleet.generate(seed, now_ms)` builds the records both back ends push down before the
day's traffic, plus the `Crew` of every truck (its tags, and what the lane should find
when it drives through). The same seed and `now_ms` always give the same fleet. The
first crews play the demo's cases: a clean trip, a truck with no manifest, a driver
with a lookout, a driver whose card was revoked; every other crew is ordinary traffic.
Spare drivers, tomorrow's trips and expired lookouts fill the cache around them, as
in a real one, without changing what any crew should produce.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from simulators.fleet import identity as ids

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CASES = ("clean", "no_trip", "lookout_hit", "credential_revoked")
ORDINARY = "ordinary"
KINDS = ("driver", "conveyance", "equipment", "trip", "shipment", "lookout")  # the order records go out in
# What each case must make the lane find (DESIGN 2.5 finding codes); ordinary = clean.
EXPECTED_FINDINGS = {"clean": (), "no_trip": ("no_trip",), "lookout_hit": ("lookout_hit",),
                     "credential_revoked": ("credential_revoked",), ORDINARY: ()}
LOOKOUT_REASONS = (
    ("possible identity fraud: verify documents", "high"),
    ("previous narcotics seizure", "high"),
    ("agricultural violation history", "medium"),
    ("undeclared currency, prior", "medium"),
    ("random compliance verification", "low"),
)


@dataclass(frozen=True)
class Carrier:
    code: str
    country: str  # where the carrier is based: decides its plate regions

    @property
    def regions(self) -> tuple[str, ...]:
        return ids.CA_REGIONS if self.country == "CA" else ids.US_REGIONS


@dataclass(frozen=True)
class Crew:
    """One truck as it will drive through the lane: its ids, its tags and its case."""

    case: str  # one of CASES or ORDINARY
    carrier: str
    conveyance: str
    transponder_epc: str
    drivers: tuple[str, ...]
    card_epcs: tuple[str, ...]
    equipment: tuple[str, ...]
    trailer_epcs: tuple[str, ...]
    trip: str | None
    lookout: tuple[str, str] | None = None  # (source, lookout id) that must hit

    @property
    def epcs(self) -> tuple[str, ...]:
        return self.card_epcs + (self.transponder_epc,) + self.trailer_epcs

    @property
    def expected_findings(self) -> tuple[str, ...]:
        return EXPECTED_FINDINGS[self.case]


def id_width(count: int) -> int:
    return max(4, len(str(max(count - 1, 0))))


# --- record builders (shared with the big-cache generator) -------------------------------

def driver_record(rng: random.Random, seed: int, index: int, now_ms: int, width: int,
                  status: str = "valid") -> dict:
    programs = ["FAST"] if rng.random() < 0.85 else ["FAST", "NEXUS"]
    return {"kind": "driver", "id": f"DRV-{index:0{width}d}", "name": ids.person_name(rng),
            "card_epc": ids.card_epc(seed, index),
            "card_expires_ms": now_ms + rng.randrange(60, 5 * 365) * DAY_MS,
            "status": status, "programs": programs}


def conveyance_record(rng: random.Random, seed: int, index: int, now_ms: int, width: int,
                      carrier: Carrier) -> dict:
    region = rng.choice(carrier.regions)
    return {"kind": "conveyance", "id": f"TRK-{index:0{width}d}", "vin": ids.vin(rng),
            "plate": ids.plate(rng, region), "plate_region": region, "carrier": carrier.code,
            "transponder_epc": ids.transponder_epc(seed, index),
            "decal_expires_ms": now_ms + rng.randrange(30, 365) * DAY_MS, "status": "valid"}


def equipment_record(rng: random.Random, seed: int, index: int, width: int, carrier: Carrier,
                     loaded: bool) -> dict:
    region = rng.choice(carrier.regions)
    return {"kind": "equipment", "id": f"TRL-{index:0{width}d}",
            "number": f"{carrier.code}{rng.randrange(1000, 99999)}", "plate": ids.plate(rng, region),
            "plate_region": region, "tag_epc": ids.trailer_epc(seed, index),
            "seals": [ids.seal_number(rng)] if loaded else []}


def trip_record(trip_id: str, carrier: str, port_code: str, eta_ms: int, conveyance: str,
                drivers: list[str], equipment: list[str], shipments: list[str]) -> dict:
    return {"kind": "trip", "id": trip_id, "carrier": carrier, "port": port_code, "eta_ms": eta_ms,
            "conveyance": conveyance, "drivers": drivers, "equipment": equipment, "shipments": shipments}


def shipment_record(rng: random.Random, shipment_id: str, trip_id: str) -> dict:
    return {"kind": "shipment", "id": shipment_id, "trip": trip_id, "shipper": ids.company_name(rng),
            "consignee": ids.company_name(rng), "description": rng.choice(ids.GOODS),
            "trusted_trader": rng.random() < 0.4}


def lookout_record(rng: random.Random, lookout_id: str, subject_kind: str, subject: str,
                   expires_ms: int) -> dict:
    reason, severity = rng.choice(LOOKOUT_REASONS)
    return {"kind": "lookout", "id": lookout_id, "subject_kind": subject_kind, "subject": subject,
            "reason": reason, "severity": severity, "expires_ms": expires_ms}


def carriers_for(entering: str, leaving: str, count: int) -> tuple[Carrier, ...]:
    return tuple(Carrier(ids.carrier_code(i), entering if i % 2 == 0 else leaving) for i in range(count))


# --- the fleet ---------------------------------------------------------------------------

@dataclass
class _Builder:
    """Mutable state while generating; `Fleet` is the frozen result."""

    seed: int
    now_ms: int
    port_code: str
    entering: str
    leaving: str
    trucks: int
    rng: random.Random
    records: dict[str, list[dict]] = field(default_factory=dict)
    crews: list[Crew] = field(default_factory=list)
    next_driver: int = 0
    next_trailer: int = 0
    next_trip: int = 0
    next_shipment: int = 0
    lookouts: dict[str, int] = field(default_factory=dict)

    def add(self, source: str, record: dict) -> dict:
        self.records.setdefault(source, []).append(record)
        return record

    def driver(self, status: str = "valid") -> dict:
        record = driver_record(self.rng, self.seed, self.next_driver, self.now_ms, self.width, status)
        self.next_driver += 1
        return self.add(self.entering, record)

    @property
    def width(self) -> int:
        return id_width(self.trucks * 4)

    def lookout(self, source: str, subject_kind: str, subject: str, expires_ms: int) -> dict:
        n = self.lookouts[source] = self.lookouts.get(source, 0) + 1
        return self.add(source, lookout_record(self.rng, f"LKO-{source}-{n:04d}", subject_kind, subject,
                                               expires_ms))

    def trip(self, carrier: Carrier, eta_ms: int, conveyance: str, drivers: list[str],
             equipment: list[str]) -> str:
        trip_id = f"TRIP-{carrier.code}-{self.next_trip:06d}"
        self.next_trip += 1
        shipments = []
        for _ in range(self.rng.choice((1, 1, 2, 3)) if equipment else 0):  # a bobtail hauls nothing
            shipment_id = f"SHP-{carrier.code}-{self.next_shipment:06d}"
            self.next_shipment += 1
            shipments.append(self.add(self.entering, shipment_record(self.rng, shipment_id, trip_id))["id"])
        self.add(self.entering, trip_record(trip_id, carrier.code, self.port_code, eta_ms, conveyance,
                                            drivers, equipment, shipments))
        return trip_id

    def crew(self, index: int, case: str, carrier: Carrier) -> Crew:
        rng = self.rng
        truck = self.add(self.entering, conveyance_record(rng, self.seed, index, self.now_ms, self.width, carrier))
        team = rng.random() < 0.2
        drivers = [self.driver("revoked" if case == "credential_revoked" and n == 0 else "valid")
                   for n in range(2 if team else 1)]
        trailer_count = rng.choices((0, 1, 2), weights=(10, 75, 15))[0]
        if case == "clean":
            trailer_count = max(1, trailer_count)  # the showcase crossing links a trailer too
        loaded = rng.random() < 0.85
        trailers = []
        for _ in range(trailer_count):
            trailers.append(self.add(self.entering, equipment_record(
                rng, self.seed, self.next_trailer, self.width, carrier, loaded)))
            self.next_trailer += 1
        driver_ids, trailer_ids = [d["id"] for d in drivers], [t["id"] for t in trailers]
        trip_id = None
        if case != "no_trip":
            eta = self.now_ms + rng.randrange(5 * 60_000, 6 * HOUR_MS)
            trip_id = self.trip(carrier, eta, truck["id"], driver_ids, trailer_ids)
            if case == ORDINARY and rng.random() < 0.25:
                # tomorrow's trip is already filed; outside the ETA window, it is no candidate
                self.trip(carrier, self.now_ms + rng.randrange(26 * HOUR_MS, 34 * HOUR_MS), truck["id"],
                          driver_ids, trailer_ids)
        lookout = None
        if case == "lookout_hit":
            record = self.lookout(self.leaving, "driver", driver_ids[0], self.now_ms + 30 * DAY_MS)
            lookout = (self.leaving, record["id"])
        return Crew(case, carrier.code, truck["id"], truck["transponder_epc"], tuple(driver_ids),
                    tuple(d["card_epc"] for d in drivers), tuple(trailer_ids),
                    tuple(t["tag_epc"] for t in trailers), trip_id, lookout)


@dataclass(frozen=True)
class Fleet:
    """A lane's cache records by source, and the crews that will drive through it.

    Record split by source (the truck enters `entering`, which holds its e-Manifest):
    the entering country's back end publishes drivers, conveyances, equipment, trips,
    shipments and its own lookouts; the leaving country's back end publishes only its
    own lookouts. A finding for a lookout names the lookout's source.
    """

    seed: int
    now_ms: int
    port_code: str
    entering: str
    leaving: str
    crews: tuple[Crew, ...]
    records_by_source: dict[str, tuple[dict, ...]]

    @classmethod
    def generate(cls, seed: int = 1, now_ms: int | None = None, trucks: int = 40, port_code: str = "0901",
                 entering: str = "CA", leaving: str = "US") -> "Fleet":
        """`trucks` crews (at least one per case), 3 spare drivers per truck, lookouts.

        Times (ETAs, expiries) are relative to `now_ms` (default: the current time); pass
        it explicitly for a reproducible fleet.
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if trucks < len(CASES):
            raise ValueError(f"trucks must be at least {len(CASES)}, one per demo case")
        b = _Builder(seed, now_ms, port_code, entering, leaving, trucks, random.Random(f"fleet/{seed}"))
        b.records = {entering: [], leaving: []}
        carriers = carriers_for(entering, leaving, max(4, trucks // 5))
        for index in range(trucks):
            case = CASES[index] if index < len(CASES) else ORDINARY
            # each case gets a carrier of its own, so a carrier lookout never blurs two cases
            carrier = carriers[index] if index < len(CASES) else b.rng.choice(carriers[len(CASES):] or carriers)
            b.crews.append(b.crew(index, case, carrier))
        spares = [b.driver("revoked" if b.rng.random() < 0.03 else "valid") for _ in range(3 * trucks)]
        # Lookouts that must never hit a crew: spare drivers, an unknown transponder
        # (reported stolen), and expired ones on carriers that ordinary trucks use.
        for source in (entering, leaving):
            for spare in b.rng.sample(spares, min(3, len(spares))):
                b.lookout(source, "driver", spare["id"], now_ms + b.rng.randrange(1, 90) * DAY_MS)
        b.lookout(entering, "epc", ids.transponder_epc(seed, 2**40 + 7), now_ms + 60 * DAY_MS)
        b.lookout(entering, "carrier", b.crews[-1].carrier, now_ms - DAY_MS)
        b.lookout(leaving, "conveyance", b.crews[-1].conveyance, now_ms - 2 * HOUR_MS)
        return cls(seed, now_ms, port_code, entering, leaving, tuple(b.crews),
                   {source: tuple(sorted(records, key=lambda r: KINDS.index(r["kind"])))
                    for source, records in b.records.items()})

    @property
    def sources(self) -> tuple[str, str]:
        return self.entering, self.leaving

    def records_for(self, source: str) -> list[dict]:
        """The records `source`'s back end publishes (copies: callers may change them)."""
        return [dict(r) for r in self.records_by_source.get(source, ())]

    def cache_message(self, source: str, seq: int = 1, op: str = "snapshot") -> dict:
        """A DESIGN 2.6 cache message holding all of `source`'s records."""
        return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op,
                "records": self.records_for(source)}

    def record(self, kind: str, record_id: str) -> dict | None:
        """The record of that kind and id from any source, or None."""
        for records in self.records_by_source.values():
            for r in records:
                if r["kind"] == kind and r["id"] == record_id:
                    return r
        return None

    def crew(self, case: str) -> Crew:
        """The first crew playing `case`."""
        return next(c for c in self.crews if c.case == case)

    def scenario(self, **kwargs):
        """The reader scenario driving these crews through the lane; see `plan_scenario`."""
        from simulators.fleet.scenario import plan_scenario

        return plan_scenario(self, **kwargs)
