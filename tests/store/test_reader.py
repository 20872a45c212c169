"""The store's read API (`StoreReader`) and the writer's guards, on real SQLite files."""

import pytest

from agent.errors import StoreError
from agent.lane.event import gap_alert
from agent.store import schema
from agent.store.db import UnreadableStore
from agent.store.reader import StoreReader
from agent.store.retention import DAY_MS
from agent.store.writer import StoreWriter
from tests.helpers import payloads


def event(seq, h=None):
    return {"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 2, "hash": h or f"h{seq}"}


def cache_msg(source, seq, op="upsert", *records):
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op, "records": list(records)}


@pytest.fixture
def writer(tmp_path):
    w = StoreWriter(str(tmp_path / "state" / "agent.db"))
    yield w
    w.close()


def test_a_new_database_reads_as_empty(writer):
    with StoreReader(writer.path) as r:
        assert r.chain_head() == (0, "0" * 64)
        assert r.cache_seq("CA") == 0 and r.cache_sources() == []
        assert r.backlog_bytes() == 0 and r.gaps() == [] and r.open_reads() == 0
        assert r.last_event_seq() == 0 and r.newest_event_ms() is None
        assert r.backlog("cbsa", now_ms=5)["events"] == 0
        assert r.integrity() == (["ok"], schema.SCHEMA_VERSION)


def test_chain_backlog_and_deliveries(writer):
    with writer.transaction():
        for seq in (1, 2, 3):
            writer.add_event(event(seq), {"cbsa": b"x" * 100, "cbp": b"y" * 50}, 1_000 + seq)
        writer.mark_delivered("cbsa", [("event", 1), ("event", 2)], 2_000)
        writer.add_alert(gap_alert({"first_ms": 10, "last_ms": 20, "count": 7, "reason": "disk_full"}, 30), ["cbsa"], 30)
        writer.journal([("booth", "E1", 1, -50.0, 1, 5)])
    with StoreReader(writer.path) as r:
        assert r.chain_head() == (3, "h3")
        assert r.last_event_seq() == 3 and r.newest_event_ms() == 1_003
        alert_bytes = r.backlog("cbsa", now_ms=2_000)["alert_bytes"]
        assert r.backlog_bytes() == 100 + 3 * 50 + alert_bytes
        assert r.backlog("cbp", now_ms=2_000)["events"] == 3
        assert r.gaps() == [{"recorded_ms": 30, "first_ms": 10, "last_ms": 20, "count": 7, "reason": "disk_full"}]
        assert r.event("e2")["seq"] == 2 and r.event("e2")["event"]["event_id"] == "e2" and r.event("nope") is None
        assert r.event("e3")["seq"] == 3
        assert r.deliveries(1) == [{"backend": "cbp", "attempts": 0, "delivered_ms": None},
                                   {"backend": "cbsa", "attempts": 1, "delivered_ms": 2_000}]
        assert r.delivered_since("cbsa", 2) == [(2, 2_000, 1)]
        assert [(s, e["event_id"]) for s, _, e in r.events_after(1, 10)] == [(2, "e2"), (3, "e3")]
        assert [(s, h) for s, h, _ in r.chain_events()] == [(1, "h1"), (2, "h2"), (3, "h3")]
        assert r.open_reads() == 1
        stats = r.stats()
        assert stats["tables"]["events"] == 3 and stats["chain"] == {"next_seq": 4, "head_hash": "h3"}
        assert stats["alerts"] == {"gap": 1} and "error" not in stats


def test_cache_seq_on_reader_and_writer(writer):
    with writer.transaction():
        writer.apply_cache(cache_msg("CA", 1, "snapshot", {"kind": "driver", "id": "D1", "name": "Alex Martin",
                                                           "card_epc": "AA01"}), 7)
        writer.apply_cache(cache_msg("CA", 2), 8)
        assert writer.cache_seq("CA") == 2 and writer.cache_seq("US") == 0
        assert [rec["id"] for _, _, rec in writer.cache.tagged("AA01")] == ["D1"]
        assert writer.classify_cache(cache_msg("CA", 3)) == "apply"
        assert writer.classify_cache(cache_msg("CA", 2)) == "duplicate"
        assert writer.classify_cache(cache_msg("CA", 5)) == "gap"
    with StoreReader(writer.path) as r:
        assert r.cache_seq("CA") == 2 and r.cache_seq("US") == 0
        assert r.cache_sources() == [{"source": "CA", "seq": 2, "updated_ms": 8, "records": 1}]
        assert r.tag_keys() == ["AA01"] and [rec["name"] for rec in r.cache_records()] == ["Alex Martin"]
        assert [rec["id"] for _, _, rec in r.cache.tagged("AA01")] == ["D1"]


def test_command_seq_replay_guard(writer):
    with writer.transaction():
        assert writer.accept_command_seq("cbsa", 5) is None
        assert writer.accept_command_seq("cbsa", 5) == 5  # the same seq again: refused
        assert writer.accept_command_seq("cbsa", 4) == 5
        assert writer.accept_command_seq("cbp", 1) is None  # each back end has its own
        assert writer.accept_command_seq("cbsa", 6) is None
    with writer.transaction():
        assert writer.accept_command_seq("cbsa", 6) == 6  # it survives the commit


def test_purge_step_on_the_writer(writer):
    now = 1_800_000_000_000
    with writer.transaction():
        writer.add_event(event(1), {"cbsa": b"x"}, now - 8 * DAY_MS)
        writer.mark_delivered("cbsa", [("event", 1)], now - 8 * DAY_MS)
        assert writer.purge_step(now, 7) == {"events": 1}
        assert writer.purge_step(now, 7) == {}


def test_an_event_needs_a_payload_for_every_back_end(writer):
    with pytest.raises(ValueError, match="no payload for back end"):
        with writer.transaction():
            writer.add_event(event(1), {"cbsa": b"x", "cbp": None}, 1)
    with StoreReader(writer.path) as r:
        assert r.chain_head() == (0, "0" * 64)  # nothing of it was kept
    with writer.transaction():
        writer.add_event({**event(1), "v": 1}, payloads(event(1), ["cbsa"]), 1)


def test_a_missing_or_damaged_file_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="no database yet"):
        StoreReader(str(tmp_path / "nowhere.db"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 500)
    with pytest.raises(UnreadableStore) as e:
        StoreReader(str(bad))
    assert "not a database" in e.value.reason and e.value.path == str(bad)
    with pytest.raises(UnreadableStore):
        StoreReader(str(bad), probe=False).integrity()
