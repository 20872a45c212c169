"""The read API of the store: every question the CLI, doctor, diag and the app ask the database.

A `StoreReader` owns one read-only connection (WAL lets it run beside the writer) and
answers in plain Python values; nobody outside `agent/store/` writes SQL. Each
question is asked in one place: the chain head, a cache source's seq, the backlog.
SQLite errors come out as `UnreadableStore` (a `StoreError`) saying what SQLite said.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Iterator

import cbor2
from sqlite_utils import Database

from agent.store import eventbody
from agent.store.cache import CacheView, last_seq
from agent.store.cachedb import attach_reader
from agent.store.db import UnreadableStore, chain_state, open_reader
from agent.store.outbox import Outbox
from agent.store.tallies import Tallies


def _reading(method):
    """SQLite's errors as UnreadableStore, naming the file."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise UnreadableStore(self.path, str(e)) from e
    return wrapper


class StoreReader:
    """Read-only questions to the database at `path`. `probe=False` opens any SQLite
    file (doctor and diag look at damaged or foreign files too)."""

    def __init__(self, path: str, probe: bool = True):
        self.path = path
        self.conn = open_reader(path, probe=probe)
        try:
            attach_reader(self.conn, path)  # the cache's own file, as `cache`
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise UnreadableStore(path, f"its cache file: {e}") from e

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the chain ------------------------------------------------------------------------
    @_reading
    def chain_head(self) -> tuple[int, str]:
        """(the last seq written, i.e. next_seq - 1; the head hash), from the lane state."""
        next_seq, head = chain_state(self.conn)
        return next_seq - 1, head

    def chain_events(self) -> Iterator[tuple[int, str, dict]]:
        """Every stored event, oldest first: (seq, indexed hash, the full event)."""
        try:
            for seq, stored_hash, body in self.conn.execute("SELECT seq, hash, body FROM events ORDER BY seq"):
                yield seq, stored_hash, eventbody.load(body)
        except sqlite3.DatabaseError as e:
            raise UnreadableStore(self.path, str(e)) from e

    # --- events and their deliveries --------------------------------------------------------
    @_reading
    def last_event_seq(self) -> int:
        """The highest stored event seq, 0 when there is none."""
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    @_reading
    def newest_event_ms(self) -> int | None:
        """When the newest stored event was committed (wall clock of that moment)."""
        return self.conn.execute("SELECT max(created_ms) FROM events").fetchone()[0]

    @_reading
    def events_after(self, seq: int, limit: int) -> list[tuple[int, int, dict]]:
        """(seq, created_ms, full event) of the events after `seq`, oldest first."""
        rows = self.conn.execute("SELECT seq, created_ms, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                 (seq, limit)).fetchall()
        return [(s, created, eventbody.load(body)) for s, created, body in rows]

    @_reading
    def crossings_since(self, created_ms: int) -> list[dict]:
        """{started_ms, ended_ms, referral} of the events committed at or after `created_ms`
        (the facilitation figures' hour), oldest first; the events table's created_ms index serves it."""
        rows = self.conn.execute("SELECT started_ms, ended_ms, body FROM events WHERE created_ms >= ? ORDER BY seq",
                                 (created_ms,)).fetchall()
        out = []
        for started, ended, body in rows:
            referral = eventbody.load(body).get("referral")
            out.append({"started_ms": started, "ended_ms": ended,
                        "referral": referral if isinstance(referral, dict) else {}})
        return out

    @_reading
    def event(self, event_id: str) -> dict | None:
        """One stored event by its event_id: {"seq", "created_ms", "event"}; None when purged or unknown."""
        row = self.conn.execute("SELECT seq, created_ms, body FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else {"seq": row[0], "created_ms": row[1], "event": eventbody.load(row[2])}

    @_reading
    def deliveries(self, seq: int) -> list[dict]:
        """Who is owed event `seq`: [{"backend", "attempts", "delivered_ms"}], by back end."""
        return [{"backend": b, "attempts": a, "delivered_ms": d} for b, a, d in self.conn.execute(
            "SELECT backend, attempts, delivered_ms FROM deliveries WHERE item_type = 'event' AND item_id = ? "
            "ORDER BY backend", (seq,))]

    @_reading
    def delivered_since(self, backend: str, first_seq: int) -> list[tuple[int, int, int]]:
        """(seq, delivered_ms, attempts) of the events from `first_seq` on that `backend` has."""
        return self.conn.execute(
            "SELECT item_id, delivered_ms, attempts FROM deliveries WHERE backend = ? AND item_type = 'event' "
            "AND item_id >= ? AND delivered_ms IS NOT NULL ORDER BY item_id", (backend, first_seq)).fetchall()

    @property
    def tallies(self) -> Tallies:
        """Totals that only grow and recent deliveries, for the metrics (`agent.store.tallies`).
        Its methods raise sqlite3 errors; the metrics report a failed scrape part, not a crash."""
        return Tallies(self.conn)

    # --- the backlog ------------------------------------------------------------------------
    @_reading
    def backlog(self, backend: str, now_ms: int | None = None) -> dict:
        """What `backend` is still owed: counts, bytes and oldest age of events and alerts."""
        return Outbox(self.conn).backlog(backend, now_ms)

    @_reading
    def gaps(self, limit: int = 20) -> list[dict]:
        """The latest gap alerts (reads the agent could not keep), newest first."""
        return Outbox(self.conn).gaps(limit)

    @_reading
    def backlog_bytes(self) -> int:
        """Bytes owed to all back ends together (the disk budget's measure)."""
        return self.conn.execute(
            "SELECT coalesce(sum(bytes), 0) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]

    # --- the journal ------------------------------------------------------------------------
    @_reading
    def open_reads(self) -> int:
        """Journaled reads no passage has consumed yet."""
        return self.conn.execute("SELECT count(*) FROM reads WHERE consumed_by IS NULL").fetchone()[0]

    # --- the cache --------------------------------------------------------------------------
    @property
    def cache(self) -> CacheView:
        """The lane's lookups (`lookup` shows what linking would see)."""
        return CacheView(self.conn, "cache")

    @_reading
    def cache_seq(self, source: str) -> int:
        """The last cache message seq applied from `source`, 0 when none."""
        return last_seq(self.conn, source, "cache") or 0

    @_reading
    def cache_sources(self) -> list[dict]:
        """Per source: {"source", "seq", "updated_ms", "records"}."""
        return self.cache.sources()

    def cache_records(self) -> Iterator[dict]:
        """Every record in use (what diag scrubs from its bundle)."""
        try:
            for body in self.cache.bodies():
                try:
                    record = cbor2.loads(body)
                except (TypeError, ValueError):
                    continue
                if isinstance(record, dict):
                    yield record
        except sqlite3.DatabaseError as e:
            raise UnreadableStore(self.path, str(e)) from e

    @_reading
    def tag_keys(self) -> list[str]:
        """The EPCs of every driver card, transponder and equipment tag the cache knows."""
        return self.cache.tag_keys()

    # --- the file itself ---------------------------------------------------------------------
    @_reading
    def integrity(self) -> tuple[list[str], int]:
        """(PRAGMA quick_check's lines, the schema version) of the file."""
        check = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        return check, self.conn.execute("PRAGMA user_version").fetchone()[0]

    def stats(self) -> dict:
        """Counts and sizes only, no row content (nothing personal): what diag's database.json holds.
        A figure SQLite cannot give ends the list with "error"."""
        out: dict = {}
        q = lambda sql, *a: self.conn.execute(sql, a).fetchall()  # noqa: E731 - a local shorthand
        db = Database(self.conn, recursive_triggers=False, execute_plugins=False)
        try:
            out["quick_check"] = [r[0] for r in q("PRAGMA quick_check")][:5]
            out["schema_version"] = q("PRAGMA user_version")[0][0]
            out["page_size"], out["page_count"] = q("PRAGMA page_size")[0][0], q("PRAGMA page_count")[0][0]
            out["freelist_count"] = q("PRAGMA freelist_count")[0][0]
            out["tables"] = {t: db[t].count for t in sorted(db.table_names())}
            try:
                out["table_bytes"] = dict(q("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"))
            except sqlite3.Error:
                out["table_bytes"] = "dbstat not available in this SQLite"
            out["chain"] = dict(zip(("next_seq", "head_hash"), chain_state(self.conn) or ()))
            out["events"] = dict(zip(("first_seq", "last_seq", "oldest_created_ms", "newest_created_ms"),
                                     q("SELECT min(seq), max(seq), min(created_ms), max(created_ms) FROM events")[0]))
            keys = ("backend", "item_type", "pending", "delivered", "pending_bytes", "max_attempts")
            out["deliveries"] = [dict(zip(keys, r)) for r in q(
                "SELECT backend, item_type, sum(delivered_ms IS NULL), sum(delivered_ms IS NOT NULL), "
                "sum(CASE WHEN delivered_ms IS NULL THEN bytes ELSE 0 END), max(attempts) "
                "FROM deliveries GROUP BY backend, item_type")]
            out["reads"] = dict(zip(("open", "stray", "consumed"), q(
                "SELECT sum(consumed_by IS NULL), sum(consumed_by = 'stray'), "
                "sum(consumed_by IS NOT NULL AND consumed_by != 'stray') FROM reads")[0]))
            out["alerts"] = dict(q("SELECT kind, count(*) FROM alerts GROUP BY kind"))
            out["cache"] = self.cache.counts()
            out["cache_sources"] = [dict(zip(("source", "seq", "updated_ms", "gen"), r)) for r in q(
                "SELECT source, seq, updated_ms, gen FROM cache.cache_sources ORDER BY source")]
        except sqlite3.Error as e:
            out["error"] = str(e)
        return out
