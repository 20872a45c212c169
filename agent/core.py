"""The core thread: the one writer, where reads become passages and passages events.

Everything that changes the database arrives here through one queue: tag reports
from the reader sessions, PUBACKs and cache messages from the back-end links. The
loop batches what arrived within COMMIT_WINDOW_S into one transaction (group commit),
so a report is durable within 250 ms and an event commits together with the reads it
consumes and the deliveries it owes.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import cbor2

from agent.config import Config
from agent.errors import DownlinkRejected
from agent.handoff import CacheMessage, CommandMessage, Delivered, DownlinkRefused, Uplink
from agent.lane import event as ev
from agent.lane.findings import findings_for, referral_for
from agent.lane.linking import link
from agent.lane.passage import Aggregator, Closed, Read
from agent.readers.report import TagReport
from agent.store.cache import CacheView, classify
from agent.store.retention import purge_step
from agent.store.writer import StoreWriter
from agent.sync.payload import event_for

log = logging.getLogger(__name__)

COMMIT_WINDOW_S = 0.1  # well inside the 250 ms promise, and still batches a busy line
MAX_BATCH = 5000
MAX_UNSAVED_READS = 100_000  # held in memory while the disk is full (~30 MB); older ones become a gap
STORE_RETRY_S = 1.0
PURGE_EVERY_S = 600.0  # when the last round found nothing; while it finds rows, every loop


@dataclass
class CacheHandoff:
    """A validated cache message from one back end, and how to answer it."""

    backend: str
    msg: dict
    request_resync: Callable[[str, int], None]  # (source, have_seq)
    signed: bool = False
    share_alerts: bool = False


@dataclass
class CommandHandoff:
    """A validated command: its seq is checked and stored here, then `execute` runs."""

    backend: str
    msg: dict
    execute: Callable[[dict], None]
    reject: Callable[[DownlinkRejected], None]


class LaneCore:
    def __init__(self, cfg: Config, writer: StoreWriter, wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)):
        self.cfg = cfg
        self.writer = writer
        self.wall_ms = wall_ms
        self.cache = CacheView(writer.conn)
        self.aggregator = Aggregator(cfg.aggregation)
        self.inbox: queue.Queue = queue.Queue()
        self.counters: Counter = Counter()
        self.random_rate = cfg.referral.random_rate
        self.last_loop_mono = time.monotonic()
        self.last_commit_mono = time.monotonic()
        self.on_committed: list[Callable[[], None]] = []  # links wake up to drain
        self.held_cache: dict[str, list[CacheHandoff]] = {}  # source -> messages after a gap
        self.next_purge_mono = 0.0
        self.resync_pending: set[str] = set()  # sources we asked for a snapshot
        # Adapter for the links' new seam (replaced by the rewritten core): how to answer them.
        self.resync: dict[str, Callable[[str, int], None]] = {}  # backend -> its link's request_resync
        self.run_command: Callable[[str, dict], None] = lambda backend, msg: None  # runs an accepted command
        self._unsaved: list[tuple] = []  # inbox items whose commit failed, retried first
        self._unclosed: list[Closed] = []  # passages journaled but whose event could not be written yet
        self.store_error: str | None = None
        self.gap: dict | None = None  # reads we could not keep while the store failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core", daemon=True)

    # --- called from other threads -------------------------------------------------------
    def submit_read(self, reader: str, report: TagReport, mono: float, wall_ms: int) -> None:
        self.inbox.put(("read", reader, report, mono, wall_ms))

    def submit_delivered(self, backend: str, items: list[tuple[str, int]]) -> None:
        self.inbox.put(("delivered", backend, items))

    def submit_cache(self, handoff: CacheHandoff) -> None:
        self.inbox.put(("cache", handoff))

    def submit_command(self, handoff: CommandHandoff) -> None:
        self.inbox.put(("cmd", handoff))

    def submit_alert(self, alert: dict, backends: list[str]) -> None:
        self.inbox.put(("alert", alert, backends))

    def submit(self, item: Uplink) -> None:
        """The links' inbox (agent.handoff messages), safe from any thread. An adapter onto
        the paths above until the core is rewritten."""
        backend = item.backend
        if isinstance(item, Delivered):
            self.submit_delivered(backend, list(item.items))
        elif isinstance(item, CacheMessage):
            self.submit_cache(CacheHandoff(backend, item.msg, self.resync.get(backend, lambda *_: None),
                                           signed=item.signed, share_alerts=self._shares_alerts(backend)))
        elif isinstance(item, CommandMessage):
            self.submit_command(CommandHandoff(
                backend, item.msg, lambda msg: self.run_command(backend, msg),
                lambda error: self.reject_downlink(backend, error, self._shares_alerts(backend))))
        elif isinstance(item, DownlinkRefused):
            self.inbox.put(("refused", item))  # counted on this core's thread, not the link's

    def _shares_alerts(self, backend: str) -> bool:
        return any(b.name == backend and "alerts" in b.share for b in self.cfg.backends)

    def start(self) -> None:
        self.replay_journal()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop. Open passages stay in the journal for the restart."""
        self._stop.set()
        self.inbox.put(("wake",))
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the loop -------------------------------------------------------------------------
    def replay_journal(self) -> None:
        """Rebuild open passages from reads journaled before a restart or crash."""
        rows = self.writer.open_reads()
        if not rows:
            return
        now_mono, now_wall = time.monotonic(), self.wall_ms()
        closed: list[Closed] = []
        for read_id, reader, epc, antenna, rssi, count, wall_ms in rows:
            t = now_mono - max(0, now_wall - wall_ms) / 1000
            closed += self.aggregator.add(Read(read_id, reader, epc, antenna, rssi, count, wall_ms, t))
        for c in closed + self.aggregator.tick(now_mono):
            self._close_safely(c)
        log.info("replayed %d journaled reads after restart", len(rows))

    def _run(self) -> None:
        while True:
            self.last_loop_mono = time.monotonic()
            batch = self._unsaved + self._collect(wait=not self._unsaved)
            self._unsaved = []
            stopping = self._stop.is_set()
            try:
                self._process(batch)
            except sqlite3.Error as e:
                # Disk full, I/O error, a lock held too long: keep everything and try again.
                self._keep_unsaved(batch, e)
                time.sleep(STORE_RETRY_S)
            except Exception:
                # A bug, not the disk: keep the reads (they are the promise), drop the rest.
                self.counters["batch_failures"] += 1
                log.exception("core batch of %d items failed and was rolled back; reads kept", len(batch))
                self._unsaved = [item for item in batch if item[0] == "read"]
                time.sleep(STORE_RETRY_S)
            if stopping:
                return

    def _keep_unsaved(self, batch: list[tuple], error: sqlite3.Error) -> None:
        """Hold what could not be written, within a bound; account for what falls out of it."""
        if self.store_error is None:
            log.error("the store cannot write (%s): holding reads in memory and retrying", error)
        self.store_error = str(error)
        self.counters["store_write_failures"] += 1
        reads = [item for item in batch if item[0] == "read"]
        others = [item for item in batch if item[0] != "read"]
        overflow = len(reads) - MAX_UNSAVED_READS
        if overflow > 0:
            # The oldest go first: the newest reads are the truck in the lane now.
            lost, reads = reads[:overflow], reads[overflow:]
            gap = self.gap or {"first_ms": lost[0][4], "count": 0, "reason": "disk_full" if "full" in str(error)
                               else "store_unwritable"}
            gap["last_ms"] = lost[-1][4]
            gap["count"] += len(lost)
            self.gap = gap
            self.counters["reads_lost"] += len(lost)
        self._unsaved = others + reads

    def _store_recovered(self) -> None:
        """Writes work again: account for what could not be kept, as a gap alert (DESIGN 3.5)."""
        if self.gap:
            to = [b.name for b in self.cfg.backends if "alerts" in b.share]
            with self.writer.transaction():
                self.writer.add_alert(ev.gap_alert(self.gap, self.wall_ms()), to, self.wall_ms())
        log.info("the store writes again%s", f"; {self.gap['count']} reads could not be kept" if self.gap else "")
        self.store_error, self.gap = None, None

    def _collect(self, wait: bool = True) -> list[tuple]:
        deadline = self.aggregator.next_deadline()
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        timeout = timeout if wait else 0.0
        try:
            batch = [self.inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        window_end = time.monotonic() + COMMIT_WINDOW_S
        while len(batch) < MAX_BATCH:
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[tuple]) -> None:
        reads = [item for item in batch if item[0] == "read"]
        delivered: dict[str, list] = {}
        commands: list[CommandHandoff] = []
        # First the journal and the outbox marks, so that nothing the lane logic does
        # afterwards can roll back a read that arrived.
        with self.writer.transaction() if batch else contextlib.nullcontext():  # idle: no empty commits
            ids = self.writer.journal([
                (r, rep.epc, rep.antenna, rep.rssi, rep.count or 1, wall) for _, r, rep, _, wall in reads])
            for item in batch:
                if item[0] == "delivered":
                    delivered.setdefault(item[1], []).extend(item[2])
                elif item[0] == "cache":
                    self._apply_cache(item[1])
                elif item[0] == "alert":
                    self.writer.add_alert(item[1], item[2], self.wall_ms())
                elif item[0] == "cmd":
                    if self._accept_command(item[1]):
                        commands.append(item[1])
                elif item[0] == "refused":
                    refused = item[1]
                    self.reject_downlink(refused.backend, DownlinkRejected(refused.reason, refused.message),
                                         self._shares_alerts(refused.backend))
            for backend, items in delivered.items():
                self.writer.mark_delivered(backend, items, self.wall_ms())
        self.counters["reads"] += len(reads)
        # The batch is saved: from here on a store failure must not send it round again.
        try:
            self._advance(ids, reads)
        except sqlite3.Error as e:
            if self.store_error is None:  # one line per state change, not one per retry
                log.error("the store cannot write events (%s): passages are kept and retried", e)
            self.store_error = str(e)
            self.counters["store_write_failures"] += 1
        self.last_commit_mono = time.monotonic()
        for command in commands:  # after the commit that recorded their seq
            command.execute(command.msg)
        for wake in self.on_committed:
            wake()

    def _advance(self, ids: list[int], reads: list[tuple]) -> None:
        """Feed the journaled reads to the passages and write the events of those that close."""
        closed, self._unclosed = self._unclosed, []
        for read_id, (_, reader, rep, mono, wall) in zip(ids, reads):
            closed += self.aggregator.add(Read(read_id, reader, rep.epc, rep.antenna, rep.rssi, rep.count or 1,
                                               wall, mono))
        closed += self.aggregator.tick(time.monotonic())
        for i, c in enumerate(closed):
            try:
                self._close_safely(c)
            except sqlite3.Error:
                self._unclosed = closed[i:]  # journaled already; closed when the store writes again
                raise
        if self.store_error is not None:
            self._store_recovered()
        if time.monotonic() >= self.next_purge_mono:
            self._purge()

    def _purge(self) -> None:
        """One small retention round; repeated each loop while it still finds rows."""
        with self.writer.transaction() as conn:
            done = purge_step(conn, self.wall_ms(), self.cfg.store.retention_days)
        for kind, n in done.items():
            self.counters[f"purged_{kind}"] += n
        self.next_purge_mono = time.monotonic() + (0.0 if done else PURGE_EVERY_S)

    def _close_safely(self, closed: Closed) -> None:
        """One passage, one transaction: the event, its alerts, its deliveries, its reads consumed."""
        try:
            with self.writer.transaction():
                self._close(closed)
            if closed.passage is not None:
                self.writer.remember_head()
        except sqlite3.Error:
            raise  # the store, not the passage: retried by the loop
        except Exception as e:
            # Say so loudly and keep the reads accounted for, rather than retry forever.
            self.counters["event_failures"] += 1
            log.exception("could not build the event of a passage (%d reads)", len(closed.read_ids))
            with self.writer.transaction():
                self.writer.consume(closed.read_ids, "error")
                self.writer.add_alert(ev.alarm_alert("event_failed", self.wall_ms(), reads=len(closed.read_ids),
                                                     error=type(e).__name__),
                                      [b.name for b in self.cfg.backends if "alerts" in b.share], self.wall_ms())

    def _close(self, closed: Closed) -> None:
        if closed.passage is None:
            self.writer.consume(closed.read_ids, "stray")
            self.counters["stray_reads"] += len(closed.read_ids)
            return
        now_ms = self.wall_ms()
        cfg = self.cfg
        linked = link(closed.passage, self.cache, cfg.aggregation.min_reads, cfg.lane.entering, now_ms,
                      cfg.lane.eta_window_h)
        findings, hits = findings_for(linked, self.cache, now_ms)
        referral = referral_for(findings, cfg.referral.refer_on, self.random_rate)
        draft = ev.draft(closed.passage, linked, findings, referral, hits, cfg.aggregation.min_reads)
        seq, head = self.writer.chain_state()
        event = ev.finish(draft, cfg, seq, head)
        self.writer.add_event(event, {b.name: cbor2.dumps(event_for(event, b, cfg.lane)) for b in cfg.backends}, now_ms)
        for hit in hits:
            alert = ev.lookout_alert(hit, event, now_ms)
            to = [b.name for b in cfg.backends if "alerts" in b.share
                  and (b.country == hit.source or "foreign_alerts" in b.share)]
            self.writer.add_alert(alert, to, now_ms)
        self.writer.consume(closed.read_ids, event["event_id"])
        self.counters["events"] += 1
        self.counters["referrals"] += referral["refer"]
        log.info("passage closed (%s): seq %d, %d tags, findings %s, refer %s", closed.reason, seq,
                 len(event["tags"]), ",".join(f["code"] for f in findings) or "-", referral["refer"])

    def _accept_command(self, handoff: CommandHandoff) -> bool:
        """A command's seq must be newer than the last one from its back end (replay guard)."""
        conn = self.writer.conn
        row = conn.execute("SELECT seq FROM downlink_seq WHERE backend = ? AND kind = 'cmd'",
                           (handoff.backend,)).fetchone()
        if row and handoff.msg["seq"] <= row[0]:
            handoff.reject(DownlinkRejected("replay", f"command seq {handoff.msg['seq']} is not newer than {row[0]}"))
            return False
        conn.execute("INSERT INTO downlink_seq(backend, kind, seq) VALUES (?, 'cmd', ?) ON CONFLICT(backend, kind) "
                     "DO UPDATE SET seq = excluded.seq", (handoff.backend, handoff.msg["seq"]))
        return True

    def _apply_cache(self, handoff: CacheHandoff) -> None:
        msg, source = handoff.msg, handoff.msg["source"]
        outcome = classify(self.writer.conn, msg)
        if outcome == "duplicate" and msg["op"] == "snapshot" and source in self.resync_pending:
            outcome = "apply"  # the answer to our own resync request may reuse a seq
        if outcome == "gap":
            held = self.held_cache.setdefault(source, [])
            if not any(h.msg["seq"] == msg["seq"] for h in held):
                held.append(handoff)
            self.counters["cache_gaps"] += 1
            have = self.writer.conn.execute("SELECT seq FROM cache_sources WHERE source = ?", (source,)).fetchone()
            self.resync_pending.add(source)
            handoff.request_resync(source, have[0] if have else 0)
            log.warning("cache gap from %s at seq %d: asked for a resync", source, msg["seq"])
            return
        if outcome == "duplicate":
            if handoff.signed:  # a signed message seen twice was replayed by someone
                self.reject_downlink(handoff.backend, DownlinkRejected(
                    "replay", f"cache seq {msg['seq']} from {source} was already applied"), handoff.share_alerts)
            else:
                self.counters["cache_duplicates"] += 1
            return
        if msg["op"] == "snapshot":
            self.resync_pending.discard(source)
        result = self.writer.apply_cache(msg, self.wall_ms(), force=True)
        self.counters["cache_messages"] += 1
        log.info("cache %s from %s seq %d: %d records", msg["op"], source, result.seq, result.records)
        # Messages held behind a gap may now follow on.
        held = sorted(self.held_cache.pop(source, []), key=lambda h: h.msg["seq"])
        for h in held:
            if classify(self.writer.conn, h.msg) == "apply":
                self.writer.apply_cache(h.msg, self.wall_ms())
                self.counters["cache_messages"] += 1
            elif classify(self.writer.conn, h.msg) == "gap":
                self.held_cache.setdefault(source, []).append(h)

    def reject_downlink(self, backend: str, error: DownlinkRejected, share_alerts: bool) -> None:
        """Count a refused downlink message and tell the back end that sent it."""
        self.counters[f"downlink_rejected_{error.reason}"] += 1
        self.counters["downlink_rejected"] += 1
        log.warning("downlink from %s rejected (%s): %s", backend, error.reason, error)
        if share_alerts:
            self.submit_alert(ev.alarm_alert("downlink_rejected", self.wall_ms(), cause=error.reason,
                                             message=str(error)[:200]), [backend])
