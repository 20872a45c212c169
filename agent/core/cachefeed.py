"""The cache feed: owns the downlink sequence of every cache source (DESIGN 2.6, 2.7).

Each back end sends its own records with `seq` rising by one per message. Messages are
queued as they arrive and applied in order, in slices: no slice holds the writer more
than about SLICE_TARGET_S, so the read journal keeps committing within 250 ms while a
port-sized snapshot loads. For each message the feed decides what it is:

- an upsert or delete that follows on: applied to the live records;
- a duplicate (seq already applied): counted, or refused as a replay when signed;
- a gap: held, and a resync asked of the back end that sent it; held messages are
  replayed when they follow on;
- a snapshot part: staged in a new generation (store/cachegen.py); after the last part
  the generation is indexed on the cache worker (store/cachework.py: seconds for a port,
  while the lane goes on) and then swapped in, in one step. A part that does not follow
  on, any other message of the source between the parts, a pause over
  `cache.snapshot_timeout_s`, or a restart drops the staged parts (the old records
  stay) and asks for a resync. A part 1 always starts a snapshot afresh (the back end
  restarted its transfer).

The cache lives in its own file (store/cachedb.py): a slice is one transaction of that
file, without an fsync, and never holds the journal's. It runs on the core thread only,
and touches the cache file only while the worker is idle.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Callable

from agent.core.guard import MAX_ATTEMPTS, ItemGuard, Pending
from agent.core.staging import DUPLICATE, STAGE, SnapshotStaging
from agent.handoff import CacheMessage
from agent.store.cachework import CacheWorker, Checkpointer
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

RequestResync = Callable[[str, str, int], None]  # (backend, source, have_seq)
Refuse = Callable[[str, str, str], None]  # (backend, reason, message)
SLICE_TARGET_S = 0.03  # one slice of cache work (one transaction), between two group commits
STEP_RECORDS = 2000  # records written per step of a slice (~10 ms); a slice takes steps until its time is up
WORKER_POLL_S = 0.01  # while the cache worker runs, the core looks again this often (and commits between)
RESYNC_AGAIN_S = 60.0  # a resync request with no answer is repeated after this long


class CacheFeed:
    def __init__(self, writer: StoreWriter, counters: Counter, wall_ms: Callable[[], int],
                 request_resync: RequestResync, refuse: Refuse, snapshot_timeout_s: float = 900.0,
                 backend_of: dict[str, str] | None = None):
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
        self.backend_of = backend_of or {}  # source -> the back end that sends it (for a resync at start)
        self.worker = CacheWorker(writer.cache_db)
        self.checkpointer = Checkpointer(writer.cache_db)
        self._indexing: str | None = None  # the source whose complete snapshot the worker is indexing
        self._offset = 0  # records of the head message already written
        self._slice = STEP_RECORDS
        self._garbage = True  # generations to drop (checked at start)

    # --- from the core loop -----------------------------------------------------------------
    def take(self, m: CacheMessage) -> None:
        self.queue.append(Pending(m))

    def busy(self) -> bool:
        return bool(self.queue) or self._garbage or self.worker.busy()

    def loading(self) -> bool:
        """Cache work queued, or a snapshot between its parts (the link validating the next)."""
        return self.busy() or bool(self.snapshots.staging)

    def recover(self) -> None:
        """At start: a snapshot half staged before a restart is dropped and asked for again, and
        so are sources whose records stayed behind in the main file (`cachedb.move_out_of_main`)."""
        with self.writer.transaction(), self.writer.cache_transaction():
            self.snapshots.recover()
            for source in self.writer.cache_moved:
                if source in self.backend_of:
                    self.ask_resync(self.backend_of[source], source)
        self.writer.cache_moved = []

    def tick(self, now_mono: float) -> None:
        if self.worker.busy():
            return  # looked at again once the worker is done
        for source in self.snapshots.timed_out(now_mono):
            with self.writer.transaction(), self.writer.cache_transaction():
                self.snapshots.drop(source, "timeout")
            self._garbage = True

    def work(self, guard: ItemGuard) -> None:
        """One slice, one transaction of the cache file of about SLICE_TARGET_S: the head
        messages (a slice may run through several parts of a snapshot), or the swap of a
        snapshot the worker has indexed, or handing the worker the generations to drop.
        It commits without an fsync: a power cut may lose it, and a restart then drops the
        staged parts and asks again; a swap commits durably."""
        if self.worker.busy():
            self.worker.wait(WORKER_POLL_S)
            return
        if self._indexing is not None:
            self._swap_indexed()
            return
        started = time.monotonic()
        collect = False
        with self.writer.transaction(durable=False), self.writer.cache_transaction(durable=False):
            if not self.queue:
                collect = self._garbage = self.gens.has_garbage()
            while self.queue and self._indexing is None and time.monotonic() - started < SLICE_TARGET_S:
                head = self.queue[0]
                if not guard.run(head, self._step):
                    break  # retried at the next slice
                if head.failures >= MAX_ATTEMPTS and self.queue and self.queue[0] is head:
                    self._give_up(self.queue.popleft())  # set aside by the guard
        if self._indexing is not None:
            self.worker.start(f"indexing the snapshot of {self._indexing}", self.snapshots.index_step(self._indexing))
        elif collect:
            self.worker.start("dropping old cache generations", self.gens.collect_garbage)
        self.checkpointer.due()

    def _swap_indexed(self) -> None:
        """The worker has indexed the complete snapshot at the head: swap it in (durably)."""
        source, self._indexing = self._indexing, None
        error = self.worker.outcome()
        with self.writer.transaction(), self.writer.cache_transaction():
            if error is not None:
                self.snapshots.drop(source, f"indexing failed ({type(error).__name__}: {error})")
            else:
                self.snapshots.swap(source)
                self.resync_asked.pop(source, None)
        self._garbage = True
        self.queue.popleft()
        self._offset = 0
        if error is None:
            self._replay_held(source)
        self.checkpointer.due()

    def ask_resync(self, backend: str, source: str) -> int:
        """Ask `backend` for a snapshot of `source` (a gap, a dropped snapshot, or a command)."""
        if self.worker.busy():  # it holds the cache file: ask what is committed (the same seqs)
            have = self.writer.committed_cache_seq(source)
        else:
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
            self._indexing = source  # the worker indexes it; the message stays at the head until the swap
            return False
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
