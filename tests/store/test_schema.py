"""The schema: a fresh database gets version 1 whole, and the migration mechanism runs a later step."""

import sqlite3

import pytest
from sqlite_utils import Database

from agent.store import schema
from agent.store.db import open_writer
from agent.store.writer import StoreWriter

TABLES = {"reads", "events", "alerts", "deliveries", "lane_state", "cache_records", "trip_members", "cache_sources",
          "cache_generations", "downlink_seq"}


def test_a_fresh_database_gets_the_first_version(tmp_path):
    conn = open_writer(str(tmp_path / "agent.db"))
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    assert schema.SCHEMA_VERSION == 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert set(db.table_names()) == TABLES
    assert db["deliveries"].columns_dict == {"backend": str, "item_type": str, "item_id": int, "bytes": int,
                                             "created_ms": int, "attempts": int, "delivered_ms": int,
                                             "payload": bytes}
    assert {c.name for c in db["deliveries"].columns if c.notnull} >= {"payload", "bytes", "backend"}
    # The outbox and the cache stay WITHOUT ROWID (bytes on disk per event) with their partial indexes.
    sql = {name: text for name, text in conn.execute("SELECT name, sql FROM sqlite_master")}
    for table in ("deliveries", "cache_records", "trip_members", "downlink_seq"):
        assert "WITHOUT ROWID" in sql[table], table
    assert "WHERE delivered_ms IS NULL" in sql["deliveries_pending"]
    assert "WHERE consumed_by IS NULL" in sql["reads_open"]
    assert {i.name for i in db["events"].indexes} >= {"events_event_id", "events_by_created"}
    assert list(db["lane_state"].rows) == [{"id": 1, "next_seq": 1, "head_hash": "0" * 64}]
    with pytest.raises(sqlite3.IntegrityError):  # one lane state row, ever
        conn.execute("INSERT INTO lane_state VALUES (2, 1, 'x')")
    with pytest.raises(sqlite3.IntegrityError):  # a delivery always carries its payload
        conn.execute("INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms) "
                     "VALUES ('a', 'event', 1, 1, 1)")
    conn.close()


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
    assert schema.migrate(conn, [*schema.STEPS, v2]) == 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    assert db["alerts"].columns_dict["recorded_ms"] is int and "created_ms" not in db["alerts"].columns_dict
    assert db["alerts"].columns_dict["kind"] is bytes
    assert [(r["alert_id"], r["recorded_ms"]) for r in db["alerts"].rows] == [("a-1", 1_000)]  # data kept
    assert {"alerts_by_kind", "alerts_alert_id"} <= {i.name for i in db["alerts"].indexes}
    assert schema.migrate(conn, [*schema.STEPS, v2]) == 2  # nothing left to do
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "created_ms" in Database(conn, recursive_triggers=False, execute_plugins=False)["alerts"].columns_dict
    conn.close()
