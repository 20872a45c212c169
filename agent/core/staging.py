"""Snapshots in parts (DESIGN 2.6): which part is staged, which is a duplicate, which drops
the staged ones; the swap at the last part; the figures `status` shows.

Part of the cache feed (`cachefeed.py`), on the core thread, inside its transactions.
The rows themselves are written by `store/cachegen.py`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable

from agent.handoff import CacheMessage
from agent.store.cachegen import CacheGenerations, Staged

log = logging.getLogger(__name__)

STAGE, DUPLICATE, NOT_STAGED = "stage", "duplicate", "not_staged"


class SnapshotStaging:
    def __init__(self, gens: CacheGenerations, counters: Counter, wall_ms: Callable[[], int],
                 ask_resync: Callable[[str, str], int], timeout_s: float):
        self.gens = gens
        self.counters = counters
        self.wall_ms = wall_ms
        self.ask_resync = ask_resync  # (backend, source)
        self.timeout_s = timeout_s
        self.staging: dict[str, Staged] = {}
        self.swaps: dict[str, dict] = {}  # source -> the last swap's figures
        self.dropped: dict[str, dict] = {}  # source -> the last dropped snapshot, until the next swap
        self._last_part_mono: dict[str, float] = {}

    def __contains__(self, source: str) -> bool:
        return source in self.staging

    def recover(self) -> None:
        """At start: a snapshot half staged before a restart is dropped and asked for again."""
        for st in self.gens.staging():
            self.staging[st.source] = st
            self.drop(st.source, "restart")

    def timed_out(self, now_mono: float) -> list[str]:
        return [s for s, last in self._last_part_mono.items() if s in self.staging and now_mono - last > self.timeout_s]

    def admit(self, m: CacheMessage, resync_asked: bool) -> str:
        """What a snapshot part is, before its first record is written: STAGE, DUPLICATE or
        NOT_STAGED (a part that does not follow on: the staged ones are dropped, a resync asked)."""
        msg, source, seq = m.msg, m.msg["source"], m.msg["seq"]
        part, parts = msg.get("part", 1), msg.get("parts", 1)
        st = self.staging.get(source)
        live = self.gens.live(source)
        live_seq = live[0] if live else 0
        if st is not None and seq <= st.last_seq or st is None and seq <= live_seq and not (
                part == 1 and resync_asked):
            return DUPLICATE  # a part seen before, or an old snapshot
        if part == 1:
            if st is not None:
                self._discard(st, "a new part 1 restarted the transfer")
            st = Staged(source, self.gens.next_gen(source), m.backend, seq, seq - 1, 0, parts, self.wall_ms())
            self.gens.begin(st)
            self.staging[source] = st
            self._last_part_mono[source] = time.monotonic()
            return STAGE
        if st is not None and parts == st.parts and part == st.part + 1 and seq == st.last_seq + 1:
            return STAGE
        self.counters["cache_gaps"] += 1
        if st is not None:
            self.drop(source, f"part {part}/{parts} seq {seq} does not follow part {st.part} seq {st.last_seq}")
        else:
            self.ask_resync(m.backend, source)
            log.warning("cache snapshot part %d/%d from %s (seq %d) without its first part: asked for a resync",
                        part, parts, source, seq)
        return NOT_STAGED

    def stage(self, source: str, records: list[dict]) -> None:
        st = self.staging[source]
        self.gens.stage(source, st.gen, records)
        st.records += len(records)

    def part_done(self, m: CacheMessage) -> bool:
        """A part is fully staged; True when it was the last one: the snapshot is then indexed
        (`index_step`, on the cache worker) and swapped in (`swap`)."""
        source, part = m.msg["source"], m.msg.get("part", 1)
        st = self.staging[source]
        st.part, st.last_seq = part, m.msg["seq"]
        self._last_part_mono[source] = time.monotonic()
        self.counters["cache_snapshot_parts"] += 1
        if part < st.parts:
            self.gens.progress(st)
            return False
        return True

    def index_step(self, source: str) -> Callable[[], None]:
        """The long step of a complete snapshot, for the cache worker."""
        st = self.staging[source]
        return lambda: self.gens.index(st.source, st.gen)

    def swap(self, source: str) -> None:
        self._swap(self.staging[source])

    def drop(self, source: str, cause: str) -> None:
        """Drop the staged parts (the old records stay) and ask for the snapshot again."""
        st = self.staging[source]
        self._discard(st, cause)
        self.counters["cache_snapshots_dropped"] += 1
        self.dropped[source] = {"cause": cause, "at_ms": self.wall_ms(), "parts_received": st.part,
                                "parts": st.parts}
        log.warning("cache snapshot from %s dropped after %d of %d parts (%s); the old records stay, "
                    "asked for a resync", source, st.part, st.parts, cause)
        self.ask_resync(st.backend, source)

    def figures(self) -> dict:
        return {"staging": {s: {"parts_received": st.part, "parts": st.parts, "since_ms": st.started_ms,
                                "records": st.records} for s, st in self.staging.items()},
                "last_swap": dict(self.swaps), "dropped": dict(self.dropped)}

    def _swap(self, st: Staged) -> None:
        self.gens.swap(st, self.wall_ms())
        del self.staging[st.source]
        self._last_part_mono.pop(st.source, None)
        self.dropped.pop(st.source, None)
        seconds = round((self.wall_ms() - st.started_ms) / 1000, 1)
        self.swaps[st.source] = {"at_ms": self.wall_ms(), "records": st.records, "parts": st.parts,
                                 "seconds": seconds, "seq": st.last_seq}
        self.counters["cache_messages"] += st.parts
        self.counters["cache_swaps"] += 1
        log.info("cache snapshot from %s swapped in: seq %d-%d, %d parts, %d records, %.1f s", st.source,
                 st.first_seq, st.last_seq, st.parts, st.records, seconds)

    def _discard(self, st: Staged, why: str) -> None:
        self.gens.drop(st.source, st.gen)
        del self.staging[st.source]
        self._last_part_mono.pop(st.source, None)
        log.info("cache snapshot from %s (part %d of %d) discarded: %s", st.source, st.part, st.parts, why)
