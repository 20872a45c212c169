"""The schema: a fresh database gets the current version whole, a real v1 file is upgraded
to v2 without losing an owed event, and the migration mechanism runs a later step."""

import sqlite3
import zlib

import cbor2
import pytest
from sqlite_utils import Database

from agent.lane.disclosure import View, cut
from agent.store import schema
from agent.store.db import open_reader, open_writer
from agent.store.outbox import Outbox
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter

TABLES = {"reads", "events", "alerts", "deliveries", "outbox_views", "lane_state", "cache_records", "trip_members",
          "cache_sources", "cache_generations", "downlink_seq"}


def test_a_fresh_database_gets_the_current_version(tmp_path):
    conn = open_writer(str(tmp_path / "agent.db"))
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    assert schema.SCHEMA_VERSION == 3
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert set(db.table_names()) == TABLES
    assert db["deliveries"].columns_dict == {"item_type": str, "item_id": int, "backend": str, "bytes": int,
                                             "created_ms": int, "attempts": int, "delivered_ms": int,
                                             "view": int, "payload": bytes}
    assert db["deliveries"].pks == ["item_type", "item_id", "backend"]
    # Small rows stay WITHOUT ROWID (SQLite's advice for rows under 1/20 of a page), with the partial indexes.
    sql = {name: text for name, text in conn.execute("SELECT name, sql FROM sqlite_master")}
    for table in ("deliveries", "cache_records", "trip_members", "downlink_seq"):
        assert "WITHOUT ROWID" in sql[table], table
    assert "WHERE delivered_ms IS NULL" in sql["deliveries_pending"]
    assert "WHERE consumed_by IS NULL" in sql["reads_open"]
    assert {i.name for i in db["events"].indexes} >= {"events_event_id", "events_by_created"}
    assert list(db["lane_state"].rows) == [{"id": 1, "next_seq": 1, "head_hash": "0" * 64}]
    with pytest.raises(sqlite3.IntegrityError):  # one lane state row, ever
        conn.execute("INSERT INTO lane_state VALUES (2, 1, 'x')")
    with pytest.raises(sqlite3.IntegrityError):  # a delivery names what it delivers
        conn.execute("INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms) "
                     "VALUES ('a', 'parcel', 1, 1, 1)")
    conn.close()


def _v1_file(path: str) -> None:
    """A database exactly as release 0.2's v1 left it: 3 events, the first delivered to both back
    ends, the second to cbsa only, the third to nobody; one alert, delivered. Written with v1's
    own SQL (the writer of that release), since today's writer speaks v2."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    schema.migrate(conn, schema.STEPS[:1])
    for seq in (1, 2, 3):
        body = cbor2.dumps({"seq": seq, "event_id": f"e{seq}"}, canonical=True)
        conn.execute("INSERT INTO events(seq, event_id, created_ms, started_ms, ended_ms, hash, body) "
                     "VALUES (?, ?, ?, 0, 0, ?, ?)", (seq, f"e{seq}", 1_000 + seq, f"h{seq}", body))
        for backend in ("cbsa", "cbp"):
            payload = f"v1 bytes of e{seq} for {backend}".encode() * 40  # ~1 KB, as v1 stored them
            delivered = 5_000 if seq == 1 or (seq == 2 and backend == "cbsa") else None
            conn.execute("INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms, attempts, "
                         "delivered_ms, payload) VALUES (?, 'event', ?, ?, ?, ?, ?, ?)",
                         (backend, seq, len(payload), 1_000 + seq, int(delivered is not None), delivered, payload))
    conn.execute("UPDATE lane_state SET next_seq = 4, head_hash = 'h3'")
    alert = cbor2.dumps({"alert_id": "a1", "kind": "gap", "detail": {}})
    conn.execute("INSERT INTO alerts(alert_id, kind, created_ms, body) VALUES ('a1', 'gap', 7, ?)", (alert,))
    conn.execute("INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms, delivered_ms, payload) "
                 "VALUES ('cbsa', 'alert', 1, ?, 7, 8, ?)", (len(alert), alert))
    conn.close()


def test_a_v1_database_is_upgraded_without_losing_an_owed_event(tmp_path):
    path = str(tmp_path / "agent.db")
    _v1_file(path)
    writer = StoreWriter(path)  # opening it migrates, as the daemon does at start
    try:
        conn = writer.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        outbox = Outbox(open_reader(path))
        # What was owed is still owed, with v1's exact bytes (nothing re-encoded).
        assert outbox.pending("cbsa", "event", 0, 10) == [(3, b"v1 bytes of e3 for cbsa" * 40)]
        assert outbox.pending("cbp", "event", 0, 10) == [(2, b"v1 bytes of e2 for cbp" * 40),
                                                        (3, b"v1 bytes of e3 for cbp" * 40)]
        assert outbox.backlog("cbp", now_ms=2_003)["events"] == 2
        # What was delivered keeps its mark and drops its copy; the alert is its own body.
        assert conn.execute("SELECT item_type, item_id, backend, delivered_ms, attempts, payload IS NULL "
                            "FROM deliveries WHERE delivered_ms IS NOT NULL ORDER BY 1, 2, 3").fetchall() == [
            ("alert", 1, "cbsa", 8, 0, 1), ("event", 1, "cbp", 5_000, 1, 1), ("event", 1, "cbsa", 5_000, 1, 1),
            ("event", 2, "cbsa", 5_000, 1, 1)]
        assert writer.chain_state() == (4, "h3")
        with StoreReader(path) as r:  # v1's plain CBOR bodies read as today's deflated ones do
            assert r.event("e3")["event"] == {"seq": 3, "event_id": "e3"}
        # And the upgraded outbox goes on working: a new event, cut from its stored body.
        with writer.transaction():
            writer.mark_delivered("cbp", [("event", 2), ("event", 3)], 9_000)
        assert outbox.pending("cbp", "event", 0, 10) == []
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        outbox.conn.close()
    finally:
        writer.close()


def test_events_stored_before_v3_are_still_cut_as_they_were(tmp_path):
    """A v2 file's events have no spans: their payloads are decoded, cut and encoded as v2
    did, so what was owed (and counted) before the upgrade is sent byte for byte the same."""
    path = str(tmp_path / "agent.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    schema.migrate(conn, schema.STEPS[:2])
    event = {"seq": 1, "event_id": "e1", "started_ms": 1, "ended_ms": 2, "hash": "h", "v": 1,
             "tags": [{"epc": "E1", "rssi_max": -48.5}], "driver": [{"id": "D1"}]}
    body = zlib.compress(cbor2.dumps(event, canonical=True), 1)
    conn.execute("INSERT INTO events(seq, event_id, created_ms, started_ms, ended_ms, hash, body) "
                 "VALUES (1, 'e1', 1, 1, 2, 'h', ?)", (body,))
    conn.execute("INSERT INTO outbox_views(id, kind, sections) VALUES (1, 'exit', 'tags')")
    v2_payload = cbor2.dumps(cut(event, View("exit", ("tags",))))
    conn.execute("INSERT INTO deliveries(item_type, item_id, backend, bytes, created_ms, view) "
                 "VALUES ('event', 1, 'cbp', ?, 1, 1)", (len(v2_payload),))
    conn.close()
    writer = StoreWriter(path)
    try:
        assert writer.conn.execute("SELECT spans FROM events").fetchall() == [(None,)]
        outbox = Outbox(open_reader(path))
        assert outbox.pending("cbp", "event", 0, 10) == [(1, v2_payload)]
        outbox.conn.close()
    finally:
        writer.close()


def test_the_migration_mechanism_runs_a_next_step_with_transform(tmp_path):
    path = str(tmp_path / "agent.db")
    w = StoreWriter(path)
    with w.transaction():
        w.add_alert({"alert_id": "a-1", "kind": "gap", "detail": {}}, ["cbsa"], 1_000)
    w.close()

    def v2(db: Database) -> None:  # a next change, as the next release would write it
        db["alerts"].transform(rename={"created_ms": "recorded_ms"}, types={"kind": "BLOB"})
        db["alerts"].create_index(["kind"], index_name="alerts_by_kind")

    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.migrate(conn, [*schema.STEPS, v2]) == 3
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    assert db["alerts"].columns_dict["recorded_ms"] is int and "created_ms" not in db["alerts"].columns_dict
    assert db["alerts"].columns_dict["kind"] is bytes
    assert [(r["alert_id"], r["recorded_ms"]) for r in db["alerts"].rows] == [("a-1", 1_000)]  # data kept
    assert {"alerts_by_kind", "alerts_alert_id"} <= {i.name for i in db["alerts"].indexes}
    assert schema.migrate(conn, [*schema.STEPS, v2]) == 4  # nothing left to do
    conn.close()


def test_a_failing_step_leaves_the_previous_version_intact(tmp_path):
    path = str(tmp_path / "agent.db")
    StoreWriter(path).close()

    def broken(db: Database) -> None:
        db["alerts"].transform(rename={"created_ms": "recorded_ms"})
        raise RuntimeError("power cut in the middle of the upgrade")

    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(RuntimeError, match="power cut"):
        schema.migrate(conn, [*schema.STEPS, broken])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert "created_ms" in Database(conn, recursive_triggers=False, execute_plugins=False)["alerts"].columns_dict
    conn.close()


def test_a_new_main_file_has_small_pages_and_an_existing_one_keeps_its_own(tmp_path):
    # Small pages halve the flash each group commit writes (DESIGN part 4, footprint); the
    # cache's file keeps SQLite's default for its big indexes. An existing file is not rebuilt.
    writer = StoreWriter(str(tmp_path / "agent.db"))
    assert writer.conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert writer.cache_db.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    writer.close()
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    conn = open_writer(str(old))
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    conn.close()
