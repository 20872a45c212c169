"""require_ack: an event counts as delivered only on the back end's own ack, and goes
again under the same event_id when the ack does not come within ack_timeout_s."""

from agent import config
from simulators.backend import Backend
from tests.helpers import wait_for
from tests.mqtt_probe import Probe
from tests.sync.test_sync import Lane


def owed(lane):
    return lane.writer.conn.execute(
        "SELECT count(*) FROM deliveries WHERE backend = 'cbsa' AND delivered_ms IS NULL").fetchone()[0]


def test_delivered_only_on_ack_and_resent_until_acked(tmp_path, broker):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10.0, "rearm_s": 0.3},
        "backends": [{"name": "cbsa", "country": "CA", "host": broker.host, "port": broker.port, "share": ["tags"],
                      "require_ack": True, "ack_timeout_s": 1.5, "max_rate": 0}]})
    probe = Probe(broker, ["border/0901/C3/events"])
    lane = Lane(cfg)
    try:
        lane.truck("E2000000000000000000AA01")
        first = probe.wait("/events", 1)
        assert len(first) == 1 and owed(lane) == 1  # PUBACKed, not acked: still owed
        again = probe.wait("/events", 2, timeout=6)
        assert [e["event_id"] for e in again] == [first[0]["event_id"]] * 2  # the same event, re-sent
        assert owed(lane) == 1
        backend = Backend("cbsa-sim", "CA", broker.host, broker.port, ack=True, snapshot_on_connect=False).start()
        try:
            wait_for(lambda: owed(lane) == 0, 10, "the back end's acks marked")
            assert owed(lane) == 0
        finally:
            backend.stop()
    finally:
        lane.stop()
        probe.close()
