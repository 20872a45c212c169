"""The crossing event (DESIGN 2.5): its sections, digests and place in the hash chain.

The full event (every section) is what the store keeps; each back end later gets the
identity keys plus the sections its `share` lists. Because the chain is built from
per-section digests, a back end that sees only some sections can still check it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import cbor2

from agent.config import SECTIONS, Config
from agent.lane.findings import LookoutHit
from agent.lane.linking import Linked
from agent.lane.passage import Passage

GENESIS = "0" * 64
IDENTITY_KEYS = ("v", "type", "event_id", "seq", "port", "lane", "entering", "leaving", "started_ms", "ended_ms")
# Keys that go to every back end, whatever its share; `kind` is set per receiver.
ALWAYS_SENT = IDENTITY_KEYS + ("kind", "digests", "prev_hash", "hash")


def canonical(value) -> bytes:
    return cbor2.dumps(value, canonical=True)


def section_digests(event: dict) -> dict[str, str]:
    return {name: hashlib.sha256(canonical(event[name])).hexdigest() for name in SECTIONS}


def chain_hash(prev_hash: str, identity: dict, digests: dict) -> str:
    h = hashlib.sha256(bytes.fromhex(prev_hash))
    h.update(canonical(identity))
    h.update(canonical(digests))
    return h.hexdigest()


def seal(event: dict, prev_hash: str) -> dict:
    """Add digests, prev_hash and hash to an event whose sections are complete."""
    event["digests"] = section_digests(event)
    event["prev_hash"] = prev_hash
    event["hash"] = chain_hash(prev_hash, {k: event[k] for k in IDENTITY_KEYS}, event["digests"])
    return event


@dataclass(frozen=True)
class Draft:
    """An event before it has a seq: everything the lane decided about one passage."""

    sections: dict
    started_ms: int
    ended_ms: int
    hits: list[LookoutHit]


def draft(passage: Passage, linked: Linked, findings: list[dict], referral: dict, hits: list[LookoutHit],
          min_reads: int) -> Draft:
    def with_source(source: str, rec: dict, keep: tuple[str, ...]) -> dict:
        return {"id": rec["id"], "source": source, **{k: rec[k] for k in keep if rec.get(k) is not None}}

    tags = []
    for sighting, role in linked.tags:
        tags.append({
            "epc": sighting.epc, "role": role,
            "antenna": sighting.antennas.most_common(1)[0][0],
            "reader": sighting.readers.most_common(1)[0][0],
            "count": sighting.reads,
            "rssi_max": None if sighting.rssi_max is None else round(sighting.rssi_max),
            "first_ms": sighting.first_ms, "last_ms": sighting.last_ms,
        })
    trip = None
    if linked.trip:
        source, rec = linked.trip
        trip = with_source(source, rec, ("carrier", "port", "eta_ms", "conveyance", "drivers", "equipment", "shipments"))
    sections = {
        "tags": tags,
        "driver": [with_source(s, r, ("name", "status", "card_expires_ms", "programs")) for s, r in linked.drivers],
        "conveyance": with_source(*linked.conveyance, ("vin", "plate", "plate_region", "carrier", "status",
                                                       "decal_expires_ms")) if linked.conveyance else None,
        "equipment": [with_source(s, r, ("number", "plate", "plate_region", "seals")) for s, r in linked.equipment],
        "trip": trip,
        "shipments": [{k: v for k, v in s.items() if k != "kind"} for s in linked.shipments],
        "findings": findings,
        "referral": referral,
    }
    qualifying = passage.qualifying(min_reads)
    return Draft(sections, min(s.first_ms for s in qualifying), max(s.last_ms for s in qualifying), hits)


def finish(d: Draft, cfg: Config, seq: int, prev_hash: str) -> dict:
    """The sealed event for the next seq in the chain."""
    event = {
        "v": 1, "type": "crossing", "event_id": str(uuid.uuid4()), "seq": seq,
        "port": cfg.lane.port_code, "lane": cfg.lane.lane_id,
        "entering": cfg.lane.entering, "leaving": cfg.lane.leaving,
        "started_ms": d.started_ms, "ended_ms": d.ended_ms,
        **d.sections,
    }
    return seal(event, prev_hash)


def lookout_alert(hit: LookoutHit, event: dict, at_ms: int) -> dict:
    lookout = hit.lookout
    return {
        "v": 1, "type": "alert", "alert_id": str(uuid.uuid4()), "kind": "lookout_hit", "at_ms": at_ms,
        "event_id": event["event_id"],
        "lookout": {"source": hit.source, **{k: lookout.get(k) for k in
                                              ("id", "subject_kind", "subject", "reason", "severity", "expires_ms")}},
        "detail": {"seq": event["seq"], "port": event["port"], "lane": event["lane"]},
    }


def alarm_alert(reason: str, at_ms: int, **detail) -> dict:
    return {"v": 1, "type": "alert", "alert_id": str(uuid.uuid4()), "kind": "alarm", "at_ms": at_ms,
            "detail": {"reason": reason, **detail}}


def gap_alert(gap: dict, at_ms: int) -> dict:
    """Reads the agent could not keep (DESIGN 3.5): first and last time, count, reason."""
    return {"v": 1, "type": "alert", "alert_id": str(uuid.uuid4()), "kind": "gap", "at_ms": at_ms,
            "detail": {k: gap[k] for k in ("first_ms", "last_ms", "count", "reason")}}
