"""Disk full: reads are held in memory within a bound, nothing is evicted silently.

The store is made full for real: SQLite's `max_page_count` makes every write that needs
a new page fail with SQLITE_FULL ("database or disk is full"), exactly the error a
full file system gives, without needing a small mount in CI.
"""

import time

import cbor2

from agent import config
from agent.core import outage
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store.writer import StoreWriter
from tests.helpers import wait_for


def make(tmp_path):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.2, "max_passage_s": 5, "rearm_s": 0.2},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "share": ["tags", "alerts"]}]})
    writer = StoreWriter(cfg.store.path)
    lane = LaneCore(cfg, writer)
    lane.start()
    return writer, lane


def fill_up(writer):
    pages = writer.conn.execute("PRAGMA page_count").fetchone()[0]
    writer.conn.execute(f"PRAGMA max_page_count = {pages}")


def submit(lane, epc, n, start_ms):
    for i in range(n):
        lane.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=-50), time.monotonic(), start_ms + i)


def test_reads_are_held_while_full_and_written_after(tmp_path):
    writer, lane = make(tmp_path)
    try:
        fill_up(writer)
        submit(lane, "E2000000000000000000AA01", 3000, 1_000)
        assert wait_for(lambda: lane.store_error is not None)
        assert "full" in lane.store_error
        assert writer.conn.execute("SELECT count(*) FROM reads").fetchone()[0] == 0
        writer.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert wait_for(lambda: lane.store_error is None and lane.counters["events"] == 1)
        assert writer.conn.execute("SELECT count(*) FROM reads").fetchone()[0] == 3000
        assert lane.counters["reads_lost"] == 0
        assert writer.conn.execute("SELECT count(*) FROM alerts WHERE kind = 'gap'").fetchone()[0] == 0
    finally:
        lane.stop()
        writer.close()


def test_beyond_the_bound_the_oldest_become_a_gap_alert(tmp_path, monkeypatch):
    monkeypatch.setattr(outage, "MAX_UNSAVED_READS", 1000)  # the real bound is 100,000 reads
    writer, lane = make(tmp_path)
    try:
        fill_up(writer)
        submit(lane, "E2000000000000000000AA02", 1500, 10_000)
        assert wait_for(lambda: lane.counters["reads_lost"] == 500)
        writer.conn.execute("PRAGMA max_page_count = 1073741823")
        assert wait_for(lambda: lane.store_error is None and lane.counters["events"] == 1)
        kept = writer.conn.execute("SELECT min(wall_ms), max(wall_ms), count(*) FROM reads").fetchone()
        assert kept == (10_500, 11_499, 1000)  # the newest were kept
        [(body,)] = writer.conn.execute("SELECT body FROM alerts WHERE kind = 'gap'").fetchall()
        assert cbor2.loads(body)["detail"] == {"first_ms": 10_000, "last_ms": 10_499, "count": 500,
                                               "reason": "disk_full"}
        # ...and it is owed to the back end like any alert.
        assert writer.conn.execute("SELECT count(*) FROM deliveries WHERE item_type = 'alert'").fetchone()[0] == 1
    finally:
        lane.stop()
        writer.close()
