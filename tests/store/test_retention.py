"""Retention: delivered events, old strays and expired cache records go; undelivered ones stay."""

from agent.store.reader import StoreReader
from agent.store.retention import DAY_MS
from agent.store.writer import StoreWriter

NOW = 1_800_000_000_000


def test_purge_forgets_only_what_may_be_forgotten(tmp_path):
    w = StoreWriter(str(tmp_path / "a.db"))
    old = NOW - 8 * DAY_MS
    with w.transaction() as conn:
        for seq in (1, 2, 3):
            w.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 0, "ended_ms": 0, "hash": "h"},
                        {"a": b"to-a", "b": b"to-b"}, old if seq < 3 else NOW)
        w.mark_delivered("a", [("event", 1), ("event", 2), ("event", 3)], old)
        w.mark_delivered("b", [("event", 1)], old)  # seq 2 still owed to b
        ids = w.journal([("r", "E1", 1, -50.0, 1, old), ("r", "E2", 1, -50.0, 1, old), ("r", "E3", 1, -50.0, 1, NOW)])
        w.consume(ids[:1], "e1")
        w.consume(ids[1:], "stray")
        w.apply_cache({"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot", "records": [
            {"kind": "lookout", "id": "L-old", "subject_kind": "epc", "subject": "E1", "expires_ms": NOW - 1},
            {"kind": "lookout", "id": "L-live", "subject_kind": "epc", "subject": "E1", "expires_ms": NOW + 1},
            {"kind": "driver", "id": "D-old", "card_epc": "AA", "card_expires_ms": old},
            {"kind": "driver", "id": "D-live", "card_epc": "AB", "card_expires_ms": NOW},
            {"kind": "trip", "id": "T-old", "eta_ms": old, "conveyance": "C", "drivers": ["D-live"], "shipments": ["S"]},
            {"kind": "shipment", "id": "S", "trip": "T-old"},
            {"kind": "trip", "id": "T-live", "eta_ms": NOW, "conveyance": "C", "drivers": ["D-live"]},
        ]}, NOW)
        done = w.purge_step(NOW, retention_days=7, batch=1000)
    assert done == {"events": 1, "reads": 1, "cache_records": 3}  # e1; the old stray; L-old, D-old, T-old
    assert [r[0] for r in w.conn.execute("SELECT seq FROM events ORDER BY seq")] == [2, 3]
    assert [r[0] for r in w.conn.execute("SELECT epc FROM reads ORDER BY id")] == ["E3"]
    with StoreReader(w.path) as store:
        assert sorted(r["id"] for r in store.cache_records()) == ["D-live", "L-live", "T-live"]
        assert store.cache.trips_of_member("CA", "driver", "D-live") == [store.cache.record("CA", "trip", "T-live")]
    with w.transaction():
        assert w.purge_step(NOW, retention_days=7) == {}
    w.close()
