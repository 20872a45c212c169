"""The metrics' parts without a daemon: the [metrics] config key, the database totals that
stay monotonic across a retention purge, the tally of new events and deliveries, and a port
that cannot be bound (an alarm, not a dead lane)."""

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.app.metrics import MetricsServer
from agent.app.metrics_tally import DeliveryLatency, EventTally, code_label
from agent.config import parse
from agent.errors import ConfigError
from agent.store.reader import StoreReader
from agent.store.retention import DAY_MS
from agent.store.writer import StoreWriter

NOW = 1_800_000_000_000
LANE = {"lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]}


def event(seq, tier=None, findings=(), reasons=()):
    referral = {"refer": bool(reasons), "reasons": list(reasons), "random": False}
    if tier:
        referral["tier"] = tier
    return {"seq": seq, "event_id": f"e{seq}", "started_ms": NOW, "ended_ms": NOW + 2500, "hash": f"h{seq}",
            "findings": [{"code": c, "detail": {}} for c in findings], "referral": referral}


def test_metrics_listen_is_off_by_default_and_validated():
    assert parse(dict(LANE)).metrics.address is None
    assert parse({**LANE, "metrics": {"listen": "127.0.0.1:9464"}}).metrics.address == ("127.0.0.1", 9464)
    assert parse({**LANE, "metrics": {"listen": "[::1]:9464"}}).metrics.address == ("::1", 9464)
    with pytest.raises(ConfigError) as e:
        parse({**LANE, "metrics": {"listen": "9464", "port": 1}, "store": {"max_queue_mb": -1}}, "agent.toml")
    text = str(e.value)
    # Every problem at once, one line each, naming the key.
    assert "metrics.listen: '9464' is not \"host:port\"" in text and "metrics.port: unknown key" in text
    assert "store.max_queue_mb" in text
    for bad in ("host:0", "host:99999", ":9464", "::1:9464", "a b:1", 9464):
        with pytest.raises(ConfigError, match="metrics.listen"):
            parse({**LANE, "metrics": {"listen": bad}})


def test_deliveries_total_never_decreases_across_a_purge(tmp_path):
    w = StoreWriter(str(tmp_path / "a.db"))
    old = NOW - 8 * DAY_MS
    with w.transaction():
        for seq in (1, 2, 3, 4):
            w.add_event(event(seq), {"cbsa": b"a", "cbp": b"b"}, old if seq < 4 else NOW)
        w.mark_delivered("cbsa", [("event", s) for s in (1, 2, 3, 4)], old)
        w.mark_delivered("cbp", [("event", 1), ("event", 2)], old)  # 3 and 4 still owed to cbp
    with StoreReader(w.path) as r:
        before = r.tallies.events_delivered(["cbsa", "cbp", "new"])
    assert before == {"cbsa": 4, "cbp": 2, "new": 0}
    with w.transaction():
        assert w.purge_step(NOW, 7) == {"events": 2}  # 1 and 2: everyone has them
    with StoreReader(w.path) as r:
        assert r.tallies.events_delivered(["cbsa", "cbp", "new"]) == {"cbsa": 4, "cbp": 2, "new": 2}
        assert r.chain_head()[0] == 4
    w.close()


def test_the_tally_counts_new_events_once_by_tier_finding_and_reason(tmp_path):
    w = StoreWriter(str(tmp_path / "a.db"))
    with w.transaction():
        w.add_event(event(1, findings=["no_trip"], reasons=["no_trip"]), {"cbsa": b"a"}, NOW)
    with StoreReader(w.path) as r:
        tally, latency = EventTally(after_seq=r.last_event_seq()), DeliveryLatency(["cbsa"])
        latency.prime(r)
    with w.transaction():
        w.mark_delivered("cbsa", [("event", 1)], NOW + 100)  # after start-up: observed
        w.add_event(event(2, tier="trusted"), {"cbsa": b"a"}, NOW)
        w.add_event(event(3, findings=["lookout_hit", "E200001234 an EPC"], reasons=["lookout_hit"]),
                     {"cbsa": b"a"}, NOW)
        w.mark_delivered("cbsa", [("event", 3)], NOW + 1500)
    for _ in range(2):  # a second look adds nothing
        with StoreReader(w.path) as r:
            tally.update(r)
            latency.update(r)
    assert tally.tiers == {"standard": 1, "trusted": 1}
    assert tally.findings == {"lookout_hit": 1, "other": 1}
    assert tally.referrals == {"lookout_hit": 1} and tally.referred == {"standard": 1, "trusted": 0}
    assert sum(tally.time_in_field.counts) == 2 and tally.time_in_field.sum == 5.0
    b = latency.buckets["cbsa"]
    assert sum(b.counts) == 2 and b.sum == pytest.approx(1.6)
    with w.transaction():
        w.mark_delivered("cbsa", [("event", 2)], NOW + 200)  # out of order (require_ack): still seen once
    with StoreReader(w.path) as r:
        latency.update(r)
        latency.update(r)
    assert sum(b.counts) == 3 and dict(b.cumulative())["0.25"] == 2
    w.close()


def test_label_values_from_data_become_other():
    assert code_label("lookout_hit") == "lookout_hit"
    for bad in ("E2000000000000000000D001", "DRV-1", "Alex Martin", "", None, 7, "x" * 41):
        assert code_label(bad) == "other"


class FakeFigures:
    def health(self):
        return {"readers": [{"name": "booth", "state": "up", "reports": 5, "decode_failures": {"bad_crc": 2}}],
                "backends": [{"name": "cbsa", "broker": "127.0.0.1:1883", "connected": True}],
                "counters": {"reads": 5}, "alarms": [{"alarm": "reader_down:booth"}], "backlog_bytes": 0}


class FakeAlarms:
    def __init__(self):
        self.raised = {}

    def raise_(self, key, detail):
        self.raised[key] = detail


def test_a_port_that_cannot_be_bound_is_an_alarm_and_a_free_one_serves(tmp_path):
    import urllib.request

    StoreWriter(str(tmp_path / "a.db")).close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    doc = {**LANE, "store": {"path": str(tmp_path / "a.db")}, "metrics": {"listen": f"127.0.0.1:{port}"}}
    alarms = FakeAlarms()
    server = MetricsServer(parse(doc), FakeFigures(), alarms)
    server.start()
    assert "metrics_unavailable" in alarms.raised and str(port) in alarms.raised["metrics_unavailable"]
    server.stop()
    busy.close()
    server = MetricsServer(parse(doc), FakeFigures(), alarms := FakeAlarms())
    server.start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.stop()
    assert not alarms.raised
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("laneagent_reader_decode_failures_total", (("code", "bad_crc"), ("reader", "booth")))] == 2
    assert samples[("laneagent_alarms_active", (("alarm", "reader_down"),))] == 1
    assert samples[("laneagent_store_readable", ())] == 1
