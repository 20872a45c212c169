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


def submit(lane, tags, reads_each, start_ms):
    """`reads_each` reads of each of `tags` tags, tag after tag, one millisecond apart. Repeated
    reads of a journaled tag are aggregated into its row (DESIGN 3.1), so it takes many tags,
    not many reads, to need new pages of a full database."""
    for i in range(tags * reads_each):
        epc = f"E2000000000000000000{i // reads_each:04X}"
        lane.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=-50), time.monotonic(), start_ms + i)


def test_reads_are_held_while_full_and_written_after(tmp_path):
    writer, lane = make(tmp_path)
    try:
        fill_up(writer)
        submit(lane, 300, 10, 1_000)
        assert wait_for(lambda: lane.store_error is not None)
        assert "full" in lane.store_error
        assert writer.conn.execute("SELECT count(*) FROM reads").fetchone()[0] == 0
        writer.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert wait_for(lambda: lane.store_error is None and lane.counters["events"] == 1)
        # Every read is kept: one row per tag, its count the reads aggregated into it.
        assert writer.conn.execute("SELECT count(*), sum(count) FROM reads").fetchone() == (300, 3000)
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
        submit(lane, 150, 10, 10_000)
        assert wait_for(lambda: lane.counters["reads_lost"] == 500)
        writer.conn.execute("PRAGMA max_page_count = 1073741823")
        assert wait_for(lambda: lane.store_error is None and lane.counters["events"] == 1)
        # The newest were kept: the last 100 tags' 1,000 reads (a row's wall_ms is its first read).
        kept = writer.conn.execute("SELECT min(wall_ms), max(wall_ms), count(*), sum(count) FROM reads").fetchone()
        assert kept == (10_500, 11_490, 100, 1000)
        [(body,)] = writer.conn.execute("SELECT body FROM alerts WHERE kind = 'gap'").fetchall()
        assert cbor2.loads(body)["detail"] == {"first_ms": 10_000, "last_ms": 10_499, "count": 500,
                                               "reason": "disk_full"}
        # ...and it is owed to the back end like any alert.
        assert writer.conn.execute("SELECT count(*) FROM deliveries WHERE item_type = 'alert'").fetchone()[0] == 1
    finally:
        lane.stop()
        writer.close()
