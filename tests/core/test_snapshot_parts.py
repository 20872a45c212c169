"""Multi-part snapshots through the running core (DESIGN 2.6, issue 11): staged, swapped in one step.

The core runs for real on a real SQLite file; the messages are the ones a link hands up
(`CacheMessage`), and resync requests are recorded instead of published (the broker
side is covered in tests/sync and tests/system). Lookups go through a read connection
of the test's own, as `laneagent lookup` and the links do.
"""

import sqlite3
import time

import pytest

from agent import config
from agent.core import LaneCore
from agent.handoff import CacheMessage
from agent.readers.report import TagReport
from agent.store import eventbody
from agent.store.cachedb import cache_path
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter
from tests.helpers import wait_for

H = 3600_000


def make_cfg(tmp_path, timeout_s=900):
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.2, "max_passage_s": 5, "rearm_s": 0.2},
        "referral": {"random_rate": 0.0},
        "cache": {"snapshot_timeout_s": timeout_s},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "share": ["tags", "trip", "findings"]}]})


def fleet(tag, trucks, now_ms):
    """A consistent little world: one driver, truck and trip per index, named by `tag`."""
    out = []
    for i in trucks:
        out += [{"kind": "driver", "id": f"D{i}", "name": f"Driver {i}", "card_epc": f"A{i:04X}", "status": "valid"},
                {"kind": "conveyance", "id": f"T{i}", "transponder_epc": f"B{i:04X}", "carrier": "ACME",
                 "status": "valid"},
                {"kind": "trip", "id": f"{tag}-TR{i}", "carrier": "ACME", "eta_ms": now_ms + H, "conveyance": f"T{i}",
                 "drivers": [f"D{i}"], "equipment": [], "shipments": []}]
    return out


def snap(seq, records, part=None, parts=None):
    msg = {"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": "snapshot", "records": records}
    if parts is not None:
        msg.update(part=part, parts=parts)
    return CacheMessage("cbsa", msg)


def in_parts(first_seq, records, n):
    size = -(-len(records) // n)
    return [snap(first_seq + i, records[i * size:(i + 1) * size], i + 1, n) for i in range(n)]


class Lane:
    def __init__(self, tmp_path, **cfg):
        self.cfg = make_cfg(tmp_path, **cfg)
        self.path = self.cfg.store.path
        self.resyncs: list[tuple[str, str, int]] = []
        self.start()

    def start(self):
        self.writer = StoreWriter(self.path)
        self.core = LaneCore(self.cfg, self.writer)
        self.core.resync["cbsa"] = lambda source, have: self.resyncs.append(("cbsa", source, have))
        self.core.start()

    def stop(self):
        self.core.stop()
        self.writer.close()

    def send(self, *messages):
        for m in messages:
            self.core.submit(m)

    def view(self):
        return StoreReader(self.path).cache

    def generations(self):
        """Generations in the cache file (live, staged or not yet dropped), committed."""
        return sqlite3.connect(cache_path(self.path)).execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'records_%'").fetchone()[0]

    def trip_of(self, epc):
        return [r["id"] for s, k, r in self.view().tagged(epc)]

    def trips(self):
        return sorted(r["id"] for r in self.view().trips_of_conveyance("CA", "T1"))

    def live_seq(self):
        return {s["source"]: s["seq"] for s in self.view().sources()}.get("CA", 0)

    def settled(self):
        figures = self.core.figures()
        return figures.get("cache", {}).get("queued", 1) == 0

    def truck(self, i):
        now_ms = int(time.time() * 1000)
        for _ in range(3):
            for epc in (f"A{i:04X}", f"B{i:04X}"):
                self.core.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=-50), time.monotonic(), now_ms)
        n = self.events()
        wait_for(lambda: self.events() > n, what="the passage's event committed")
        body = sqlite3.connect(self.path).execute("SELECT body FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0]
        return eventbody.load(body)

    def events(self):
        return sqlite3.connect(self.path).execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.fixture
def lane(tmp_path):
    lane = Lane(tmp_path)
    yield lane
    lane.stop()


def now_ms():
    return int(time.time() * 1000)


def test_a_truck_during_the_transfer_is_linked_against_the_old_cache(lane):
    lane.send(snap(1, fleet("old", range(1, 4), now_ms())))
    wait_for(lambda: lane.live_seq() == 1, what="the first snapshot")
    new = in_parts(2, fleet("new", range(1, 3), now_ms()), 3)  # truck 3 is gone from the new one
    lane.send(*new[:2])
    wait_for(lambda: lane.core.figures()["cache"]["staging"].get("CA", {}).get("parts_received") == 2,
             what="parts 1-2 staged")
    event = lane.truck(1)
    assert event["trip"]["id"] == "old-TR1" and event["findings"] == []
    assert lane.trips() == ["old-TR1"] and lane.live_seq() == 1
    lane.send(new[2])
    wait_for(lambda: lane.live_seq() == 4, what="the swap")
    assert lane.trips() == ["new-TR1"]
    assert lane.trip_of("B0003") == []  # dropped in the new snapshot
    assert lane.truck(2)["trip"]["id"] == "new-TR2"
    swap = lane.core.figures()["cache"]["last_swap"]["CA"]
    assert swap["parts"] == 3 and swap["records"] == 6 and swap["seq"] == 4
    assert lane.resyncs == []
    wait_for(lambda: lane.generations() == 1, what="the old generation dropped")


def test_a_gap_inside_the_parts_keeps_the_old_cache_and_asks_for_a_resync(lane):
    lane.send(snap(1, fleet("old", range(1, 3), now_ms())))
    wait_for(lambda: lane.live_seq() == 1)
    new = in_parts(2, fleet("new", range(1, 3), now_ms()), 3)
    lane.send(new[0], new[2])  # part 2 lost
    wait_for(lambda: lane.resyncs, what="the resync request")
    assert lane.resyncs == [("cbsa", "CA", 1)]
    assert lane.trips() == ["old-TR1"] and lane.live_seq() == 1
    wait_for(lambda: lane.core.figures()["cache"]["dropped"].get("CA"), what="the dropped snapshot's figures")
    assert lane.core.figures()["cache"]["dropped"]["CA"]["parts_received"] == 1
    assert lane.core.figures()["cache"]["staging"] == {}


def test_another_message_between_the_parts_drops_them(lane):
    lane.send(snap(1, fleet("old", range(1, 2), now_ms())))
    wait_for(lambda: lane.live_seq() == 1)
    new = in_parts(2, fleet("new", range(1, 2), now_ms()), 2)
    upsert = CacheMessage("cbsa", {"v": 1, "type": "cache", "source": "CA", "seq": 3, "op": "upsert",
                                   "records": fleet("up", [7], now_ms())})
    lane.send(new[0], upsert)
    wait_for(lambda: lane.resyncs, what="the resync request")
    assert lane.resyncs[0] == ("cbsa", "CA", 1)
    wait_for(lambda: lane.core.figures()["cache"]["dropped"].get("CA"), what="the dropped snapshot's figures")
    assert "between the parts" in lane.core.figures()["cache"]["dropped"]["CA"]["cause"]
    assert lane.trips() == ["old-TR1"]


def test_a_new_part_one_restarts_the_transfer_without_a_resync(lane):
    lane.send(snap(1, fleet("old", range(1, 2), now_ms())))
    wait_for(lambda: lane.live_seq() == 1)
    first = in_parts(2, fleet("first", range(1, 2), now_ms()), 2)
    again = in_parts(3, fleet("again", range(1, 2), now_ms()), 2)
    lane.send(first[0], *again)
    wait_for(lambda: lane.live_seq() == 4, what="the restarted snapshot swapped in")
    assert lane.trips() == ["again-TR1"] and lane.resyncs == []


def test_parts_that_stop_coming_are_dropped_after_the_timeout(tmp_path):
    lane = Lane(tmp_path, timeout_s=0.5)
    try:
        lane.send(snap(1, fleet("old", range(1, 2), now_ms())))
        wait_for(lambda: lane.live_seq() == 1)
        lane.send(in_parts(2, fleet("new", range(1, 2), now_ms()), 3)[0])
        wait_for(lambda: lane.resyncs, what="the resync after the timeout")
        assert lane.resyncs == [("cbsa", "CA", 1)]
        wait_for(lambda: lane.core.figures()["cache"]["dropped"].get("CA"), what="the dropped snapshot's figures")
        assert lane.core.figures()["cache"]["dropped"]["CA"]["cause"] == "timeout"
        assert lane.trips() == ["old-TR1"]
    finally:
        lane.stop()


def test_a_restart_with_a_snapshot_half_staged_drops_it_and_asks_again(lane):
    lane.send(snap(1, fleet("old", range(1, 2), now_ms())))
    wait_for(lambda: lane.live_seq() == 1)
    lane.send(*in_parts(2, fleet("new", range(1, 2), now_ms()), 3)[:2])
    wait_for(lambda: lane.core.figures()["cache"]["staging"].get("CA", {}).get("parts_received") == 2)
    lane.stop()
    lane.start()
    wait_for(lambda: lane.resyncs, what="the resync after the restart")
    assert lane.resyncs == [("cbsa", "CA", 1)]
    assert lane.trips() == ["old-TR1"]
    wait_for(lambda: lane.generations() == 1, what="the staged generation dropped")


def test_the_same_parts_twice_change_nothing(lane):
    parts = in_parts(1, fleet("new", range(1, 4), now_ms()), 3)
    lane.send(*parts)
    wait_for(lambda: lane.live_seq() == 3)
    lane.send(*parts)
    wait_for(lambda: lane.core.counters["cache_duplicates"] == 3, what="three duplicates counted")
    assert lane.trips() == ["new-TR1"] and lane.live_seq() == 3
    assert lane.core.counters["cache_swaps"] == 1


def test_a_one_part_snapshot_works_as_before(lane):
    lane.send(snap(1, fleet("one", range(1, 3), now_ms())))
    wait_for(lambda: lane.live_seq() == 1)
    assert lane.trips() == ["one-TR1"]
    lane.send(snap(2, fleet("two", range(1, 2), now_ms())))
    wait_for(lambda: lane.live_seq() == 2)
    assert lane.trips() == ["two-TR1"] and lane.trip_of("A0002") == []


def test_a_replayed_signed_part_is_refused_and_changes_nothing(lane):
    parts = [CacheMessage(m.backend, m.msg, signed=True) for m in in_parts(1, fleet("new", range(1, 4), now_ms()), 3)]
    lane.send(*parts)
    wait_for(lambda: lane.live_seq() == 3)
    lane.send(parts[1])  # someone replays a signed part
    wait_for(lambda: lane.core.counters["downlink_rejected_replay"] == 1, what="the replay refused")
    assert lane.trips() == ["new-TR1"] and lane.live_seq() == 3
    assert lane.core.counters["cache_duplicates"] == 0 and lane.core.counters["cache_swaps"] == 1


def test_the_gil_switch_interval_is_short_only_while_a_snapshot_loads(tmp_path):
    """While parts are staged the core bounds its GIL waits (loop.GIL_SWITCH_S: the link
    validating the next part held the core's commits up to 5 ms per SQLite call); once the
    snapshot is swapped in, and after a stop, the interval is the process's own again."""
    import sys

    from agent.core.loop import GIL_SWITCH_S

    own = sys.getswitchinterval()
    assert own > GIL_SWITCH_S
    lane = Lane(tmp_path)
    try:
        lane.send(snap(1, fleet("old", range(1, 3), now_ms())))
        wait_for(lambda: lane.live_seq() == 1, what="the first snapshot")
        new = in_parts(2, fleet("new", range(1, 3), now_ms()), 2)
        lane.send(new[0])
        wait_for(lambda: lane.core.figures()["cache"]["staging"].get("CA", {}).get("parts_received") == 1,
                 what="part 1 staged")
        reads = lane.core.figures()["counters"].get("reads", 0)
        lane.core.submit_read("booth", TagReport("thingmagic", "C0FFED", 1, rssi=-99), time.monotonic(), now_ms())
        wait_for(lambda: lane.core.figures()["counters"].get("reads", 0) > reads, what="a loop turn between the parts")
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S)  # no cache work queued, part 2 still to come
        lane.send(new[1])
        wait_for(lambda: lane.live_seq() == 3, what="the swap")
        lane.core.submit_read("booth", TagReport("thingmagic", "C0FFEE", 1, rssi=-99), time.monotonic(), now_ms())
        wait_for(lambda: sys.getswitchinterval() == pytest.approx(own), what="the process's own interval back")
        lane.send(in_parts(4, fleet("next", range(1, 3), now_ms()), 2)[0])
        wait_for(lambda: sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S), what="short again")
    finally:
        lane.stop()
    assert sys.getswitchinterval() == pytest.approx(own)  # a stop mid-snapshot leaves nothing behind
