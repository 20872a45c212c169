"""Wall-clock jumps are seen, and never reorder seq nor reopen a passage."""

import time

from agent import config
from agent.clock import ClockWatch
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store import eventbody
from agent.store.writer import StoreWriter


def test_clock_watch_sees_steps_both_ways_and_a_reset_to_1970():
    watch = ClockWatch()
    assert watch.observe(wall=1_800_000_000.0, mono=100.0) is None
    assert watch.observe(wall=1_800_000_001.0, mono=101.0) is None  # in step
    assert watch.observe(wall=1_800_000_001.5, mono=102.9) is None  # 1.4 s of drift: below the 2 s bar
    assert round(watch.observe(wall=1_800_000_010.0, mono=104.0), 3) == 7.4
    assert watch.observe(wall=5.0, mono=105.0) < -1_799_000_000  # RTC reset
    assert watch.jumps == 2 and not ClockWatch.sane(5.0) and ClockWatch.sane(1_800_000_000.0)


def test_a_wall_clock_reset_mid_passage_keeps_one_passage_and_seq_order(tmp_path):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10, "rearm_s": 0.3},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]})
    writer = StoreWriter(cfg.store.path)
    lane = LaneCore(cfg, writer)
    lane.start()
    try:
        walls = [1_800_000_000_000 + i * 100 for i in range(5)] + [1_000 + i * 100 for i in range(5)]  # RTC reset
        for wall in walls:
            lane.submit_read("booth", TagReport("thingmagic", "E2000000000000000000AA01", 1, rssi=-50),
                             time.monotonic(), wall)
            time.sleep(0.02)
        time.sleep(0.8)
        for wall in (2_000, 2_100, 2_200):  # the next truck, still on the reset clock
            lane.submit_read("booth", TagReport("thingmagic", "E2000000000000000000AA02", 1, rssi=-50),
                             time.monotonic(), wall)
        deadline = time.monotonic() + 5
        while lane.counters["events"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        lane.stop()
    rows = writer.conn.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == [1, 2]  # one passage for the first truck, not two
    first = eventbody.load(rows[0][1])
    assert first["tags"][0]["count"] == 10
    writer.close()
