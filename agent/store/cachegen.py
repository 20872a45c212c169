"""Cache generations: how a port-sized snapshot is staged and swapped in one step (DESIGN 2.6).

Each generation of a source's records has tables of its own (`cache.records_table`), and
`cache_sources.gen` names each source's live one; every lookup (`CacheView`) reads only
live tables. A snapshot is appended to a new generation's unindexed tables in slices
(short transactions of the cache file, without an fsync), indexed once when its last
part is in (`index`: seconds for two million records, so the daemon runs it on the
cache worker), and swapped in by one durable row update. The old generation (or a
dropped staged one) is then dropped as a whole, on the worker too.
`cache_generations` records every generation that is not live: staging (with what was
received so far) or waiting to be dropped; a restart finds a half-staged snapshot there.

Runs on the cache file's connection (`cachedb.py`); the caller holds the transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.store.cache import (
    ApplyResult,
    apply_delta,
    classify,
    create_generation,
    drop_generation,
    index_generation,
    last_seq,
    member_rows,
    members_table,
    record_rows,
    records_table,
)

STAGING, DROPPED, RETIRED = "staging", "dropped", "retired"
# Staged rows go in as multi-row INSERTs of this many rows: SQLite's sqlite3 module gives up
# the GIL at every statement it steps, and while a link thread validates the next part (pure
# Python) each step waited for the GIL back: executemany, one step per row, made a 2,000-record
# slice take 150-200 ms instead of 8. 1,000 rows of 6 columns stay under SQLite's 32,766
# variables.
ROWS_PER_INSERT = 1000


@dataclass
class Staged:
    """A snapshot being staged: which generation, from whom, how far it has come."""

    source: str
    gen: int
    backend: str
    first_seq: int
    last_seq: int
    part: int
    parts: int
    started_ms: int
    records: int = 0


class CacheGenerations:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # --- the live generation ------------------------------------------------------------
    def live(self, source: str) -> tuple[int, int] | None:
        """(seq, gen) of the source's live records, or None when it never sent anything."""
        row = self.conn.execute("SELECT seq, gen FROM cache_sources WHERE source = ?", (source,)).fetchone()
        return (row[0], row[1]) if row else None

    def next_gen(self, source: str) -> int:
        """A generation number never used by this source (live, staged or being deleted)."""
        row = self.conn.execute(
            "SELECT max(g) FROM (SELECT gen AS g FROM cache_sources WHERE source = ? "
            "UNION ALL SELECT gen FROM cache_generations WHERE source = ?)", (source, source)).fetchone()
        return 1 if row[0] is None else row[0] + 1

    # --- staging --------------------------------------------------------------------------
    def begin(self, s: Staged) -> None:
        create_generation(self.conn, s.source, s.gen, indexed=False)
        self.conn.execute(
            "INSERT INTO cache_generations(source, gen, state, backend, first_seq, last_seq, part, parts, started_ms, "
            "records) VALUES (?, ?, 'staging', ?, ?, ?, ?, ?, ?, 0)",
            (s.source, s.gen, s.backend, s.first_seq, s.last_seq, s.part, s.parts, s.started_ms))

    def stage(self, source: str, gen: int, records: list[dict]) -> None:
        """Append one slice of a staged snapshot's records to its generation (not indexed yet)."""
        _append(self.conn, f"{records_table(source, gen)}(kind, id, key, eta_ms, expires_ms, body)", 6,
                record_rows(records))
        _append(self.conn, f"{members_table(source, gen)}(member_kind, member_id, trip_id)", 3, member_rows(records))

    def index(self, source: str, gen: int) -> None:
        """A staged generation is complete: index it (the long step, before the swap)."""
        index_generation(self.conn, source, gen)

    def progress(self, s: Staged) -> None:
        """A part has been received and fully staged."""
        self.conn.execute("UPDATE cache_generations SET last_seq = ?, part = ?, records = ? WHERE source = ? AND gen = ?",
                          (s.last_seq, s.part, s.records, s.source, s.gen))

    def swap(self, s: Staged, now_ms: int) -> None:
        """The last part is staged and indexed: its generation becomes the live one, in one step."""
        old = self.live(s.source)
        self.conn.execute(
            "INSERT INTO cache_sources(source, seq, updated_ms, gen) VALUES (?, ?, ?, ?) ON CONFLICT(source) "
            "DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms, gen = excluded.gen",
            (s.source, s.last_seq, now_ms, s.gen))
        self.conn.execute("DELETE FROM cache_generations WHERE source = ? AND gen = ?", (s.source, s.gen))
        if old is not None:
            self._retire(s.source, old[1], RETIRED)

    def drop(self, source: str, gen: int) -> None:
        """Give up a staged snapshot: its tables are dropped later, the live ones stay."""
        self.conn.execute("UPDATE cache_generations SET state = 'dropped' WHERE source = ? AND gen = ?", (source, gen))

    def staging(self) -> list[Staged]:
        """Snapshots half staged (after a restart: to be dropped and asked for again)."""
        rows = self.conn.execute(
            "SELECT source, gen, backend, first_seq, last_seq, part, parts, started_ms, records "
            "FROM cache_generations WHERE state = 'staging' ORDER BY source").fetchall()
        return [Staged(*row) for row in rows]

    # --- deleting what is no longer live ----------------------------------------------------
    def _retire(self, source: str, gen: int, state: str) -> None:
        self.conn.execute(
            "INSERT INTO cache_generations(source, gen, state, backend, first_seq, last_seq, part, parts, started_ms, "
            "records) VALUES (?, ?, ?, '', 0, 0, 0, 0, 0, 0) ON CONFLICT(source, gen) DO UPDATE SET state = excluded.state",
            (source, gen, state))

    def has_garbage(self) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM cache_generations WHERE state IN ('dropped', 'retired') LIMIT 1").fetchone() is not None

    def collect_garbage(self) -> int:
        """Drop every generation no longer live (a whole table each: the long step, on the
        cache worker in the daemon); returns how many went."""
        rows = self.conn.execute(
            "SELECT source, gen FROM cache_generations WHERE state IN ('dropped', 'retired')").fetchall()
        for source, gen in rows:
            drop_generation(self.conn, source, gen)
            self.conn.execute("DELETE FROM cache_generations WHERE source = ? AND gen = ?", (source, gen))
        return len(rows)


def apply_cache_message(conn: sqlite3.Connection, msg: dict, now_ms: int, force: bool = False) -> ApplyResult:
    """Apply a validated message at once, idempotently; the caller holds the transaction.

    For `laneagent cache import` and tests: a snapshot is staged, indexed, swapped and its
    old generation dropped in this one call. The daemon slices the same work (core/cachefeed.py).
    `force` applies even when `classify` would not."""
    source, seq = msg["source"], msg["seq"]
    outcome = "apply" if force else classify(conn, msg)
    if outcome != "apply":
        return ApplyResult(outcome, source, seq, last_seq=last_seq(conn, source))
    if msg["op"] != "snapshot":
        return apply_delta(conn, msg, now_ms)
    gens = CacheGenerations(conn)
    staged = Staged(source, gens.next_gen(source), "", seq, seq, 1, 1, now_ms, len(msg["records"]))
    gens.begin(staged)
    gens.stage(source, staged.gen, msg["records"])
    gens.index(source, staged.gen)
    gens.swap(staged, now_ms)
    gens.collect_garbage()
    return ApplyResult("applied", source, seq, records=len(msg["records"]))


def _append(conn: sqlite3.Connection, table_columns: str, width: int, rows: list[tuple]) -> None:
    """INSERT `rows` into `table_columns`, ROWS_PER_INSERT at a time (one statement each)."""
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        conn.execute(f"INSERT INTO {table_columns} VALUES " + ", ".join([one] * len(chunk)),
                     [v for row in chunk for v in row])
