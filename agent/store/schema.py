"""The database schema and its migrations.

The schema version is SQLite's `user_version`. Each entry of MIGRATIONS moves the
database from version i to i + 1 inside one transaction, so an interrupted upgrade
leaves the old version intact. Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the first release.
    """
    -- The read journal: every tag report, committed within 250 ms of arrival.
    -- consumed_by is the event_id that used the read, or 'stray' when no passage did.
    CREATE TABLE reads (
        id INTEGER PRIMARY KEY,
        reader TEXT NOT NULL,
        epc TEXT NOT NULL,
        antenna INTEGER NOT NULL,
        rssi REAL,
        count INTEGER NOT NULL DEFAULT 1,
        wall_ms INTEGER NOT NULL,
        consumed_by TEXT
    );
    CREATE INDEX reads_open ON reads(id) WHERE consumed_by IS NULL;

    -- Crossing events, the full record (all sections) as canonical CBOR.
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        hash TEXT NOT NULL,
        body BLOB NOT NULL
    );

    -- Alerts (lookout hits, gaps, alarms), each already addressed to its back ends.
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        alert_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        body BLOB NOT NULL
    );

    -- The outbox: one row per (back end, item); delivered_ms set only on PUBACK (or ack).
    CREATE TABLE deliveries (
        backend TEXT NOT NULL,
        item_type TEXT NOT NULL CHECK (item_type IN ('event', 'alert')),
        item_id INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        PRIMARY KEY (backend, item_type, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_pending ON deliveries(backend, item_type, item_id) WHERE delivered_ms IS NULL;

    -- Lane state: the next event seq and the hash chain head, in one row.
    CREATE TABLE lane_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL
    );
    INSERT INTO lane_state VALUES (1, 1, '0000000000000000000000000000000000000000000000000000000000000000');

    -- The cache the back ends push down (DESIGN 2.6), kept apart per source.
    -- key: card_epc / transponder_epc / tag_epc for tagged records, the conveyance id
    -- for a trip, the trip id for a shipment, "subject_kind:subject" for a lookout.
    CREATE TABLE cache_records (
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        key TEXT,
        eta_ms INTEGER,
        expires_ms INTEGER,
        body TEXT NOT NULL,
        PRIMARY KEY (source, kind, id)
    ) WITHOUT ROWID;
    CREATE INDEX cache_by_key ON cache_records(kind, key) WHERE key IS NOT NULL;

    -- Trip membership: which trips list a driver or a piece of equipment.
    CREATE TABLE trip_members (
        source TEXT NOT NULL,
        member_kind TEXT NOT NULL,
        member_id TEXT NOT NULL,
        trip_id TEXT NOT NULL,
        PRIMARY KEY (source, member_kind, member_id, trip_id)
    ) WITHOUT ROWID;
    CREATE INDEX trip_members_by_trip ON trip_members(source, trip_id);

    -- Per source: the last cache message seq applied.
    CREATE TABLE cache_sources (
        source TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    """,
    # 2: signed command messages carry a seq per back end; a replayed one is refused.
    """
    CREATE TABLE downlink_seq (
        backend TEXT NOT NULL,
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (backend, kind)
    ) WITHOUT ROWID;
    """,
    # 3: retention asks "is this item still owed to anyone?" without naming a back end.
    """
    CREATE INDEX deliveries_by_item ON deliveries(item_type, item_id, delivered_ms);
    CREATE INDEX events_by_created ON events(created_ms);
    """,
    # 4: each delivery carries the exact bytes owed to its back end (share applied,
    # kind set) so the drain only reads and publishes, and every retry is identical.
    # Rows from before have NULL and are encoded at send time.
    """
    ALTER TABLE deliveries ADD COLUMN payload BLOB;
    """,
    # 5: cache generations (DESIGN 2.6): a snapshot is staged in a new generation and
    # swapped in by one update of cache_sources.gen; lookups read only the live one.
    """
    CREATE TABLE cache_records_v5 (
        source TEXT NOT NULL,
        gen INTEGER NOT NULL,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        key TEXT,
        eta_ms INTEGER,
        expires_ms INTEGER,
        body TEXT NOT NULL,
        PRIMARY KEY (source, gen, kind, id)
    ) WITHOUT ROWID;
    INSERT INTO cache_records_v5 SELECT source, 0, kind, id, key, eta_ms, expires_ms, body FROM cache_records;
    DROP TABLE cache_records;
    ALTER TABLE cache_records_v5 RENAME TO cache_records;
    CREATE INDEX cache_by_key ON cache_records(kind, key) WHERE key IS NOT NULL;
    CREATE TABLE trip_members_v5 (
        source TEXT NOT NULL,
        gen INTEGER NOT NULL,
        member_kind TEXT NOT NULL,
        member_id TEXT NOT NULL,
        trip_id TEXT NOT NULL,
        PRIMARY KEY (source, gen, member_kind, member_id, trip_id)
    ) WITHOUT ROWID;
    INSERT INTO trip_members_v5 SELECT source, 0, member_kind, member_id, trip_id FROM trip_members;
    DROP TABLE trip_members;
    ALTER TABLE trip_members_v5 RENAME TO trip_members;
    CREATE INDEX trip_members_by_trip ON trip_members(source, gen, trip_id);
    ALTER TABLE cache_sources ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    -- Generations that are not live: being staged, or waiting to be deleted in slices.
    CREATE TABLE cache_generations (
        source TEXT NOT NULL,
        gen INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('staging', 'dropped', 'retired')),
        backend TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        part INTEGER NOT NULL,
        parts INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        records INTEGER NOT NULL,
        PRIMARY KEY (source, gen)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to SCHEMA_VERSION; returns the version it started from."""
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    if start > SCHEMA_VERSION:
        raise RuntimeError(f"database schema {start} is newer than this laneagent ({SCHEMA_VERSION}); upgrade laneagent")
    for version in range(start, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own)."""
    out, current = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return [s for s in out if s]
