"""The store on real SQLite files: schema, modes, the cache protocol, the outbox."""

import os
import sqlite3
import stat

import cbor2
import pytest

from agent.errors import DownlinkRejected
from agent.store.cache import validate_cache_message
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.store.schema import SCHEMA_VERSION
from agent.store.writer import StoreWriter


def msg(source, seq, op, *records):
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op, "records": list(records)}


def driver(rid, epc):
    return {"kind": "driver", "id": rid, "name": "N", "card_epc": epc, "status": "valid"}


@pytest.fixture
def writer(tmp_path):
    w = StoreWriter(str(tmp_path / "state" / "agent.db"))
    yield w
    w.close()


def apply(w, m):
    with w.transaction():
        return w.apply_cache(m, 1).outcome


def test_new_database_is_wal_full_sync_private_and_versioned(writer, tmp_path):
    conn = writer.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(writer.path).st_mode) == 0o600
    assert conn.execute("SELECT next_seq, head_hash FROM lane_state").fetchone() == (1, "0" * 64)


def test_reopening_does_not_migrate_again(writer):
    with writer.transaction():
        writer.journal([("booth", "AA", 1, -50.0, 1, 5)])
    again = StoreWriter(writer.path)
    assert again.conn.execute("SELECT count(*) FROM reads").fetchone()[0] == 1
    again.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "a.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="not one this laneagent knows .* a newer laneagent wrote it"):
        StoreWriter(str(path))


def test_cache_apply_is_idempotent_and_seq_tracked(writer):
    assert apply(writer, msg("CA", 1, "snapshot", driver("D1", "AA01"))) == "applied"
    assert apply(writer, msg("CA", 1, "snapshot", driver("D1", "AA01"))) == "duplicate"
    assert apply(writer, msg("CA", 2, "upsert", driver("D2", "AA02"))) == "applied"
    assert apply(writer, msg("CA", 2, "upsert", driver("D2", "AA02"))) == "duplicate"
    assert apply(writer, msg("CA", 4, "upsert", driver("D4", "AA04"))) == "gap"
    view = writer.cache
    assert [r["id"] for _, _, r in view.tagged("AA02")] == ["D2"]
    assert view.tagged("AA04") == []
    assert apply(writer, msg("CA", 3, "delete", {"kind": "driver", "id": "D2"})) == "applied"
    assert view.tagged("AA02") == []
    assert view.sources()[0]["seq"] == 3


def test_snapshot_replaces_only_its_own_source(writer):
    apply(writer, msg("CA", 1, "snapshot", driver("D1", "AA01"),
                      {"kind": "trip", "id": "TR1", "eta_ms": 5, "conveyance": "T1", "drivers": ["D1"]}))
    apply(writer, msg("US", 1, "snapshot", driver("U1", "BB01")))
    apply(writer, msg("US", 2, "snapshot", driver("U2", "BB02")))
    view = writer.cache
    assert [r["id"] for _, _, r in view.tagged("AA01")] == ["D1"]
    assert view.tagged("BB01") == [] and len(view.tagged("BB02")) == 1
    assert [t["id"] for t in view.trips_of_member("CA", "driver", "D1")] == ["TR1"]


def test_first_message_of_a_source_must_be_seq_1_or_a_snapshot(writer):
    assert apply(writer, msg("CA", 7, "upsert", driver("D1", "AA01"))) == "gap"
    assert apply(writer, msg("CA", 7, "snapshot", driver("D1", "AA01"))) == "applied"


@pytest.mark.parametrize("bad, why", [
    ([], "not a CBOR map"),
    ({"v": 2, "type": "cache"}, "v/type"),
    ({**msg("CA", 1, "upsert"), "source": "Canada"}, "country code"),
    ({**msg("CA", 0, "upsert")}, "positive integer"),
    ({**msg("CA", 1, "replace")}, "op"),
    (msg("CA", 1, "upsert", {"kind": "pet", "id": "x"}), "known kind"),
    (msg("CA", 1, "upsert", {"kind": "driver", "id": "D", "card_epc": "not hex!"}), "hex EPC"),
    (msg("CA", 1, "upsert", {"kind": "trip", "id": "T", "eta_ms": "soon"}), "eta_ms"),
    (msg("CA", 1, "upsert", {"kind": "lookout", "id": "L", "subject_kind": "pet"}), "subject_kind"),
])
def test_malformed_cache_messages_are_rejected_with_a_reason(bad, why):
    with pytest.raises(DownlinkRejected, match=why):
        validate_cache_message(bad)


def test_wrong_source_is_rejected():
    with pytest.raises(DownlinkRejected) as e:
        validate_cache_message(msg("US", 1, "upsert"), expected_source="CA")
    assert e.value.reason == "wrong_source"


def test_outbox_offers_oldest_first_and_forgets_delivered(writer):
    with writer.transaction():
        for seq in (1, 2, 3):
            writer.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 2, "hash": "h"},
                             {"cbsa": b"to-cbsa", "cbp": b"to-cbp"}, 100)
        writer.mark_delivered("cbsa", [("event", 1)], 200)
    outbox = Outbox(open_reader(writer.path))
    assert outbox.pending("cbsa", "event", 0, 10) == [(2, b"to-cbsa"), (3, b"to-cbsa")]
    assert [i for i, _ in outbox.pending("cbp", "event", 1, 10)] == [2, 3]
    backlog = outbox.backlog("cbsa", now_ms=1100)
    assert backlog["events"] == 2 and backlog["oldest_event_age_s"] == 1.0 and backlog["last_delivered_ms"] == 200
    assert writer.chain_state() == (4, "h")


def test_only_the_fields_the_lane_needs_are_stored(writer):
    rec = {**driver("D1", "AA01"), "date_of_birth": "1970-01-01", "home_address": "1 Main St"}
    apply(writer, msg("CA", 1, "snapshot", rec))
    [(_, _, stored)] = writer.cache.tagged("AA01")
    assert stored == {"kind": "driver", "id": "D1", "name": "N", "card_epc": "AA01", "status": "valid"}


def test_an_event_owed_by_view_is_cut_from_the_stored_event_at_send_time(writer):
    from agent.lane.disclosure import View, cut

    event = {"seq": 1, "event_id": "e1", "started_ms": 1, "ended_ms": 2, "hash": "h", "v": 1,
             "tags": [{"epc": "E1", "rssi_max": -48.5}], "driver": [{"id": "D1", "name": "N"}]}
    with writer.transaction():
        writer.add_event(event, {"cbsa": View("entry", ("tags", "driver")), "cbp": View("exit", ("tags",))}, 100)
    outbox = Outbox(open_reader(writer.path))
    [(seq, to_cbsa)] = outbox.pending("cbsa", "event", 0, 10)
    [(_, to_cbp)] = outbox.pending("cbp", "event", 0, 10)
    assert seq == 1
    assert cbor2.loads(to_cbsa) == cut(event, View("entry", ("tags", "driver")))
    assert cbor2.loads(to_cbp) == {"seq": 1, "event_id": "e1", "started_ms": 1, "ended_ms": 2, "hash": "h", "v": 1,
                                   "kind": "exit", "tags": [{"epc": "E1", "rssi_max": -48.5}]}
    assert outbox.pending("cbsa", "event", 0, 10) == [(1, to_cbsa)]  # a retry is byte for byte the same
    assert outbox.backlog("cbp")["event_bytes"] == len(to_cbp)
    # One stored copy of the event, no payload per back end.
    assert writer.conn.execute("SELECT count(*) FROM deliveries WHERE payload IS NOT NULL").fetchone()[0] == 0
    outbox.conn.close()


def test_a_rolled_back_view_is_not_reused(writer):
    from agent.lane.disclosure import View

    event = {"seq": 1, "event_id": "e1", "started_ms": 1, "ended_ms": 2, "hash": "h", "tags": []}
    with pytest.raises(RuntimeError):
        with writer.transaction():
            writer.add_event(event, {"cbsa": View("entry", ("tags",))}, 100)
            raise RuntimeError("a bug after the insert")
    with writer.transaction():
        writer.add_event(event, {"cbsa": View("entry", ("tags",))}, 100)
    outbox = Outbox(open_reader(writer.path))
    assert cbor2.loads(outbox.pending("cbsa", "event", 0, 10)[0][1])["kind"] == "entry"
    outbox.conn.close()


def test_a_clean_close_checkpoints_and_truncates_the_wal(tmp_path):
    path = str(tmp_path / "agent.db")
    writer = StoreWriter(path)
    reader = open_reader(path)  # a link's read connection still open, as at a daemon's stop
    with writer.transaction():
        for seq in range(1, 200):
            writer.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 2, "hash": "h"},
                             {"cbsa": b"x" * 1000}, 100)
    assert os.path.getsize(path + "-wal") > 100_000
    writer.close()
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 199
    reader.close()
