"""One lane's cache, generated: carriers, trucks with their crews, trips, lookouts (DESIGN 2.6).

`Fleet.generate(seed, now_ms)` builds the records both back ends push down before the
day's traffic, plus the `Crew` of every truck (its tags, and what the lane should find
when it drives through). The same seed and `now_ms` always give the same fleet. The
first crews play the demo's cases: a clean trip, a truck with no manifest, a driver
with a lookout, a driver whose card was revoked; every other crew is ordinary traffic.
Spare drivers, tomorrow's trips and expired lookouts fill the cache around them, as
in a real one, without changing what any crew should produce.

Programme memberships (DESIGN 2.7) are realistic: carriers in their home country's
programme (PIP, C-TPAT) except every fourth, which is in none, and one in the EU's AEO,
which only the US recognises; most drivers in FAST, more so on trusted carriers; most
importers of a trusted carrier's trips in a recognised programme. Each crew knows
whether it crosses trusted (`Crew.trusted`), and so what a FAST lane must find.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from simulators.fleet import identity as ids

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CASES = ("clean", "no_trip", "lookout_hit", "credential_revoked", "not_fast_eligible")
ORDINARY = "ordinary"
MIN_TRUCKS = 4  # the cases before not_fast_eligible; a fleet of 4 simply has no FAST showcase
KINDS = ("carrier", "driver", "conveyance", "equipment", "trip", "shipment", "lookout")  # the order records go out in
# What each case must make a general lane find (DESIGN 2.5 finding codes); ordinary = clean.
# A FAST lane adds not_fast_eligible to every crew that is not trusted (`Crew.findings_on`).
EXPECTED_FINDINGS = {"clean": (), "no_trip": ("no_trip",), "lookout_hit": ("lookout_hit",),
                     "credential_revoked": ("credential_revoked",), "not_fast_eligible": (), ORDINARY: ()}

# The programme world (DESIGN 2.7), as config/agent.example.toml recognises it: FAST for
# drivers; Canada's PIP and the US's C-TPAT recognised by both countries (their mutual
# recognition arrangement); the EU's AEO recognised by the US only.
DRIVER_PROGRAMMES = ("FAST",)
RECOGNISED = {"CA": ("PIP", "C-TPAT"), "US": ("C-TPAT", "PIP", "EU-AEO")}
HOME_PROGRAMME = {"CA": "PIP", "US": "C-TPAT"}
ONE_COUNTRY_CARRIER = 4  # the carrier index whose only programme (EU-AEO) one country alone recognises
UNTRUSTED_SHARE = 0.25  # carriers, importers and (on untrusted carriers) drivers in no programme
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
    country: str  # where the carrier is based: decides its plate regions, and which back end knows it
    programs: tuple[str, ...] = ()

    @property
    def regions(self) -> tuple[str, ...]:
        return ids.CA_REGIONS if self.country == "CA" else ids.US_REGIONS

    def trusted_entering(self, entering: str) -> bool:
        return bool(set(self.programs) & set(RECOGNISED.get(entering, ())))

    def record(self) -> dict:
        return {"kind": "carrier", "id": self.code, "name": f"{self.code} Transport", "programs": list(self.programs)}


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
    trusted: bool = False  # the crossing is trusted entering the fleet's country (DESIGN 2.7)

    @property
    def epcs(self) -> tuple[str, ...]:
        return self.card_epcs + (self.transponder_epc,) + self.trailer_epcs

    @property
    def expected_findings(self) -> tuple[str, ...]:
        return EXPECTED_FINDINGS[self.case]

    def findings_on(self, lane_kind: str = "general") -> tuple[str, ...]:
        """What the lane must find: a FAST lane adds not_fast_eligible when the crew is not trusted."""
        extra = ("not_fast_eligible",) if lane_kind == "fast" and not self.trusted else ()
        return self.expected_findings + extra

    @property
    def tier(self) -> str:
        return "trusted" if self.trusted else "standard"


def id_width(count: int) -> int:
    return max(4, len(str(max(count - 1, 0))))


# --- record builders (shared with the big-cache generator) -------------------------------

def driver_record(rng: random.Random, seed: int, index: int, now_ms: int, width: int,
                  status: str = "valid", fast: bool | None = None) -> dict:
    """`fast`: whether the driver holds a FAST card (None: most do)."""
    if fast is None:
        fast = rng.random() >= UNTRUSTED_SHARE
    programs = [] if not fast else ["FAST"] if rng.random() < 0.85 else ["FAST", "NEXUS"]
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


def shipment_record(rng: random.Random, shipment_id: str, trip_id: str, entering: str = "CA",
                    trusted: bool | None = None) -> dict:
    """The importer of record is the consignee; `trusted`: whether the importer is in a programme
    the entering country recognises (None: most are). A tenth of the trusted ones still come in
    the older form only (`trusted_trader: true`, no programmes)."""
    if trusted is None:
        trusted = rng.random() >= UNTRUSTED_SHARE
    consignee = ids.company_name(rng)
    older_form = trusted and rng.random() < 0.1
    programs = [] if not trusted or older_form else [HOME_PROGRAMME.get(entering, "PIP")]
    return {"kind": "shipment", "id": shipment_id, "trip": trip_id, "shipper": ids.company_name(rng),
            "consignee": consignee, "importer": consignee, "description": rng.choice(ids.GOODS),
            "programs": programs, "trusted_trader": older_form}


def lookout_record(rng: random.Random, lookout_id: str, subject_kind: str, subject: str,
                   expires_ms: int) -> dict:
    reason, severity = rng.choice(LOOKOUT_REASONS)
    return {"kind": "lookout", "id": lookout_id, "subject_kind": subject_kind, "subject": subject,
            "reason": reason, "severity": severity, "expires_ms": expires_ms}


def carriers_for(entering: str, leaving: str, count: int) -> tuple[Carrier, ...]:
    """Carriers based alternately in each country, each in its home programme, except: carrier
    ONE_COUNTRY_CARRIER holds only the EU's AEO (recognised by the US alone), and every fourth
    from index 3 on holds none."""
    def programs(i: int, country: str) -> tuple[str, ...]:
        if i == ONE_COUNTRY_CARRIER:
            return ("EU-AEO",)
        if i % 4 == 3:
            return ()
        return (HOME_PROGRAMME.get(country, "PIP"),)
    return tuple(Carrier(ids.carrier_code(i), c, programs(i, c))
                 for i, c in ((i, entering if i % 2 == 0 else leaving) for i in range(count)))


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

    def driver(self, status: str = "valid", fast: bool | None = None) -> dict:
        record = driver_record(self.rng, self.seed, self.next_driver, self.now_ms, self.width, status, fast)
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
             equipment: list[str], trusted_importers: bool | None = None) -> tuple[str, bool]:
        """A trip and its shipments; returns (trip id, every shipment trusted)."""
        trip_id = f"TRIP-{carrier.code}-{self.next_trip:06d}"
        self.next_trip += 1
        shipments = []
        all_trusted = True
        for _ in range(self.rng.choice((1, 1, 2, 3)) if equipment else 0):  # a bobtail hauls nothing
            shipment_id = f"SHP-{carrier.code}-{self.next_shipment:06d}"
            self.next_shipment += 1
            record = shipment_record(self.rng, shipment_id, trip_id, self.entering, trusted_importers)
            all_trusted &= record["trusted_trader"] or bool(set(record["programs"]) & set(RECOGNISED[self.entering]))
            shipments.append(self.add(self.entering, record)["id"])
        self.add(self.entering, trip_record(trip_id, carrier.code, self.port_code, eta_ms, conveyance,
                                            drivers, equipment, shipments))
        return trip_id, all_trusted

    def crew(self, index: int, case: str, carrier: Carrier) -> Crew:
        rng = self.rng
        truck = self.add(self.entering, conveyance_record(rng, self.seed, index, self.now_ms, self.width, carrier))
        team = rng.random() < 0.2
        # most FAST drivers drive for trusted carriers; the showcases are all FAST
        carrier_trusted = carrier.trusted_entering(self.entering)
        showcase = case in ("clean", "not_fast_eligible")
        drivers = [self.driver("revoked" if case == "credential_revoked" and n == 0 else "valid",
                               fast=True if showcase else rng.random() < (0.9 if carrier_trusted else 0.4))
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
        trip_id, shipments_trusted = None, False
        if case != "no_trip":
            eta = self.now_ms + rng.randrange(5 * 60_000, 6 * HOUR_MS)
            # a trusted carrier mostly hauls for trusted importers; the rest is a mix
            importers = True if showcase or (carrier_trusted and rng.random() < 0.85) else None
            trip_id, shipments_trusted = self.trip(carrier, eta, truck["id"], driver_ids, trailer_ids, importers)
            if case == ORDINARY and rng.random() < 0.25:
                # tomorrow's trip is already filed; outside the ETA window, it is no candidate
                self.trip(carrier, self.now_ms + rng.randrange(26 * HOUR_MS, 34 * HOUR_MS), truck["id"],
                          driver_ids, trailer_ids)
        trusted = (trip_id is not None and shipments_trusted and carrier_trusted
                   and all(d["status"] == "valid" and d["programs"] for d in drivers))
        lookout = None
        if case == "lookout_hit":
            record = self.lookout(self.leaving, "driver", driver_ids[0], self.now_ms + 30 * DAY_MS)
            lookout = (self.leaving, record["id"])
        return Crew(case, carrier.code, truck["id"], truck["transponder_epc"], tuple(driver_ids),
                    tuple(d["card_epc"] for d in drivers), tuple(trailer_ids),
                    tuple(t["tag_epc"] for t in trailers), trip_id, lookout, trusted)


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
        if trucks < MIN_TRUCKS:
            raise ValueError(f"trucks must be at least {MIN_TRUCKS}, one per demo case (the FAST case from 5)")
        b = _Builder(seed, now_ms, port_code, entering, leaving, trucks, random.Random(f"fleet/{seed}"))
        b.records = {entering: [], leaving: []}
        carriers = carriers_for(entering, leaving, max(len(CASES) + 3, trucks // 5))
        # each case gets a carrier of its own, so a carrier lookout never blurs two cases; the clean
        # showcase a trusted one, not_fast_eligible the one recognised by one country only
        assert carriers[0].trusted_entering(entering) and not carriers[ONE_COUNTRY_CARRIER].trusted_entering(entering)
        for carrier in carriers:  # each country's back end publishes the carriers based there
            b.add(carrier.country, carrier.record())
        for index in range(trucks):
            case = CASES[index] if index < len(CASES) else ORDINARY
            if index < len(CASES):
                carrier = carriers[index]
            else:  # most general traffic on trusted carriers, a share on carriers in no programme
                want_trusted = b.rng.random() < 0.7
                pool = [c for c in carriers[len(CASES):] if c.trusted_entering(entering) == want_trusted]
                carrier = b.rng.choice(pool or carriers[len(CASES):])
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
