"""The back-end links against real mosquitto brokers, with the core in-process (no readers)."""

import time

import cbor2
import pytest

from agent.store.reader import StoreReader
from agent import config
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store.writer import StoreWriter
from tests.helpers import wait_for
from tests.mqtt_probe import Probe
from tests.sync.wiring import links_for

NOW_MS = int(time.time() * 1000)


def make_cfg(tmp_path, brokers, shares, **store):
    doc = {
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db"), **store},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10.0},
        "referral": {"random_rate": 0.0},
        "backends": [{"name": n, "country": c, "host": "127.0.0.1", "port": b.port, "share": s, "max_rate": 0}
                     for (n, c), b, s in zip((("cbsa", "CA"), ("cbp", "US")), brokers, shares)],
    }
    return config.parse(doc)


class Lane:
    def __init__(self, cfg):
        self.cfg = cfg
        self.writer = StoreWriter(cfg.store.path)
        self.core = LaneCore(cfg, self.writer)
        self.links = links_for(cfg, self.core)
        self.core.start()
        for link in self.links:
            link.start()

    def truck(self, *epcs, reads=3):
        """A truck's tags read `reads` times, 20 ms apart (just now); returns once its passage
        has closed into an event."""
        events = self.core.counters["events"]
        mono, wall_ms = time.monotonic() - reads * 0.02, int(time.time() * 1000) - reads * 20
        for i in range(reads):
            for epc in epcs:
                self.core.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=-50), mono + i * 0.02,
                                      wall_ms + i * 20)
        wait_for(lambda: self.core.counters["events"] > events, what="the passage closing into an event")

    def stop(self):
        for link in self.links:
            link.stop()
        self.core.stop()
        self.writer.close()


def saved_since(broker, since_ns: int) -> bool:
    """The broker wrote its persistence file (autosave_interval 1 s) after `since_ns`."""
    path = broker.dir / "mosquitto.db"
    return path.exists() and path.stat().st_mtime_ns > since_ns


@pytest.fixture
def two_brokers(broker_factory):
    return broker_factory("ca"), broker_factory("us")


def test_events_reach_both_with_share_and_kind(tmp_path, two_brokers):
    ca, us = two_brokers
    cfg = make_cfg(tmp_path, two_brokers, [list(config.SHARE_ITEMS[:-1]), ["tags"]])
    p_ca, p_us = Probe(ca, ["border/0901/C3/#"]), Probe(us, ["border/0901/C3/#"])
    lane = Lane(cfg)
    try:
        lane.truck("AA01", "BB01")
        lane.truck("AA02")
        ev_ca, ev_us = p_ca.wait("/events", 2), p_us.wait("/events", 2)
        assert [e["seq"] for e in ev_ca] == [1, 2] and [e["seq"] for e in ev_us] == [1, 2]
        assert [e["event_id"] for e in ev_ca] == [e["event_id"] for e in ev_us]
        assert {e["kind"] for e in ev_ca} == {"entry"} and {e["kind"] for e in ev_us} == {"exit"}
        assert "driver" in ev_ca[0] and "findings" in ev_ca[0]
        assert set(ev_us[0]) == {"v", "type", "event_id", "seq", "kind", "port", "lane", "entering", "leaving",
                                 "started_ms", "ended_ms", "digests", "prev_hash", "hash", "tags"}
        assert ev_ca[1]["prev_hash"] == ev_ca[0]["hash"]
        births = [p for t, p, retained in p_ca.messages if t.endswith("/status")]
        assert births[0]["state"] == "online"
        # Deliveries are marked from PUBACKs.
        wait_for(lambda: lane.writer.conn.execute(
            "SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0] == 0, 5, "PUBACKs marked")
        assert lane.writer.conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0] == 0
    finally:
        lane.stop()
        p_ca.close(), p_us.close()
    # A clean stop replaces the retained birth with a retained offline status.
    late = Probe(ca, ["border/0901/C3/status"])
    assert late.wait("/status", 1)[0]["state"] == "offline"
    late.close()


def test_one_broker_down_never_blocks_the_other(tmp_path, two_brokers):
    ca, us = two_brokers
    cfg = make_cfg(tmp_path, two_brokers, [["tags"], ["tags"]])
    p_us = Probe(us, ["border/0901/C3/events"])
    # Subscribed before the outage with a persistent session, which the broker saves to disk.
    p_ca = Probe(ca, ["border/0901/C3/events"], client_id="cbsa-backend", persistent=True).wait_subscribed()
    subscribed_ns = time.time_ns()
    wait_for(lambda: saved_since(ca, subscribed_ns), what="the broker's autosave after our SUBACK")
    lane = Lane(cfg)
    try:
        ca.kill()
        for i in range(3):
            lane.truck(f"CC0{i}")
        assert [e["seq"] for e in p_us.wait("/events", 3, timeout=5)] == [1, 2, 3]
        backlog = lane.writer.conn.execute(
            "SELECT count(*) FROM deliveries WHERE backend = 'cbsa' AND delivered_ms IS NULL").fetchone()[0]
        assert backlog == 3
        assert p_ca.on("/events") == []
        ca.start()
        got = p_ca.wait("/events", 3, timeout=40)
        assert sorted({e["seq"] for e in got}) == [1, 2, 3]
    finally:
        lane.stop()
        p_us.close(), p_ca.close()


def test_cache_downlink_applied_rejected_and_gap_requests_resync(tmp_path, two_brokers):
    ca, us = two_brokers
    cfg = make_cfg(tmp_path, two_brokers, [["alerts"], []], max_message_kb=1)
    lane = Lane(cfg)
    probe = Probe(ca, ["border/0901/C3/#"])
    try:
        # The link subscribes before it publishes its birth, so once the probe has the birth
        # both ends are subscribed.
        wait_for(lambda: probe.on("/status"), what="the link's birth")
        snapshot = {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot",
                    "records": [{"kind": "driver", "id": "D1", "card_epc": "AA01", "status": "valid"}]}
        probe.publish("border/0901/cache", snapshot)
        probe.publish("border/0901/cache", snapshot)  # again: a duplicate, no change
        probe.publish("border/0901/cache", b"\xff\x00 not cbor")
        probe.publish("border/0901/cache", cbor2.dumps({**snapshot, "seq": 2, "records": [
            {"kind": "driver", "id": f"D{i}", "card_epc": "AA01"} for i in range(100)]}))  # > 1 KiB
        probe.publish("border/0901/cache", {**snapshot, "source": "US"})  # not this broker's country
        probe.publish("border/0901/cache", {**snapshot, "seq": 5, "op": "upsert"})  # gap after 1
        requests = probe.wait("/requests", 1)
        assert requests[0] == {"v": 1, "type": "resync", "source": "CA", "have_seq": 1}
        alerts = probe.wait("/alerts", 3)
        assert sorted(a["detail"]["cause"] for a in alerts) == ["malformed", "oversized", "wrong_source"]
        c = lane.core.counters
        assert (c["cache_messages"], c["cache_duplicates"], c["downlink_rejected"], c["cache_gaps"]) == (1, 1, 3, 1)
        # The held message follows on once the snapshot answering the resync is applied.
        probe.publish("border/0901/cache", {**snapshot, "seq": 4, "records": []})
        wait_for(lambda: lane.core.counters["cache_messages"] >= 3, 5, "the held message applied")
        with StoreReader(lane.writer.path) as store:
            assert store.cache_seq("CA") == 5
            assert [s["records"] for s in store.cache_sources()] == [1]
    finally:
        lane.stop()
        probe.close()
