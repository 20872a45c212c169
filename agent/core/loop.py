"""The core thread: the one writer, where reads become passages and passages events.

Everything that changes the database arrives through one inbox: tag reports from the
reader sessions, the links' handoff messages (marks, cache updates, commands,
refusals), and the app's alarms and commands. The loop batches what arrives into one
transaction (group commit): it commits once the inbox has been quiet for COMMIT_LINGER_S,
or at the latest COMMIT_WINDOW_S after the batch's first item, so a lone report is
durable within milliseconds and a busy line's within 100 ms (promise: 250 ms). Each item runs in its own savepoint (`guard.py`): a bug in one never drops the
others. Then the passages advance and the events of those that closed are written,
one transaction each (`crossing.py`).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter
from typing import Callable

from agent import trace
from agent.config import Config
from agent.core.cachefeed import CacheFeed
from agent.core.crossing import Crossings
from agent.core.guard import ItemGuard, Pending, is_store_failure
from agent.core.inbox import AlertOut, ReadItem, Wake
from agent.core.items import ItemHandler
from agent.core.journal import ReadJournal
from agent.core.marks import HeldMarks
from agent.core.outage import StoreOutage
from agent.core.passages import Passages
from agent.core.refusals import Refusals
from agent.handoff import CommandMessage, Delivered, Uplink
from agent.lane import event as ev
from agent.lane.passage import Aggregator
from agent.readers.report import TagReport
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)

COMMIT_WINDOW_S = 0.1  # well inside the 250 ms promise, and still batches a busy line
# A reader hands its reports over in clumps (one per decoded chunk); a gap this long ends the
# clump. A commit that only adds to aggregated reads writes no page, so this costs little flash.
COMMIT_LINGER_S = 0.01
# While a snapshot loads, cache work yields to waiting items (reads, marks) this often: a read
# waits for at most one such turn, one slice and its own commit.
CACHE_TURN_S = 0.05
# The core thread makes many short SQLite calls, each giving up the GIL; while a link decodes
# and validates a snapshot part (pure Python) each call waited up to the default 5 ms for the
# GIL back. While a snapshot loads (cache work queued, or parts still to come) the switch
# interval is this short (waits bounded, more switching between busy threads); otherwise
# Python's own.
GIL_SWITCH_S = 0.0002
MAX_BATCH = 5000
STORE_RETRY_S = 1.0
PURGE_EVERY_S = 600.0  # when the last round found nothing; while it finds rows, every loop


def _now_ms() -> int:
    return int(time.time() * 1000)


class LaneCore:
    def __init__(self, cfg: Config, writer: StoreWriter, wall_ms: Callable[[], int] = _now_ms,
                 on_command: Callable[[CommandMessage], None] = lambda cmd: None):
        self.cfg = cfg
        self.writer = writer
        self.wall_ms = wall_ms
        self.counters: Counter = Counter()  # owned by the core thread; others read `figures()`
        self.inbox: queue.Queue = queue.Queue()
        self.outage = StoreOutage(self.counters)
        self.refuse = Refusals(cfg, writer, self.counters, wall_ms)
        self.crossings = Crossings(cfg, writer, writer.cache_lookups(), self.counters, wall_ms)
        self.journal = ReadJournal(writer, self.counters)
        self.passages = Passages(Aggregator(cfg.aggregation), self.crossings, writer, self.journal)
        self.guard = ItemGuard(writer, self.counters, self._alarm)
        self.marks = HeldMarks()  # delivery marks waiting for a commit (core/marks.py)
        # back end name -> its link's request_resync(source, have_seq), set by whoever wires the links
        self.resync: dict[str, Callable[[str, int], None]] = {}
        self.feed = CacheFeed(writer, self.counters, wall_ms, self._request_resync, self.refuse,
                              cfg.cache.snapshot_timeout_s, {b.country: b.name for b in cfg.backends})
        self.items = ItemHandler(cfg, writer, self.feed, self.crossings, self.counters, wall_ms, self.refuse)
        self.on_command = on_command  # accepted commands, after their commit (off this thread)
        self.on_committed: list[Callable[[], None]] = []  # links wake up to drain
        self.last_loop_mono = time.monotonic()
        self.last_commit_mono = time.monotonic()
        self.next_purge_mono = 0.0
        self._retry: list[Pending] = []  # items kept from the last batch (store failure, or a bug)
        self._figures: dict = {"counters": {}, "set_aside": []}
        self._switch_s = sys.getswitchinterval()  # Python's own, restored once cache work is done
        self._fast_switch = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core", daemon=True)

    # --- called from other threads -------------------------------------------------------
    def submit_read(self, reader: str, report: TagReport, mono: float, wall_ms: int) -> None:
        self.inbox.put(ReadItem(reader, report, mono, wall_ms))

    def submit(self, item: Uplink | AlertOut | object) -> None:
        """A link's handoff message, or an app message (`agent.core.inbox`)."""
        self.inbox.put(item)

    def submit_alert(self, alert: dict, backends: list[str]) -> None:
        self.inbox.put(AlertOut(alert, tuple(backends)))

    def figures(self) -> dict:
        """Counters and set-aside items as of the last loop turn (a copy the core published)."""
        return self._figures

    @property
    def store_error(self) -> str | None:
        return self.outage.error

    @property
    def random_rate(self) -> float:
        return self.crossings.random_rate

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self.passages.replay(self.wall_ms())
        self.feed.recover()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop. Open passages stay in the journal for the restart."""
        self._stop.set()
        self.inbox.put(Wake())
        self._thread.join(timeout)

    # --- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self.last_loop_mono = time.monotonic()
            batch = self._retry + [Pending(item) for item in self._collect(wait=not self._retry)]
            self._retry = []
            stopping = self._stop.is_set()
            try:
                self._process(batch)
            except Exception as e:
                self._retry = self._keep(batch, e)
                time.sleep(STORE_RETRY_S)
            self._publish_figures()
            if stopping:
                sys.setswitchinterval(self._switch_s)  # the interval is the whole process's
                return
            if self._retry and not self.outage.error:
                time.sleep(STORE_RETRY_S)  # an item failed: give it a moment, not a busy loop

    def _keep(self, batch: list[Pending], e: Exception) -> list[Pending]:
        """The batch's transaction failed as a whole: keep its items and retry them."""
        self.journal.rolled_back()
        if is_store_failure(e):
            return self.outage.hold(batch, e)  # disk full, I/O error: keep everything
        # A bug outside any one item: retry, but set each item aside after MAX_ATTEMPTS like the guard does.
        self.counters["batch_failures"] += 1
        log.exception("a core batch of %d items failed and was rolled back; it is retried", len(batch))
        return [p for p in batch if not self.guard.give_up(p, e)]

    def _cache_work(self, until: float) -> None:
        """Cache work in slices until `until`, the next group commit, or sooner once something
        waits in the inbox and the turn is up: the journal never waits long."""
        turn_end = time.monotonic() + CACHE_TURN_S
        try:
            self.feed.tick(time.monotonic())
            while self.feed.busy() and not self.outage.error and time.monotonic() < until:
                self.feed.work(self.guard)
                if time.monotonic() >= turn_end and not self.inbox.empty():
                    return
        except Exception as e:
            if not is_store_failure(e):
                raise
            self.outage.failed(e, "cache updates")

    def _collect(self, wait: bool = True) -> list:
        loading = self.feed.loading()
        if loading != self._fast_switch:
            sys.setswitchinterval(GIL_SWITCH_S if loading else self._switch_s)
            self._fast_switch = loading
        if self.feed.busy():
            # Cache work fills the commit window; then whatever arrived meanwhile is committed.
            self._cache_work(time.monotonic() + COMMIT_WINDOW_S)
            batch = []
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    return batch
            return batch
        self.feed.tick(time.monotonic())
        deadlines = [d for d in (self.passages.next_deadline(), self.marks.deadline()) if d is not None]
        timeout = 0.5 if not deadlines else max(0.0, min(0.5, min(deadlines) - time.monotonic()))
        try:
            batch = [self.inbox.get(timeout=timeout if wait else 0.0)]
        except queue.Empty:
            return []
        window_end = time.monotonic() + COMMIT_WINDOW_S
        while len(batch) < MAX_BATCH:
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=min(remaining, COMMIT_LINGER_S)))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Pending]) -> None:
        # First the journal and the marks, so that nothing the lane logic does afterwards
        # can roll back a read that arrived. Idle: no empty commits. Marks alone wait for
        # company (core/marks.py).
        journaled: list[tuple[int, ReadItem]] = []
        changes = self.writer.conn.total_changes
        now = time.monotonic()
        arrived = {id(p) for p in batch}  # kept by the loop itself if this transaction fails
        for pending in batch:
            if isinstance(pending.item, Delivered):
                self.marks.hold(pending, self.wall_ms(), now)
        batch = [p for p in batch if not isinstance(p.item, (Delivered, Wake))]
        marks = self.marks.take() if batch or self.marks.due(now) or self._stop.is_set() else []
        if batch or marks:
            try:
                with self.writer.transaction():
                    journaled = self.journal.journal([p for p in batch if isinstance(p.item, ReadItem)], self.guard,
                                                     self._retry)
                    for pending in batch:
                        if not isinstance(pending.item, ReadItem) and not self.guard.run(pending, self.items.handle):
                            self._retry.append(pending)
                    for pending, at_ms in marks:
                        if not self.guard.run(pending, lambda item, at=at_ms: self.writer.mark_delivered(
                                item.backend, item.items, at)):
                            self._retry.append(pending)
            except BaseException:
                self.marks.restore([m for m in marks if id(m[0]) not in arrived], time.monotonic())
                raise
            self.journal.committed()
            trace.emit("journaled", (r.mono for _, r in journaled))
        self.counters["reads"] += len(journaled)
        accepted, self.items.accepted = self.items.accepted, []
        try:
            self._advance(journaled)  # the batch is saved: a store failure here must not send it round again
        except sqlite3.Error as e:
            self.outage.failed(e, "events")
        self.last_commit_mono = time.monotonic()
        for command in accepted:  # after the commit that recorded their seq
            self.on_command(command)
        if self.writer.conn.total_changes != changes:  # the links read the outbox only when it may have changed
            for wake in self.on_committed:
                wake()

    def _advance(self, journaled: list[tuple[int, ReadItem]]) -> None:
        """Feed the journaled reads to the passages and write the events of those that close."""
        self.passages.advance(journaled)
        if self.outage.error is not None:
            gap = self.outage.recovered()
            if gap:
                with self.writer.transaction():
                    self.writer.add_alert(ev.gap_alert(gap, self.wall_ms()), self.crossings.alert_backends,
                                          self.wall_ms())
        if time.monotonic() >= self.next_purge_mono:
            self._purge()

    def _purge(self) -> None:
        """One small retention round; repeated each loop while it still finds rows."""
        with self.writer.transaction():
            done = self.writer.purge_step(self.wall_ms(), self.cfg.store.retention_days)
        for kind, n in done.items():
            self.counters[f"purged_{kind}"] += n
        self.next_purge_mono = time.monotonic() + (0.0 if done else PURGE_EVERY_S)

    # --- on this thread, for the parts ------------------------------------------------------
    def _alarm(self, reason: str, detail: dict) -> None:
        self.writer.add_alert(ev.alarm_alert(reason, self.wall_ms(), **detail), self.crossings.alert_backends,
                              self.wall_ms())

    def _request_resync(self, backend: str, source: str, have_seq: int) -> None:
        ask = self.resync.get(backend)
        if ask is None:
            log.warning("no link to ask %s for a resync of %s", backend, source)
        else:
            ask(source, have_seq)

    def _publish_figures(self) -> None:
        # A new dict each turn: readers on other threads never iterate what this thread mutates.
        self._figures = {"counters": dict(self.counters), "set_aside": list(self.guard.set_aside),
                         "cache": self.feed.figures(), "inbox": self.inbox.qsize()}
