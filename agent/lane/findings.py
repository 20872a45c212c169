"""What the officer should know about a linked passage, and the referral hint (2.5, 2.7).

Each finding is `{code, detail}`; `detail` names record ids, never personal data, so
the findings section can go to every back end that shares it. A lookout hit carries
only `{source, lookout_id}`; the lookout itself travels in the alert.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from agent.lane.linking import Linked
from agent.lane.lookup import CacheLookup


@dataclass(frozen=True)
class LookoutHit:
    source: str
    lookout: dict


def findings_for(linked: Linked, cache: CacheLookup, now_ms: int) -> tuple[list[dict], list[LookoutHit]]:
    findings: list[dict] = []
    add = lambda code, **detail: findings.append({"code": code, "detail": detail})  # noqa: E731

    hits = _lookout_hits(linked, cache, now_ms)
    for hit in hits:
        add("lookout_hit", source=hit.source, lookout_id=hit.lookout["id"])
    if linked.trip_ambiguous:
        add("multiple_trips", trips=sorted(t["id"] for _, t in linked.trip_candidates))
    elif linked.trip is None:
        add("no_trip", by="conveyance" if linked.conveyance else ("driver" if linked.drivers else None))
    if linked.trip is not None:
        trip = linked.trip[1]
        on_trip_drivers, on_trip_equipment = set(trip.get("drivers", [])), set(trip.get("equipment", []))
        for _, driver in linked.drivers:
            if driver["id"] not in on_trip_drivers:
                add("driver_not_on_trip", driver=driver["id"], trip=trip["id"])
        for _, equipment in linked.equipment:
            if equipment["id"] not in on_trip_equipment:
                add("equipment_not_on_trip", equipment=equipment["id"], trip=trip["id"])
    if linked.conveyance is None:
        add("no_conveyance_tag")
    if not linked.drivers:
        add("no_driver_card")
    for epc in linked.unknown:
        add("unknown_tag", epc=epc)
    credentials = [("driver", r, "card_expires_ms") for _, r in linked.drivers]
    if linked.conveyance:
        credentials.append(("conveyance", linked.conveyance[1], "decal_expires_ms"))
    for kind, rec, expiry in credentials:
        if rec.get("status") == "revoked":
            add("credential_revoked", kind=kind, id=rec["id"])
        if isinstance(rec.get(expiry), int) and rec[expiry] <= now_ms:
            add("credential_expired", kind=kind, id=rec["id"], expired_ms=rec[expiry])
    return findings, hits


def _lookout_hits(linked: Linked, cache: CacheLookup, now_ms: int) -> list[LookoutHit]:
    subjects: list[tuple[str, str]] = [("epc", s.epc) for s, _ in linked.tags]
    subjects += [("driver", r["id"]) for _, r in linked.drivers]
    subjects += [("equipment", r["id"]) for _, r in linked.equipment]
    carriers = set()
    if linked.conveyance:
        subjects.append(("conveyance", linked.conveyance[1]["id"]))
        carriers.add(linked.conveyance[1].get("carrier"))
    if linked.trip:
        carriers.add(linked.trip[1].get("carrier"))
    subjects += [("carrier", c) for c in sorted(carriers - {None})]
    hits: dict[tuple[str, str], LookoutHit] = {}
    for kind, subject in subjects:
        for source, lookout in cache.lookouts(kind, subject, now_ms):
            hits.setdefault((source, lookout["id"]), LookoutHit(source, lookout))
    return list(hits.values())


def referral_for(findings: list[dict], refer_on: tuple[str, ...], random_rate: float,
                 tier: str = "standard") -> dict:
    """Refer on any listed finding; otherwise at random, drawn from the OS's CSPRNG at the
    rate of the crossing's tier (the caller passes that tier's rate)."""
    reasons = list(dict.fromkeys(f["code"] for f in findings if f["code"] in refer_on))
    if reasons:
        return {"refer": True, "reasons": reasons, "random": False, "tier": tier}
    # secrets, not random: a booth's referral draw must not be predictable from outside.
    if random_rate > 0 and secrets.randbelow(1_000_000) < int(random_rate * 1_000_000):
        return {"refer": True, "reasons": ["random"], "random": True, "tier": tier}
    return {"refer": False, "reasons": [], "random": False, "tier": tier}
