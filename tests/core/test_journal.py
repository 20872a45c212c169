"""Repeated reads of a journaled tag are aggregated into its row (DESIGN part 3, promise 1).

A truck's tags are read dozens of times a second; the journal keeps one row per tag
(reader, antenna) while the row is unconsumed, and its count and strongest RSSI are
written with the passage. The event still has every read, counted.
"""

import sqlite3
import time

from agent import config
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store import eventbody
from agent.store.writer import StoreWriter
from tests.helpers import wait_for

CARD, TRUCK = "E2000000000000000000D001", "E2000000000000000000C001"


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_passage_costs_one_row_per_tag_and_the_event_counts_every_read(tmp_path):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "share": ["tags"]}]})
    writer = StoreWriter(cfg.store.path)
    core = LaneCore(cfg, writer)
    core.start()
    try:
        now = int(time.time() * 1000)
        for i in range(50):
            for epc, rssi in ((CARD, -60 + i % 7), (TRUCK, -50)):
                core.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=rssi), time.monotonic(), now + i)
        [(body,)] = wait_for(lambda: rows(cfg.store.path, "SELECT body FROM events"), what="the event")
        event = eventbody.load(body)
        assert {t["epc"]: t["count"] for t in event["tags"]} == {CARD: 50, TRUCK: 50}
        journal = rows(cfg.store.path, "SELECT epc, count, rssi, consumed_by FROM reads ORDER BY epc")
        assert journal == [(TRUCK, 50, -50.0, event["event_id"]), (CARD, 50, -54.0, event["event_id"])]
        assert core.counters["reads"] == 100 and core.counters["reads_aggregated"] == 98
    finally:
        core.stop()
        writer.close()
