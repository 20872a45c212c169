"""The database schema: its first version, and the mechanism that brings an older file up to date.

The schema version is SQLite's `user_version`; STEPS[i] moves a database from version
i to i + 1, inside one transaction, so an interrupted upgrade leaves the old version
intact. Never edit a released step: append a new one. Tables are declared with
sqlite-utils (`create_table`, `create_index`) and a later change to one is made with
`Table.transform()` (rename, retype, drop a column: sqlite-utils copies the table in
SQL that nobody has to write by hand). What sqlite-utils cannot say is written in SQL
here: WITHOUT ROWID tables (the outbox and the cache: half the bytes on disk, and the
footprint bar of DESIGN part 4 counts them), partial indexes and CHECK constraints. A
transform() of a WITHOUT ROWID table would turn it into a rowid table, and transform()
refuses to rename or drop a column of a table with a partial index (`reads`,
`deliveries`, `cache_records`) until that index is dropped; a step that changes one of
those drops and recreates the index, or writes its SQL.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from sqlite_utils import Database

GENESIS_HASH = "0" * 64

Step = Callable[[Database], None]


def _v1(db: Database) -> None:
    """The first version."""
    # The read journal: every tag report, committed within 250 ms of arrival.
    # consumed_by is the event_id that used the read, or 'stray'/'error' when no passage did.
    db.create_table("reads", {"id": int, "reader": str, "epc": str, "antenna": int, "rssi": float, "count": int,
                              "wall_ms": int, "consumed_by": str},
                    pk="id", not_null=("reader", "epc", "antenna", "count", "wall_ms"), defaults={"count": 1})
    db.execute("CREATE INDEX reads_open ON reads(id) WHERE consumed_by IS NULL")

    # Crossing events, the full record (all sections) as canonical CBOR.
    db.create_table("events", {"seq": int, "event_id": str, "created_ms": int, "started_ms": int, "ended_ms": int,
                               "hash": str, "body": bytes},
                    pk="seq", not_null=("event_id", "created_ms", "started_ms", "ended_ms", "hash", "body"))
    db["events"].create_index(["event_id"], index_name="events_event_id", unique=True)
    db["events"].create_index(["created_ms"], index_name="events_by_created")

    # Alerts (lookout hits, gaps, alarms), each already addressed to its back ends.
    db.create_table("alerts", {"id": int, "alert_id": str, "kind": str, "created_ms": int, "body": bytes},
                    pk="id", not_null=("alert_id", "kind", "created_ms", "body"))
    db["alerts"].create_index(["alert_id"], index_name="alerts_alert_id", unique=True)

    # The outbox: one row per (back end, item) with the exact bytes owed to that back end
    # (share applied, kind set), so the drain only reads and publishes and every retry is
    # identical; delivered_ms set only on PUBACK (or the back end's ack).
    db.execute("""
        CREATE TABLE deliveries (
            backend TEXT NOT NULL,
            item_type TEXT NOT NULL CHECK (item_type IN ('event', 'alert')),
            item_id INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            delivered_ms INTEGER,
            payload BLOB NOT NULL,
            PRIMARY KEY (backend, item_type, item_id)
        ) WITHOUT ROWID""")
    db.execute("CREATE INDEX deliveries_pending ON deliveries(backend, item_type, item_id) WHERE delivered_ms IS NULL")
    # Retention asks "is this item still owed to anyone?" without naming a back end.
    db["deliveries"].create_index(["item_type", "item_id", "delivered_ms"], index_name="deliveries_by_item")

    # Lane state: the next event seq and the hash chain head, in one row.
    db.execute("CREATE TABLE lane_state (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq INTEGER NOT NULL, "
               "head_hash TEXT NOT NULL)")
    db["lane_state"].insert({"id": 1, "next_seq": 1, "head_hash": GENESIS_HASH})

    # The cache the back ends push down (DESIGN 2.6), kept apart per source, in
    # generations: lookups read only the source's live one (cache_sources.gen); a snapshot
    # is staged in a new one and swapped in by one update (store/cachegen.py).
    # key: card_epc / transponder_epc / tag_epc for tagged records, the conveyance id
    # for a trip, the trip id for a shipment, "subject_kind:subject" for a lookout.
    db.execute("""
        CREATE TABLE cache_records (
            source TEXT NOT NULL,
            gen INTEGER NOT NULL,
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            key TEXT,
            eta_ms INTEGER,
            expires_ms INTEGER,
            body BLOB NOT NULL,  -- the record's DESIGN 2.6 fields, as CBOR
            PRIMARY KEY (source, gen, kind, id)
        ) WITHOUT ROWID""")
    db.execute("CREATE INDEX cache_by_key ON cache_records(kind, key) WHERE key IS NOT NULL")

    # Trip membership: which trips list a driver or a piece of equipment.
    db.execute("""
        CREATE TABLE trip_members (
            source TEXT NOT NULL,
            gen INTEGER NOT NULL,
            member_kind TEXT NOT NULL,
            member_id TEXT NOT NULL,
            trip_id TEXT NOT NULL,
            PRIMARY KEY (source, gen, member_kind, member_id, trip_id)
        ) WITHOUT ROWID""")
    db["trip_members"].create_index(["source", "gen", "trip_id"], index_name="trip_members_by_trip")

    # Per source: the last cache message seq applied, and the live generation.
    db.create_table("cache_sources", {"source": str, "seq": int, "updated_ms": int, "gen": int},
                    pk="source", not_null=("seq", "updated_ms", "gen"), defaults={"gen": 0})

    # Generations that are not live: a snapshot being staged (what has come so far, from
    # which back end), or a generation waiting to be deleted in slices.
    db.execute("""
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
        )""")

    # Signed command messages carry a seq per back end; a replayed one is refused.
    db.execute("CREATE TABLE downlink_seq (backend TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL, "
               "PRIMARY KEY (backend, kind)) WITHOUT ROWID")


def _v2(db: Database) -> None:
    """The outbox without payload copies (DESIGN part 4, `footprint`).

    v1 kept the exact payload of every delivery in a WITHOUT ROWID row: 1-1.3 KB rows
    spilled to overflow pages, 4.6 KB on disk per delivery. Now a delivery is a small
    state row; the payload is cut from the stored event at send time by a `view` (kind
    and shared sections, stored once in `outbox_views`), or is the alert's own body.
    A `payload` is kept only where it cannot be derived: the rows v1 still owed, copied
    byte for byte (nothing owed is re-encoded), and callers that hand in raw bytes.
    Rows are keyed by item first, so the rows one event owes its back ends share a page
    (one page write per commit, not one per back end)."""
    db.execute("CREATE TABLE outbox_views (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, sections TEXT NOT NULL, "
               "UNIQUE (kind, sections))")
    db.execute("""
        CREATE TABLE deliveries_v2 (
            item_type TEXT NOT NULL CHECK (item_type IN ('event', 'alert')),
            item_id INTEGER NOT NULL,
            backend TEXT NOT NULL,
            bytes INTEGER NOT NULL,  -- the size of the payload owed (the backlog figures)
            created_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            delivered_ms INTEGER,
            view INTEGER,  -- outbox_views.id: cut the event at send time
            payload BLOB,  -- exact bytes when they cannot be derived; NULL with no view: the alert's body
            PRIMARY KEY (item_type, item_id, backend)
        ) WITHOUT ROWID""")
    # Delivered rows are never sent again and alert payloads were the alert's body:
    # only the events still owed keep their v1 bytes.
    db.execute("""
        INSERT INTO deliveries_v2(item_type, item_id, backend, bytes, created_ms, attempts, delivered_ms, payload)
        SELECT item_type, item_id, backend, bytes, created_ms, attempts, delivered_ms,
               CASE WHEN item_type = 'event' AND delivered_ms IS NULL THEN payload END
        FROM deliveries""")
    db.execute("DROP TABLE deliveries")
    db.execute("ALTER TABLE deliveries_v2 RENAME TO deliveries")
    db.execute("CREATE INDEX deliveries_pending ON deliveries(item_type, item_id, backend) WHERE delivered_ms IS NULL")


def _v3(db: Database) -> None:
    """Where each deniable entry lies in an event's stored bytes (`eventbody.pack`), so a back
    end's payload is cut without decoding the event (DESIGN part 4, `drain`). Events stored
    before keep NULL and are cut as before: their payloads, and the sizes counted for them,
    do not change."""
    db.execute("ALTER TABLE events ADD COLUMN spans BLOB")


STEPS: list[Step] = [_v1, _v2, _v3]

SCHEMA_VERSION = len(STEPS)


def migrate(conn: sqlite3.Connection, steps: list[Step] | None = None) -> int:
    """Bring the database up to the version `steps` define (STEPS); returns the version it started from."""
    steps = STEPS if steps is None else steps
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    if start > len(steps):
        raise RuntimeError(f"database schema {start} is not one this laneagent knows (it knows 1 to {len(steps)}): "
                           "a newer laneagent wrote it, or release 0.1 (its schemas 2-4, before the schema was "
                           "folded into a clean first version); upgrade laneagent, or move the database aside")
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    for version in range(start, len(steps)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            steps[version](db)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if start == 0:
        conn.execute("VACUUM")  # a new file: the pages later steps freed (v1's outbox) go, a few KB
    return start
