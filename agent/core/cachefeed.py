"""The cache feed: owns the downlink sequence of every cache source (DESIGN 2.6, 2.7).

Each back end sends its own records with `seq` rising by one per message. Messages are
queued as they arrive and applied in order, in slices: no slice holds the writer more
than about SLICE_TARGET_S, so the read journal keeps committing within 250 ms while a
port-sized snapshot loads. For each message the feed decides what it is:

- an upsert or delete that follows on: applied to the live records;
- a duplicate (seq already applied): counted, or refused as a replay when signed;
- a gap: held, and a resync asked of the back end that sent it; held messages are
  replayed when they follow on;
- a snapshot part: staged in a new generation (store/cachegen.py); the last part swaps
  it in, in one step. A part that does not follow on, any other message of the source
  between the parts, a pause over `cache.snapshot_timeout_s`, or a restart drops the
  staged parts (the old records stay) and asks for a resync. A part 1 always starts a
  snapshot afresh (the back end restarted its transfer).

It runs on the core thread only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Callable

from agent.core.guard import MAX_ATTEMPTS, ItemGuard, Pending
from agent.core.staging import DUPLICATE, STAGE, SnapshotStaging
from agent.handoff import CacheMessage
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

RequestResync = Callable[[str, str, int], None]  # (backend, source, have_seq)
Refuse = Callable[[str, str, str], None]  # (backend, reason, message)
SLICE_TARGET_S = 0.04  # one slice of cache work, between two group commits
RESYNC_AGAIN_S = 60.0  # a resync request with no answer is repeated after this long


class CacheFeed:
    def __init__(self, writer: StoreWriter, counters: Counter, wall_ms: Callable[[], int],
                 request_resync: RequestResync, refuse: Refuse, snapshot_timeout_s: float = 900.0):
        self.writer = writer
        self.gens = writer.generations
        self.counters = counters
        self.wall_ms = wall_ms
        self.request_resync = request_resync
        self.refuse = refuse
        self.queue: deque[Pending] = deque()  # cache messages in arrival order
        self.held: dict[str, list[CacheMessage]] = {}  # source -> messages after a gap
        self.resync_asked: dict[str, float] = {}  # source -> when (monotonic) we last asked
        self.snapshots = SnapshotStaging(self.gens, counters, wall_ms, self.ask_resync, snapshot_timeout_s)
        self._offset = 0  # records of the head message already written
        self._slice = 2000  # records per slice, adapted to SLICE_TARGET_S
        self._garbage = True  # generations to delete (checked at start)

    # --- from the core loop -----------------------------------------------------------------
    def take(self, m: CacheMessage) -> None:
        self.queue.append(Pending(m))

    def busy(self) -> bool:
        return bool(self.queue) or self._garbage

    def recover(self) -> None:
        """At start: a snapshot half staged before a restart is dropped and asked for again."""
        with self.writer.transaction():
            self.snapshots.recover()

    def tick(self, now_mono: float) -> None:
        for source in self.snapshots.timed_out(now_mono):
            with self.writer.transaction():
                self.snapshots.drop(source, "timeout")
            self._garbage = True

    def work(self, guard: ItemGuard) -> None:
        """One slice: part of the head message, or some rows of a generation no longer live."""
        started = time.monotonic()
        with self.writer.transaction():
            if self.queue:
                head = self.queue[0]
                guard.run(head, self._step)  # a failure is retried at the next slice
                if head.failures >= MAX_ATTEMPTS and self.queue and self.queue[0] is head:
                    self._give_up(self.queue.popleft())  # set aside by the guard
            elif self._garbage:
                self.gens.collect_garbage(self._slice * 2)
                self._garbage = self.gens.has_garbage()
        self._adapt(time.monotonic() - started)

    def ask_resync(self, backend: str, source: str) -> int:
        """Ask `backend` for a snapshot of `source` (a gap, a dropped snapshot, or a command)."""
        live = self.gens.live(source)
        have = live[0] if live else 0
        self.resync_asked[source] = time.monotonic()
        self.counters["cache_resyncs_requested"] += 1
        self.request_resync(backend, source, have)
        return have

    def figures(self) -> dict:
        return {
            "held": {s: len(h) for s, h in self.held.items() if h},
            "resync_pending": sorted(self.resync_asked),
            **self.snapshots.figures(),
            "queued": len(self.queue),
        }

    # --- one message ------------------------------------------------------------------------
    def _step(self, m: CacheMessage) -> None:
        """Advance the head message by one slice; pop it when it is done."""
        msg = m.msg
        if msg["op"] == "snapshot":
            done = self._snapshot_part(m)
        else:
            done = self._delta(m)
        if done:
            self.queue.popleft()
            self._offset = 0

    def _delta(self, m: CacheMessage) -> bool:
        msg, source = m.msg, m.msg["source"]
        if self._offset == 0:
            if source in self.snapshots:
                self.snapshots.drop(source, f"an {msg['op']} (seq {msg['seq']}) came between the parts")
                self._garbage = True
            outcome = self.writer.classify_cache(msg)
            if outcome != "apply":
                self._not_applied(m, outcome)
                return True
        records = msg["records"][self._offset:self._offset + self._slice]
        last = self._offset + len(records) >= len(msg["records"])
        self.writer.apply_delta({**msg, "records": records}, self.wall_ms(), final=last)
        self._offset += len(records)
        if last:
            self.counters["cache_messages"] += 1
            log.info("cache %s from %s seq %d: %d records", msg["op"], source, msg["seq"], len(msg["records"]))
            self._replay_held(source)
        return last

    def _snapshot_part(self, m: CacheMessage) -> bool:
        msg, source = m.msg, m.msg["source"]
        if self._offset == 0:
            verdict = self.snapshots.admit(m, source in self.resync_asked)
            self._garbage = True  # a discarded staged generation, maybe
            if verdict == DUPLICATE:
                self._not_applied(m, "duplicate")
            if verdict != STAGE:
                return True
        records = msg["records"][self._offset:self._offset + self._slice]
        self.snapshots.stage(source, records)
        self._offset += len(records)
        if self._offset < len(msg["records"]):
            return False
        if self.snapshots.part_done(m):
            # A small cache's old records go in the same step; a port-sized one's in later slices.
            self.gens.collect_garbage(self._slice)
            self._garbage = self.gens.has_garbage()
            self.resync_asked.pop(source, None)
            self._replay_held(source)
        return True

    def _not_applied(self, m: CacheMessage, outcome: str) -> None:
        msg, source = m.msg, m.msg["source"]
        if outcome == "gap":
            self._hold(m)
        elif m.signed:  # a signed message seen twice was replayed by someone
            self.refuse(m.backend, "replay", f"cache seq {msg['seq']} from {source} was already applied")
        else:
            self.counters["cache_duplicates"] += 1

    def _hold(self, m: CacheMessage) -> None:
        msg, source = m.msg, m.msg["source"]
        held = self.held.setdefault(source, [])
        if not any(h.msg["seq"] == msg["seq"] for h in held):
            held.append(m)
        self.counters["cache_gaps"] += 1
        asked = self.resync_asked.get(source)
        if asked is None or time.monotonic() - asked > RESYNC_AGAIN_S:
            self.ask_resync(m.backend, source)
            log.warning("cache gap from %s at seq %d: asked for a resync", source, msg["seq"])

    def _replay_held(self, source: str) -> None:
        """Messages held behind a gap go back to the head of the queue, in seq order."""
        held = sorted(self.held.pop(source, []), key=lambda h: h.msg["seq"])
        for h in reversed(held):
            self.queue.insert(1, Pending(h))  # after the head, which is popped next

    def _give_up(self, pending: Pending) -> None:
        source = pending.item.msg["source"]
        self._offset = 0
        if source in self.snapshots:
            self.snapshots.drop(source, "a part could not be applied")
            self._garbage = True

    def _adapt(self, took_s: float) -> None:
        if took_s > SLICE_TARGET_S * 1.5:
            self._slice = max(100, self._slice // 2)
        elif took_s < SLICE_TARGET_S / 2:
            self._slice = min(50_000, int(self._slice * 1.5))
