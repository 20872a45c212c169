"""Trust: the trusted-traveller and trusted-trader programmes, with mutual recognition (DESIGN 2.7).

A driver is trusted when the card is valid and unexpired and the driver holds one of
`programs.drivers`. A company (the trip's carrier, a shipment's importer) is trusted
when its programmes hold one the *entering* country recognises
(`programs.companies[entering]`: the country that decides at this booth decides which
foreign programmes count, which is where mutual recognition lives); a shipment also
when `trusted_trader` is true (the older form). A crossing is trusted when a trip is
linked, every linked driver, the trip's carrier and every shipment of the trip are
trusted. A record of any source counts: a carrier, driver or shipment is trusted when
any country's record of it qualifies. Without `[programs]` nothing is trusted.

Everything here is pure: records come through the `CacheLookup`, the time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import ProgramsConfig
from agent.lane.linking import Linked
from agent.lane.lookup import CacheLookup

TRUSTED, STANDARD = "trusted", "standard"
TIERS = (TRUSTED, STANDARD)


def driver_trusted(driver: dict, programs: ProgramsConfig | None, now_ms: int) -> bool:
    """Valid (status exactly "valid"), unexpired (no `card_expires_ms`: no expiry) and in a driver programme."""
    if programs is None or driver.get("status") != "valid":
        return False
    expires = driver.get("card_expires_ms")
    if isinstance(expires, int) and not isinstance(expires, bool) and expires <= now_ms:
        return False
    return bool(_programmes(driver) & set(programs.drivers))


def company_trusted(company: dict, programs: ProgramsConfig | None, entering: str) -> bool:
    """A carrier record: one of its programmes is recognised by the entering country."""
    return programs is not None and bool(_programmes(company) & programs.recognised(entering))


def shipment_trusted(shipment: dict, programs: ProgramsConfig | None, entering: str) -> bool:
    """The importer's programmes are recognised by the entering country, or `trusted_trader` is true."""
    if programs is None:
        return False
    return shipment.get("trusted_trader") is True or company_trusted(shipment, programs, entering)


def _programmes(record: dict) -> set[str]:
    names = record.get("programs")
    return {p for p in names if isinstance(p, str)} if isinstance(names, (list, tuple)) else set()


@dataclass(frozen=True)
class Trust:
    """The verdict on one crossing, and what kept it from being trusted (record ids only)."""

    trusted: bool
    trip: bool  # a trip was linked
    drivers: tuple[str, ...] = ()  # linked drivers not trusted, sorted
    carrier: str | None = None  # the carrier when not trusted (no trip: the conveyance's), else None
    shipments: tuple[str, ...] = ()  # the trip's shipments not trusted (or with no record), sorted

    @property
    def tier(self) -> str:
        return TRUSTED if self.trusted else STANDARD

    def fast_detail(self) -> dict:
        """The detail of `not_fast_eligible`, exactly as DESIGN 2.7 gives it."""
        return {"drivers": list(self.drivers), "carrier": self.carrier, "shipments": list(self.shipments),
                "trip": self.trip}


def assess(linked: Linked, cache: CacheLookup, programs: ProgramsConfig | None, entering: str,
           now_ms: int) -> Trust:
    """Whether the crossing is trusted (DESIGN 2.7), with the untrusted parts named."""
    qualifies: dict[str, bool] = {}
    for _, driver in linked.drivers:  # one driver may come from both countries' records
        qualifies[driver["id"]] = qualifies.get(driver["id"], False) or driver_trusted(driver, programs, now_ms)
    drivers = tuple(sorted(rid for rid, ok in qualifies.items() if not ok))

    trip = linked.trip[1] if linked.trip else None
    if trip is not None:
        carrier_id = trip.get("carrier")
    else:
        carrier_id = linked.conveyance[1].get("carrier") if linked.conveyance else None
    carrier_ok = isinstance(carrier_id, str) and any(
        company_trusted(rec, programs, entering) for _, rec in cache.records("carrier", carrier_id))

    shipments: tuple[str, ...] = ()
    if trip is not None:
        shipments = tuple(sorted({str(sid) for sid in trip.get("shipments", ()) if not any(
            shipment_trusted(rec, programs, entering) for _, rec in cache.records("shipment", str(sid)))}))

    trusted = (trip is not None and bool(linked.drivers) and not drivers and carrier_ok and not shipments)
    return Trust(trusted=trusted, trip=trip is not None, drivers=drivers,
                 carrier=None if carrier_ok else carrier_id, shipments=shipments)
