"""The cache protocol against the back-end simulator on a real broker: gap -> resync -> snapshot."""

from agent.store.reader import StoreReader
from simulators.backend import Backend
from tests.helpers import wait_for
from tests.sync.test_sync import Lane, make_cfg


def drivers(*ns):
    return [{"kind": "driver", "id": f"D{n}", "card_epc": f"E2{n:022X}", "status": "valid"} for n in ns]


def test_a_gap_is_answered_by_a_snapshot_and_reapplying_changes_nothing(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    cfg = make_cfg(tmp_path, (ca, us), [["alerts"], []])
    lane = Lane(cfg)
    backend = Backend("cbsa", "CA", ca.host, ca.port, records=drivers(1, 2), snapshot_on_connect=False).start()
    try:
        # The lane subscribes before it publishes its birth: once the back end has the birth,
        # the lane hears the back end's cache messages (and start() waited for the back end's SUBACK).
        assert wait_for(lambda: backend.last_status("C3") is not None)
        backend.publish_snapshot()  # seq 1
        backend.publish_cache("upsert", drivers(3))  # seq 2
        assert wait_for(lambda: lane.core.counters["cache_messages"] == 2)
        backend._cache_seq += 1  # seq 3 is lost on the way: published by nobody, seen by nobody
        backend.publish_cache("upsert", drivers(4))  # seq 4: a gap
        assert wait_for(lambda: backend.requests != [])
        assert backend.requests[0] == {"v": 1, "type": "resync", "source": "CA", "have_seq": 2}
        # The simulator answered with a snapshot of all it holds (seq 5): D1..D4.
        assert wait_for(lambda: StoreReader(lane.writer.path).cache_seq("CA") == 5)
        live = lambda: sorted((r["id"], r.get("name")) for r in StoreReader(lane.writer.path).cache_records())  # noqa: E731
        assert [i for i, _ in live()] == ["D1", "D2", "D3", "D4"]
        before = live()
        backend._cache_seq -= 1  # the same snapshot (seq 5) delivered again
        backend.publish_snapshot()
        assert wait_for(lambda: lane.core.counters["cache_duplicates"] == 1)
        assert live() == before
    finally:
        backend.stop()
        lane.stop()
