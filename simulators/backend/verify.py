"""An independent check of the crossings a back end receives (DESIGN 2.5), written apart from the agent.

This module deliberately imports nothing from `agent`: it re-implements the digest and
hash rules from the contract text, so a mistake in the agent's chain code cannot hide
behind the same mistake here. `ChainVerifier.check(event)` recomputes the digests of
the sections received and the event's hash, links `prev_hash` to the neighbouring
`seq` of the same lane (events may arrive out of order after a reconnect), counts a
repeated `event_id` as a duplicate (at-least-once delivery, not an error) and flags
sections the receiver should not have been sent. Gaps are judged when asked, in
`problems()`, because a missing `seq` may still be on its way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import cbor2

SECTIONS = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral")
IDENTITY_KEYS = ("v", "type", "event_id", "seq", "port", "lane", "entering", "leaving", "started_ms", "ended_ms")
ALWAYS_SENT = IDENTITY_KEYS + ("kind", "digests", "prev_hash", "hash")
ZERO_HASH = "0" * 64


def canonical(value) -> bytes:
    """RFC 8949 core deterministic encoding (cbor2 sorts map keys and picks shortest forms)."""
    return cbor2.dumps(value, canonical=True)


def section_digest(value) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def crossing_hash(event: dict) -> str:
    """SHA-256(prev_hash bytes + canonical identity map + canonical digests), in hex."""
    identity = {key: event[key] for key in IDENTITY_KEYS}
    return hashlib.sha256(bytes.fromhex(event["prev_hash"]) + canonical(identity)
                          + canonical(event["digests"])).hexdigest()


@dataclass(frozen=True)
class Verdict:
    duplicate: bool = False
    problems: tuple[str, ...] = ()


@dataclass
class _Lane:
    hashes: dict[int, str] = field(default_factory=dict)  # seq -> hash as received
    prev_hashes: dict[int, str] = field(default_factory=dict)  # seq -> prev_hash as received
    event_ids: dict[int, str] = field(default_factory=dict)  # seq -> event_id


class ChainVerifier:
    """Verifies one receiver's crossings, lane by lane. Not thread-safe: callers lock.

    `country`: the receiver's country, to check `kind` (entry when it is `entering`).
    `expect_share`: the sections this receiver must get, no more, no fewer; None skips the check.
    `first_seq`: where each lane's gap count starts (None: at the first seq seen).
    """

    def __init__(self, country: str | None = None, expect_share: Iterable[str] | None = None,
                 first_seq: int | None = 1):
        self.country = country
        self.expect_share = None if expect_share is None else frozenset(expect_share) & set(SECTIONS)
        self.first_seq = first_seq
        self.events: dict[str, dict] = {}  # event_id -> first payload received
        self.duplicates = 0
        self._lanes: dict[str, _Lane] = {}
        self._problems: list[str] = []

    def check(self, event: dict, topic_lane: str | None = None) -> Verdict:
        if not isinstance(event, dict):
            return self._flag([f"crossing is a {type(event).__name__}, not a map"])
        missing = [key for key in ALWAYS_SENT if key not in event]
        if missing:
            return self._flag([f"crossing {event.get('event_id', '?')}: missing {', '.join(missing)}"])
        if not isinstance(event["event_id"], str) or not isinstance(event["lane"], str):
            return self._flag([f"crossing {event['event_id']!r}: event_id and lane must be text"])
        where = f"lane {event['lane']} seq {event['seq']} ({_short(event['event_id'])})"
        first = self.events.get(event["event_id"])
        if first is not None:
            self.duplicates += 1
            if first.get("hash") != event["hash"]:
                return self._flag([f"{where}: resent with a different hash"], duplicate=True)
            return Verdict(duplicate=True)
        self.events[event["event_id"]] = event
        # Link even a corrupt event: its seq arrived, and its neighbours are judged by it.
        return self._flag(self._check_content(event, where, topic_lane) + self._check_link(event, where))

    def _check_content(self, event: dict, where: str, topic_lane: str | None) -> list[str]:
        problems = []
        if event["v"] != 1 or event["type"] != "crossing":
            problems.append(f"{where}: v/type is {event['v']!r}/{event['type']!r}, not 1/'crossing'")
        if topic_lane is not None and topic_lane != event["lane"]:
            problems.append(f"{where}: arrived on lane {topic_lane}'s topic")
        if self.country:
            want = ("entry" if self.country == event["entering"]
                    else "exit" if self.country == event["leaving"] else None)
            if event["kind"] != want:
                problems.append(f"{where}: kind {event['kind']!r} but {self.country} is "
                                f"{'neither side' if want is None else 'the ' + want + ' side'}")
        digests = event["digests"]
        if not isinstance(digests, dict) or set(digests) != set(SECTIONS):
            names = sorted(digests) if isinstance(digests, dict) else digests
            return problems + [f"{where}: digests must name exactly the eight sections, got {names}"]
        received = {s for s in SECTIONS if s in event}
        for section in sorted(received):
            if section_digest(event[section]) != digests[section]:
                problems.append(f"{where}: digest mismatch in section {section!r}")
        if self.expect_share is not None:
            if received - self.expect_share:
                problems.append(f"{where}: got sections not shared with us: {sorted(received - self.expect_share)}")
            if self.expect_share - received:
                problems.append(f"{where}: shared sections missing: {sorted(self.expect_share - received)}")
        try:
            if crossing_hash(event) != event["hash"]:
                problems.append(f"{where}: hash does not match its identity and digests")
        except (ValueError, TypeError) as e:  # prev_hash not hex, unencodable identity
            problems.append(f"{where}: hash cannot be recomputed ({e})")
        return problems

    def _check_link(self, event: dict, where: str) -> list[str]:
        seq, lane = event["seq"], self._lanes.setdefault(event["lane"], _Lane())
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return [f"{where}: seq must be an integer from 1"]
        if seq in lane.event_ids:
            return [f"{where}: seq {seq} already used by {_short(lane.event_ids[seq])}"]
        lane.hashes[seq], lane.prev_hashes[seq] = event["hash"], event["prev_hash"]
        lane.event_ids[seq] = event["event_id"]
        problems = []
        if seq == 1 and event["prev_hash"] != ZERO_HASH:
            problems.append(f"{where}: the first event's prev_hash must be 64 zeros")
        if seq - 1 in lane.hashes and lane.hashes[seq - 1] != event["prev_hash"]:
            problems.append(f"{where}: chain broken: prev_hash is not the hash of seq {seq - 1}")
        if seq + 1 in lane.prev_hashes and lane.prev_hashes[seq + 1] != event["hash"]:
            problems.append(f"lane {event['lane']} seq {seq + 1}: chain broken: prev_hash is not the hash of seq {seq}")
        return problems

    def _flag(self, problems: list[str], duplicate: bool = False) -> Verdict:
        self._problems += problems
        return Verdict(duplicate, tuple(problems))

    def seqs(self) -> dict[str, list[int]]:
        """The seqs received, per lane, sorted."""
        return {name: sorted(lane.hashes) for name, lane in self._lanes.items()}

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """Missing seq ranges (first, last) per lane, up to the highest seq received."""
        out = {}
        for name, seqs in self.seqs().items():
            expected, runs = self.first_seq if self.first_seq is not None else seqs[0], []
            for seq in seqs:
                if seq > expected:
                    runs.append((expected, seq - 1))
                expected = max(expected, seq + 1)
            if runs:
                out[name] = runs
        return out

    def problems(self) -> list[str]:
        gaps = [f"lane {lane}: missing seq {a}" + (f"-{b}" if b != a else "") + f" ({b - a + 1} lost or late)"
                for lane, runs in self.gaps().items() for a, b in runs]
        return self._problems + gaps


def _short(event_id) -> str:
    # The tail: time-ordered ids (ULID, UUIDv7) share their leading characters.
    return str(event_id)[-8:]
