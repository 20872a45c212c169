"""A back end with several broker nodes (`hosts`), against real brokers.

Several independent mosquitto processes stand in for the nodes of a cluster here: they
share no sessions, so these tests prove the link's own logic (first node first,
round-robin on loss or failure, within 5 s, stays put when a node returns, the back-off,
`node`/`unreachable` in the figures, doctor per node), and every event is looked for on
every node. Sessions shared across nodes are proved against a real RabbitMQ cluster in
tests/system/test_cluster_rabbitmq.py. A scripted broker (fake_broker.py) plays what no
real broker does on demand: a refused SUBACK, a close on an MQTT 5 CONNECT.
"""

import sqlite3
import time

import pytest

from agent import config
from agent.doctor import checks_brokers
from agent.doctor.verdict import FAIL, PASS
from agent.store.writer import StoreWriter
from agent.sync.link import BackendLink
from simulators.mosquitto import free_port
from tests.helpers import wait_for
from tests.mqtt_probe import Probe
from tests.sync.fake_broker import FakeBroker
from tests.sync.test_sync import Lane

FAILOVER_S = 5.0  # DESIGN 2.2: on another node within 5 s when one is up


def cluster_cfg(tmp_path, nodes: list[str], **backend):
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10.0},
        "referral": {"random_rate": 0.0},
        "backends": [{"name": "cbsa", "country": "CA", "hosts": nodes, "max_rate": 0, **backend}],
    })


def bare_link(cfg) -> BackendLink:
    """A link alone (no core): its outbox is an empty database."""
    StoreWriter(cfg.store.path).close()
    return BackendLink(cfg, cfg.backends[0], lambda msg: None)


def addr(b) -> str:
    return f"{b.host}:{b.port}"


def events_everywhere(probes) -> dict[str, int]:
    """event_id -> seq over every node's probe."""
    return {e["event_id"]: e["seq"] for p in probes for e in p.on("/events")}


def test_failover_within_5s_stays_put_when_the_node_returns(tmp_path, broker_factory, monkeypatch):
    monkeypatch.setattr("agent.sync.connection.RECHECK_S", 0.5)
    nodes = [broker_factory(n) for n in ("n1", "n2", "n3")]
    probes = [Probe(b, ["border/0901/C3/#"]).wait_subscribed() for b in nodes]
    lane = Lane(cluster_cfg(tmp_path, [addr(b) for b in nodes]))
    link = lane.links[0]
    try:
        wait_for(lambda: link.connected, what="the link connecting")
        assert link.snapshot()["node"] == addr(nodes[0])  # the first is tried first
        assert link.snapshot()["broker"] == ",".join(addr(b) for b in nodes)
        lane.truck("AA01")
        probes[0].wait("/events", 1)

        nodes[0].kill()
        lost = time.monotonic()
        wait_for(lambda: link.connected and link.snapshot()["node"] != addr(nodes[0]), timeout=FAILOVER_S,
                 what="the link on another node")
        took = time.monotonic() - lost
        on = link.snapshot()
        assert on["node"] == addr(nodes[1]) and addr(nodes[0]) in on["unreachable"], on
        lane.truck("AA02")
        wait_for(lambda: len(events_everywhere(probes)) == 2, what="the second event on a live node")

        nodes[0].start()  # the lost node returns: the link stays where it is
        lane.truck("AA03")
        wait_for(lambda: len(events_everywhere(probes)) == 3, what="the third event")
        assert link.snapshot()["node"] == addr(nodes[1])
        assert sorted(events_everywhere(probes).values()) == [1, 2, 3]
        # status stops naming the node once it answers again, and the link still stays put
        wait_for(lambda: link.snapshot()["unreachable"] == [], what="the returned node no longer unreachable")
        assert link.snapshot()["node"] == addr(nodes[1])
        assert took < FAILOVER_S
    finally:
        lane.stop()
        for p in probes:
            p.client.loop_stop()


def test_a_dead_first_node_is_skipped_and_named(tmp_path, broker_factory):
    live = broker_factory("live")
    dead = f"127.0.0.1:{free_port()}"
    lane = Lane(cluster_cfg(tmp_path, [dead, addr(live)]))
    link = lane.links[0]
    try:
        start = time.monotonic()
        wait_for(lambda: link.connected, timeout=FAILOVER_S, what="the link on the live node")
        assert time.monotonic() - start < FAILOVER_S
        snap = link.snapshot()
        assert snap["node"] == addr(live) and snap["unreachable"] == [dead]
    finally:
        lane.stop()


def pending(lane):
    conn = sqlite3.connect(lane.cfg.store.path)
    try:
        return conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]
    finally:
        conn.close()


def test_all_nodes_down_then_back_backlog_drains(tmp_path, broker_factory):
    nodes = [broker_factory(n) for n in ("n1", "n2")]
    lane = Lane(cluster_cfg(tmp_path, [addr(b) for b in nodes]))
    link = lane.links[0]
    try:
        wait_for(lambda: link.connected, what="the link connecting")
        for b in nodes:
            b.kill()
        for i in range(5):
            lane.truck(f"AA{i:02d}")
        wait_for(lambda: not link.connected and len(link.snapshot()["unreachable"]) == 2,
                 what="both nodes seen unreachable")
        nodes[1].start()
        # The backlog drains into the node that came back: every event PUBACKed by it. (A
        # subscriber started now would race the lane, which may drain before it subscribes.)
        # The back-off may have grown towards its 60 s cap while both nodes were down.
        wait_for(lambda: link.snapshot()["node"] == addr(nodes[1]), timeout=75, what="the link on the node back")
        wait_for(lambda: pending(lane) == 0, timeout=30, what="the backlog drained")
        assert lane.writer.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5
    finally:
        lane.stop()


def test_refused_subscription_is_an_error_and_backs_off(tmp_path):
    fake = FakeBroker(refuse_subscribe=True)
    cfg = cluster_cfg(tmp_path, [f"{fake.host}:{fake.port}"], mqtt_version="3.1.1")
    link = bare_link(cfg)
    link.start()
    try:
        wait_for(lambda: "refused the subscription" in (link.last_error or ""), what="the refusal named")
        assert "border/0901/C3/acks" in link.last_error or "border/0901/cache" in link.last_error
        first = fake.connects
        wait_for(lambda: fake.connects >= first + 2, timeout=10, what="reconnects")
        t0, n0 = time.monotonic(), fake.connects
        wait_for(lambda: time.monotonic() - t0 > 4, timeout=6, what="a 4 s window")
        # back-off grows (it is reset only by a connection that proved stable); resetting it at
        # TCP connect made RabbitMQ see ~4 connections a second (issue 12)
        assert fake.connects - n0 <= 6, fake.connects - n0
    finally:
        link.stop()
        fake.close()


def test_close_on_mqtt5_connect_names_the_version(tmp_path):
    fake = FakeBroker(close_on_v5=True)
    cfg = cluster_cfg(tmp_path, [f"{fake.host}:{fake.port}"])
    link = bare_link(cfg)
    link.start()
    try:
        wait_for(lambda: "MQTT 5" in (link.last_error or ""), what="the MQTT version named")
        assert 'mqtt_version = "3.1.1"' in link.last_error and not link.connected
        verdicts = checks_brokers.check(cfg, 0, 2.0, [])
        assert [(v.status, v.cause) for v in verdicts] == [(FAIL, "mqtt_version")], verdicts
        assert "backends[0].mqtt_version" in verdicts[0].fix
    finally:
        link.stop()
        fake.close()


def test_doctor_checks_every_node_and_names_the_one_that_fails(tmp_path, broker_factory):
    live = broker_factory("live")
    dead = f"127.0.0.1:{free_port()}"
    cfg = cluster_cfg(tmp_path, [addr(live), dead])
    verdicts = checks_brokers.check(cfg, 0, 2.0, [])
    assert [v.status for v in verdicts] == [PASS, FAIL], verdicts
    assert verdicts[0].subject == f"back end cbsa node {addr(live)}"
    assert verdicts[1].subject == f"back end cbsa node {dead}" and verdicts[1].cause == "connection_refused"
    assert "backends[0].hosts[1]" in verdicts[1].fix


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_same_client_id_and_session_on_every_node(tmp_path, broker_factory, version):
    nodes = [broker_factory(n) for n in ("n1", "n2")]
    cfg = cluster_cfg(tmp_path, [addr(b) for b in nodes], mqtt_version=version)
    link = bare_link(cfg)
    client = link.connection.client
    link.start()
    try:
        wait_for(lambda: link.connected, what="connected")
        nodes[0].kill()
        wait_for(lambda: link.connected and link.snapshot()["node"] == addr(nodes[1]), timeout=FAILOVER_S,
                 what="on the second node")
        assert client._client_id == b"laneagent-0901-C3-cbsa"
        assert client._clean_session is False if version == "3.1.1" else client._clean_start is False
    finally:
        link.stop()


def test_a_lost_session_asks_for_a_resync(tmp_path, broker_factory):
    """A broker (or a cluster node holding a classic session queue) that comes back without
    our session has lost what was queued for us: the link asks for a resync at once."""
    node = broker_factory("n1", persistent=False)
    lane = Lane(cluster_cfg(tmp_path, [addr(node)]))
    link, asked = lane.links[0], []
    send = link.request_resync
    link.request_resync = lambda source, have: (asked.append((source, have)), send(source, have))
    probe = Probe(node, ["border/0901/C3/#"])
    try:
        wait_for(lambda: probe.on("/status"), what="the link's birth")
        probe.publish("border/0901/cache", {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot",
                                            "records": [{"kind": "driver", "id": "D1", "card_epc": "AA01"}]})
        wait_for(lambda: lane.core.counters["cache_messages"] == 1, what="the cache message applied")
        assert not probe.on("/requests")
        probe.close()
        node.restart()  # no persistence: the lane's session is gone
        probe = Probe(node, ["border/0901/C3/#"])
        wait_for(lambda: asked, what="a resync asked for")
        assert asked == [("CA", 1)]
    finally:
        lane.stop()
        probe.close()
