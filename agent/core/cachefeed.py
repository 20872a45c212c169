"""The cache feed: owns the downlink sequence of every cache source (DESIGN 2.6, 2.7).

Each back end sends its own records with `seq` rising by one per message. The feed
decides what a message is (apply, duplicate, gap), holds the messages that arrive
after a gap until the snapshot that answers the resync request, replays them when
they follow on, and asks for a resync through the link of the back end that sent the
message. It runs on the core thread, inside the core's transaction. Multi-part
snapshots (staged, swapped in one step) land here next.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from agent.handoff import CacheMessage
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

RequestResync = Callable[[str, str, int], None]  # (backend, source, have_seq)
Refuse = Callable[[str, str, str], None]  # (backend, reason, message)


class CacheFeed:
    def __init__(self, writer: StoreWriter, counters: Counter, wall_ms: Callable[[], int],
                 request_resync: RequestResync, refuse: Refuse):
        self.writer = writer
        self.counters = counters
        self.wall_ms = wall_ms
        self.request_resync = request_resync
        self.refuse = refuse
        self.held: dict[str, list[CacheMessage]] = {}  # source -> messages after a gap
        self.resync_pending: set[str] = set()  # sources we asked for a snapshot

    def take(self, m: CacheMessage) -> None:
        msg, source = m.msg, m.msg["source"]
        outcome = self.writer.classify_cache(msg)
        if outcome == "duplicate" and msg["op"] == "snapshot" and source in self.resync_pending:
            outcome = "apply"  # the answer to our own resync request may reuse a seq
        if outcome == "gap":
            self._hold(m)
            return
        if outcome == "duplicate":
            if m.signed:  # a signed message seen twice was replayed by someone
                self.refuse(m.backend, "replay", f"cache seq {msg['seq']} from {source} was already applied")
            else:
                self.counters["cache_duplicates"] += 1
            return
        if msg["op"] == "snapshot":
            self.resync_pending.discard(source)
        result = self.writer.apply_cache(msg, self.wall_ms(), force=True)
        self.counters["cache_messages"] += 1
        log.info("cache %s from %s seq %d: %d records", msg["op"], source, result.seq, result.records)
        self._replay_held(source)

    def ask_resync(self, backend: str, source: str) -> int:
        """Ask `backend` for a snapshot of `source` (a gap, or a back-end command); returns have_seq."""
        have = self.writer.cache_seq(source)
        self.resync_pending.add(source)
        self.request_resync(backend, source, have)
        return have

    def figures(self) -> dict:
        return {"held": {s: len(h) for s, h in self.held.items() if h}, "resync_pending": sorted(self.resync_pending)}

    def _hold(self, m: CacheMessage) -> None:
        msg, source = m.msg, m.msg["source"]
        held = self.held.setdefault(source, [])
        if not any(h.msg["seq"] == msg["seq"] for h in held):
            held.append(m)
        self.counters["cache_gaps"] += 1
        self.ask_resync(m.backend, source)
        log.warning("cache gap from %s at seq %d: asked for a resync", source, msg["seq"])

    def _replay_held(self, source: str) -> None:
        """Messages held behind a gap may now follow on."""
        for h in sorted(self.held.pop(source, []), key=lambda h: h.msg["seq"]):
            outcome = self.writer.classify_cache(h.msg)
            if outcome == "apply":
                self.writer.apply_cache(h.msg, self.wall_ms())
                self.counters["cache_messages"] += 1
            elif outcome == "gap":
                self.held.setdefault(source, []).append(h)
