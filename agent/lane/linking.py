"""Linking a passage's tags to the cache: roles, driver, truck, trailers, trip, shipments.

Tag roles come from the record that names the EPC (a driver's `card_epc`, a truck's
`transponder_epc`, a trailer's `tag_epc`). The trip is looked up by the conveyance
first and by the drivers only when the conveyance gives none; a trip is a candidate
when its ETA lies within `eta_window_h` of now. Both countries may hold a trip for
the same truck (export and import manifests); more than one candidate *from one
source* is ambiguous (`multiple_trips`), and among sources the entering country's
trip is the one reported, as the officer at this booth works for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.lane.passage import Passage, TagSighting
from agent.lane.lookup import CacheLookup


@dataclass
class Linked:
    tags: list[tuple[TagSighting, str]]  # (sighting, role)
    drivers: list[tuple[str, dict]] = field(default_factory=list)  # (source, record)
    conveyance: tuple[str, dict] | None = None
    equipment: list[tuple[str, dict]] = field(default_factory=list)
    trip: tuple[str, dict] | None = None
    trip_candidates: list[tuple[str, dict]] = field(default_factory=list)
    trip_ambiguous: bool = False
    shipments: list[dict] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def link(passage: Passage, cache: CacheLookup, min_reads: int, entering: str, now_ms: int, eta_window_h: float) -> Linked:
    linked = Linked(tags=[])
    for sighting in passage.qualifying(min_reads):
        records = cache.tagged(sighting.epc)
        role = records[0][1] if records else "unknown"
        linked.tags.append((sighting, role))
        if not records:
            linked.unknown.append(sighting.epc)
        for source, kind, rec in records:
            if kind == "driver":
                linked.drivers.append((source, rec))
            elif kind == "conveyance" and linked.conveyance is None:
                linked.conveyance = (source, rec)
            elif kind == "equipment":
                linked.equipment.append((source, rec))

    window_ms = eta_window_h * 3600_000
    in_window = lambda trip: trip.get("eta_ms") is not None and abs(trip["eta_ms"] - now_ms) <= window_ms  # noqa: E731
    candidates: dict[tuple[str, str], dict] = {}
    if linked.conveyance:
        source, rec = linked.conveyance
        for trip in cache.trips_of_conveyance(source, rec["id"]):
            candidates[(source, trip["id"])] = trip
    if not any(in_window(t) for t in candidates.values()):
        candidates = {}
        for source, rec in linked.drivers:
            for trip in cache.trips_of_member(source, "driver", rec["id"]):
                candidates[(source, trip["id"])] = trip
    linked.trip_candidates = [(s, t) for (s, _), t in sorted(candidates.items()) if in_window(t)]

    per_source: dict[str, list[dict]] = {}
    for source, trip in linked.trip_candidates:
        per_source.setdefault(source, []).append(trip)
    linked.trip_ambiguous = any(len(trips) > 1 for trips in per_source.values())
    if per_source and not linked.trip_ambiguous:
        source = entering if entering in per_source else sorted(per_source)[0]
        linked.trip = (source, per_source[source][0])
        for sid in linked.trip[1].get("shipments", []):
            shipment = cache.record(source, "shipment", sid)
            linked.shipments.append(shipment or {"id": sid, "missing": True})
    return linked
