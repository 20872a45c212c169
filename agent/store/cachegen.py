"""Cache generations: how a port-sized snapshot is staged and swapped in one step (DESIGN 2.6).

Every cache row carries the generation (`gen`) it was written in, and `cache_sources.gen`
names each source's live one; every lookup (`CacheView`) reads only live rows. A
snapshot is written into a new generation in small slices, each its own short
transaction between the core's group commits, so a lookup keeps seeing the old records,
complete, and the read journal never waits behind the cache. The swap is one row
update. The old generation (or a dropped staged one) is then deleted in slices too.
`cache_generations` records every generation that is not live: staging (with what was
received so far) or waiting to be deleted; a restart finds a half-staged snapshot there.

Runs on the writer connection; the caller holds the transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.store.cache import (
    ApplyResult,
    apply_delta,
    classify,
    last_seq,
    member_rows,
    record_rows,
)

STAGING, DROPPED, RETIRED = "staging", "dropped", "retired"


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
        self.conn.execute(
            "INSERT INTO cache_generations(source, gen, state, backend, first_seq, last_seq, part, parts, started_ms, "
            "records) VALUES (?, ?, 'staging', ?, ?, ?, ?, ?, ?, 0)",
            (s.source, s.gen, s.backend, s.first_seq, s.last_seq, s.part, s.parts, s.started_ms))

    def stage(self, source: str, gen: int, records: list[dict]) -> None:
        """Write one slice of a staged snapshot's records into its generation."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO cache_records(source, gen, kind, id, key, eta_ms, expires_ms, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record_rows(source, gen, records))
        self.conn.executemany(
            "INSERT OR IGNORE INTO trip_members(source, gen, member_kind, member_id, trip_id) VALUES (?, ?, ?, ?, ?)",
            member_rows(source, gen, records))

    def progress(self, s: Staged) -> None:
        """A part has been received and fully staged."""
        self.conn.execute("UPDATE cache_generations SET last_seq = ?, part = ?, records = ? WHERE source = ? AND gen = ?",
                          (s.last_seq, s.part, s.records, s.source, s.gen))

    def swap(self, s: Staged, now_ms: int) -> None:
        """The last part is staged: its generation becomes the live one, in one step."""
        old = self.live(s.source)
        self.conn.execute(
            "INSERT INTO cache_sources(source, seq, updated_ms, gen) VALUES (?, ?, ?, ?) ON CONFLICT(source) "
            "DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms, gen = excluded.gen",
            (s.source, s.last_seq, now_ms, s.gen))
        self.conn.execute("DELETE FROM cache_generations WHERE source = ? AND gen = ?", (s.source, s.gen))
        if old is not None:
            self._retire(s.source, old[1], RETIRED)

    def drop(self, source: str, gen: int) -> None:
        """Give up a staged snapshot: its rows are deleted later, the live ones stay."""
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

    def collect_garbage(self, limit: int) -> int:
        """Delete up to `limit` rows of generations no longer live; returns how many went."""
        row = self.conn.execute(
            "SELECT source, gen FROM cache_generations WHERE state IN ('dropped', 'retired') LIMIT 1").fetchone()
        if row is None:
            return 0
        source, gen = row
        done = self.conn.execute(
            "DELETE FROM cache_records WHERE source = ? AND gen = ? AND (kind, id) IN "
            "(SELECT kind, id FROM cache_records WHERE source = ? AND gen = ? LIMIT ?)",
            (source, gen, source, gen, limit)).rowcount
        done += self.conn.execute(
            "DELETE FROM trip_members WHERE source = ? AND gen = ? AND (member_kind, member_id, trip_id) IN "
            "(SELECT member_kind, member_id, trip_id FROM trip_members WHERE source = ? AND gen = ? LIMIT ?)",
            (source, gen, source, gen, max(0, limit - done))).rowcount if done < limit else 0
        if done == 0:
            self.conn.execute("DELETE FROM cache_generations WHERE source = ? AND gen = ?", (source, gen))
        return done


def apply_cache_message(conn: sqlite3.Connection, msg: dict, now_ms: int, force: bool = False) -> ApplyResult:
    """Apply a validated message at once, idempotently; the caller holds the transaction.

    For `laneagent cache import` and tests: a snapshot is staged, swapped and its old
    records deleted in this one call. The daemon slices the same work (core/cachefeed.py).
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
    gens.swap(staged, now_ms)
    while gens.collect_garbage(100_000):
        pass
    return ApplyResult("applied", source, seq, records=len(msg["records"]))
