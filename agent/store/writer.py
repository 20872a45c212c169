"""The one writer: every change to the database goes through here, on one thread.

The core thread batches its work and calls these inside `transaction()`, so a batch
of reads, the events they close and the deliveries those events owe all commit
together (group commit), or not at all. The cache lives in a file of its own
(`cachedb.py`) with its own transactions (`cache_transaction()`), so its commits
never hold the journal's.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterable, Iterator

import cbor2

from agent.lane.disclosure import View
from agent.store import cache, cachedb, eventbody, retention
from agent.store.cache import ApplyResult, CacheView, apply_delta
from agent.store.cachegen import CacheGenerations, apply_cache_message
from agent.store.db import HeadFile, chain_state, checkpoint, immediate, open_or_recover
from agent.store.outbox import derived_payload


class StoreWriter:
    def __init__(self, path: str):
        self.path = path
        self._head = HeadFile(path)  # the chain head beside the database, for recovery
        self.conn, self.recovery = open_or_recover(path)
        self.cache_db = cachedb.CacheDB(path)
        # Sources whose records were in the main file (before the cache had its own): to resync.
        self.cache_moved = cachedb.move_out_of_main(self.conn, self.cache_db)
        self.generations = CacheGenerations(self.cache_db.conn)  # staged snapshots (DESIGN 2.6)
        self._lookups: list[sqlite3.Connection] = []  # read connections handed out, closed with the writer
        self._seq_reader: sqlite3.Connection | None = None
        self.commits = 0
        self._view_ids: dict[View, int] = {}  # outbox_views rows, looked up once

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. `durable=False` skips the fsync at commit (WAL stays consistent;
        the next durable commit syncs it too): for work a power cut may lose, such as the
        slices of a staged snapshot, which a restart drops anyway."""
        if not durable:
            self.conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with self.transaction():
                    yield self.conn
            finally:
                self.conn.execute("PRAGMA synchronous = FULL")
            return
        try:
            with immediate(self.conn):
                yield self.conn
        except BaseException:
            self._view_ids.clear()  # a view row inserted by this transaction is gone
            raise
        self.commits += 1

    def cache_transaction(self, durable: bool = True):
        """A transaction of the cache file (`CacheDB.transaction`)."""
        return self.cache_db.transaction(durable)

    @contextmanager
    def savepoint(self) -> Iterator[sqlite3.Connection]:
        """One item inside a transaction: on an exception only its own changes roll back
        (in the cache file too, when a cache transaction is open)."""
        self.conn.execute("SAVEPOINT item")
        try:
            with self.cache_db.savepoint():
                yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO item")
                self.conn.execute("RELEASE item")
            self._view_ids.clear()
            raise
        self.conn.execute("RELEASE item")

    def close(self) -> None:
        """A clean stop: fold the WAL into the database and truncate it, so a stopped lane
        leaves one file and the next start replays nothing."""
        checkpoint(self.conn)
        self.conn.close()
        self._head.close()
        for conn in self._lookups:
            conn.close()
        self.cache_db.close()

    # --- the read journal ---------------------------------------------------------
    def journal(self, rows: list[tuple[str, str, int, float | None, int, int]]) -> list[int]:
        """Insert (reader, epc, antenna, rssi, count, wall_ms) rows; returns their ids in order."""
        cur = self.conn.cursor()
        ids = []
        for row in rows:
            cur.execute("INSERT INTO reads(reader, epc, antenna, rssi, count, wall_ms) VALUES (?, ?, ?, ?, ?, ?)", row)
            ids.append(cur.lastrowid)
        return ids

    def update_reads(self, rows: list[tuple[int, float | None, int]]) -> None:
        """(count, strongest rssi, id): the aggregated reads of a journaled tag (DESIGN 3.1)."""
        self.conn.executemany("UPDATE reads SET count = ?, rssi = ? WHERE id = ?", rows)

    def consume(self, read_ids: Iterable[int], by: str) -> None:
        self.conn.executemany("UPDATE reads SET consumed_by = ? WHERE id = ?",
                              [(by, i) for i in dict.fromkeys(read_ids)])

    def open_reads(self) -> list[tuple]:
        """Journaled reads no event has consumed yet, oldest first (for the restart replay)."""
        return self.conn.execute(
            "SELECT id, reader, epc, antenna, rssi, count, wall_ms FROM reads WHERE consumed_by IS NULL ORDER BY id"
        ).fetchall()

    # --- events, alerts, the outbox -------------------------------------------------
    def remember_head(self) -> None:
        """Copy the chain head beside the database (outside it), for recovery from corruption."""
        try:
            self._head.write(*self.chain_state())
        except OSError:
            pass  # a convenience for a rare disaster; the database is the record

    def chain_state(self) -> tuple[int, str]:
        return chain_state(self.conn)

    def add_event(self, event: dict, owed: dict[str, View | bytes], now_ms: int) -> None:
        """Store a sealed event, advance the chain and owe it to every back end of `owed`
        (back end name -> its `View`, the sections and kind it gets, cut from the stored
        event at send time; or the exact payload bytes, stored as given)."""
        missing = sorted(b for b, p in owed.items()
                         if not isinstance(p, View) and (not isinstance(p, (bytes, bytearray)) or not p))
        if missing:
            raise ValueError(f"event seq {event.get('seq')}: no payload for back end(s) {', '.join(missing)}")
        # The full record, canonical CBOR (RFC 8949 core deterministic) as `verify` reads it, deflated.
        body, spans = eventbody.pack(event)
        self.conn.execute(
            "INSERT INTO events(seq, event_id, created_ms, started_ms, ended_ms, hash, body, spans) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event["seq"], event["event_id"], now_ms, event["started_ms"], event["ended_ms"], event["hash"], body,
             spans))
        self.conn.execute("UPDATE lane_state SET next_seq = ?, head_hash = ? WHERE id = 1",
                          (event["seq"] + 1, event["hash"]))
        rows = []
        for b, p in owed.items():
            if isinstance(p, View):  # encoded now only for its size (the backlog figures)
                rows.append((b, event["seq"], len(derived_payload(body, spans, p)), now_ms, self._view_id(p), None))
            else:
                rows.append((b, event["seq"], len(p), now_ms, None, bytes(p)))
        self.conn.executemany(
            "INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms, view, payload) "
            "VALUES (?, 'event', ?, ?, ?, ?, ?)", rows)

    def _view_id(self, view: View) -> int:
        if view not in self._view_ids:
            sections = ",".join(view.sections)
            self.conn.execute("INSERT OR IGNORE INTO outbox_views(kind, sections) VALUES (?, ?)", (view.kind, sections))
            self._view_ids[view] = self.conn.execute("SELECT id FROM outbox_views WHERE kind = ? AND sections = ?",
                                                     (view.kind, sections)).fetchone()[0]
        return self._view_ids[view]

    def add_alert(self, alert: dict, backends: Iterable[str], now_ms: int) -> None:
        body = cbor2.dumps(alert)
        cur = self.conn.execute("INSERT INTO alerts(alert_id, kind, created_ms, body) VALUES (?, ?, ?, ?)",
                                (alert["alert_id"], alert["kind"], now_ms, body))
        # No payload copy: an alert goes to every back end as its stored body.
        self.conn.executemany(
            "INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms) VALUES (?, 'alert', ?, ?, ?)",
            [(b, cur.lastrowid, len(body), now_ms) for b in backends])

    def mark_delivered(self, backend: str, items: Iterable[tuple[str, int]], now_ms: int) -> None:
        # PUBACKs come nearly in order, so runs of consecutive ids collapse into one
        # range update each: a drain after an outage marks thousands a second.
        self.conn.executemany(
            "UPDATE deliveries SET delivered_ms = ?, attempts = attempts + 1 "
            "WHERE item_type = ? AND item_id BETWEEN ? AND ? AND backend = ? AND delivered_ms IS NULL",
            [(now_ms, t, lo, hi, backend) for t, lo, hi in _runs(items)])

    # --- back-end commands -----------------------------------------------------------------
    def accept_command_seq(self, backend: str, seq: int) -> int | None:
        """The replay guard of signed back-end commands: None when `seq` is newer than the
        last one accepted from `backend` (it is stored), else that last seq (refused)."""
        row = self.conn.execute("SELECT seq FROM downlink_seq WHERE backend = ? AND kind = 'cmd'",
                                (backend,)).fetchone()
        if row and seq <= row[0]:
            return row[0]
        self.conn.execute("INSERT INTO downlink_seq(backend, kind, seq) VALUES (?, 'cmd', ?) "
                          "ON CONFLICT(backend, kind) DO UPDATE SET seq = excluded.seq", (backend, seq))
        return None

    # --- the cache --------------------------------------------------------------------
    def apply_cache(self, msg: dict, now_ms: int, force: bool = False) -> ApplyResult:
        """A whole message at once, in one durable transaction of the cache file (cache import,
        tests); the daemon slices (core/cachefeed.py)."""
        with self.cache_transaction():
            return apply_cache_message(self.cache_db.conn, msg, now_ms, force)

    def apply_delta(self, msg: dict, now_ms: int, final: bool = True) -> ApplyResult:
        """Inside `cache_transaction()`."""
        return apply_delta(self.cache_db.conn, msg, now_ms, final)

    @property
    def cache(self) -> CacheView:
        """The lane's lookups on the cache file's writing connection (they see its uncommitted
        changes); for tests and tools. The daemon looks up through `cache_lookups()`."""
        return CacheView(self.cache_db.conn)

    def cache_lookups(self) -> CacheView:
        """Lookups on a read connection of their own: never waiting for the cache worker."""
        conn = cachedb.open_reader(self.path)
        self._lookups.append(conn)
        return CacheView(conn)

    def classify_cache(self, msg: dict) -> str:
        """'apply', 'duplicate' or 'gap' (see `cache.classify`)."""
        return cache.classify(self.cache_db.conn, msg)

    def cache_seq(self, source: str) -> int:
        """The last cache message seq applied from `source`, 0 when none."""
        return cache.last_seq(self.cache_db.conn, source) or 0

    def committed_cache_seq(self, source: str) -> int:
        """The same, as committed, on a read connection: while the cache worker holds the file."""
        if self._seq_reader is None:
            self._seq_reader = cachedb.open_reader(self.path)
            self._lookups.append(self._seq_reader)
        return cache.last_seq(self._seq_reader, source) or 0

    # --- retention ----------------------------------------------------------------------
    def purge_step(self, now_ms: int, retention_days: float, batch: int = 500) -> dict[str, int]:
        """One small round of retention (`retention.purge_step`); rows deleted per kind. The
        cache's part is skipped while the cache worker holds the cache file (next round)."""
        done = retention.purge_step(self.conn, now_ms, retention_days, batch)
        if self.cache_db.lock.acquire(blocking=False):
            try:
                with self.cache_transaction():
                    n = cache.purge_expired(self.cache_db.conn, now_ms, retention.cutoff_ms(now_ms, retention_days),
                                            batch)
            finally:
                self.cache_db.lock.release()
            if n:
                done["cache_records"] = n
        return done


def _runs(items: Iterable[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(type, first, last) for each run of consecutive ids of one type."""
    runs: list[tuple[str, int, int]] = []
    for item_type, item_id in sorted(set(items)):
        if runs and runs[-1][0] == item_type and runs[-1][2] == item_id - 1:
            runs[-1] = (item_type, runs[-1][1], item_id)
        else:
            runs.append((item_type, item_id, item_id))
    return runs
