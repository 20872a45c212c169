"""A lane against a real 3-node RabbitMQ cluster (tests/support/rabbitmq.py), MQTT 3.1.1,
with the reference broker settings (config/rabbitmq/rabbitmq.conf: quorum session queues,
7-day subscription TTL, no anonymous login) and `require_ack` as recommended for clusters.

The country's side is a persistent-session MQTT consumer on a node the test does not kill
at first; it acks every event on B/acks, as a back end with `require_ack` does. Passages
are counted by `event_id` over everything the consumer received: each must arrive (at
least once), any duplicate must carry the same `event_id` and `seq`, and `seq` must be
contiguous from 1. Skipped, with the reason, where rabbitmq-server cannot be installed or
started (`make rabbitmq` installs it). The module takes about a minute on two cores (the
cluster boots, then boots again whole), so it runs in `make test` as well as `make test-cluster`.

Two RabbitMQ 3.10 faults made the whole-cluster outage fail before; the harness handles both
the way an operator can (tests/support/rabbitmq.py): the MQTT plugin's client-ID tracker (a Ra
cluster) deadlocks when every node boots at once, so RabbitCluster.restart_after_outage
restarts each node's tracker member from outside; and a quorum queue SIGKILLed on every node
within a second or so of its creation loses its Ra registration (written lazily to DETS) and
comes back empty and leaderless for good, so the test pulls the plug only once both sessions'
queues are registered on disk, as they are on a lane connected for more than a moment.
"""

from __future__ import annotations

import json
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from agent import config
from agent.core import LaneCore
from agent.handoff import CommandMessage
from agent.store.writer import StoreWriter
from agent.sync.link import BackendLink
from tests.helpers import wait_for
from tests.support.rabbitmq import PASSWORD, USER, RabbitCluster, find_rabbitmq
from tests.sync.test_sync import Lane

FAILOVER_S = 5.0
WHOLE_RESTART_S = 240.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = find_rabbitmq()
    if why:
        pytest.skip(why)
    try:
        c = RabbitCluster(tmp_path_factory.mktemp("rabbitmq")).start()
    except Exception as e:  # noqa: BLE001 - any failure to boot is a reason to skip, stated
        pytest.skip(f"RabbitMQ could not be started as a 3-node cluster here: {e}")
    yield c
    c.stop()


class Country:
    """A back end: one persistent MQTT session (a quorum queue) that records events and acks them."""

    def __init__(self, node, lane_id: str):
        self.base = f"border/0901/{lane_id}"
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"country-ca-{lane_id}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(f"{self.base}/#", 1)])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(node.host, node.mqtt_port)
        self.client.loop_start()
        assert self.subscribed.wait(30), "the country's consumer got no SUBACK"

    def _on_message(self, client, userdata, message):
        if not message.topic.endswith("/events"):
            return
        event = cbor2.loads(message.payload)
        with self.lock:
            self.events.append(event)
        client.publish(f"{self.base}/acks", cbor2.dumps({"v": 1, "type": "ack", "event_ids": [event["event_id"]]}),
                       qos=1)

    def publish(self, topic: str, body: dict) -> None:
        self.client.publish(topic, cbor2.dumps(body), qos=1).wait_for_publish(10)

    def seqs(self) -> set[int]:
        with self.lock:
            return {e["seq"] for e in self.events}

    def check_exactly_once(self, n: int) -> int:
        """Every seq 1..n, by event_id; duplicates only as the same event. Returns the duplicates."""
        with self.lock:
            by_id: dict[str, int] = {}
            for e in self.events:
                assert by_id.setdefault(e["event_id"], e["seq"]) == e["seq"], f"event_id {e['event_id']} twice"
            assert sorted(by_id.values()) == list(range(1, n + 1)), sorted(by_id.values())
            return len(self.events) - len(by_id)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class ClusterLane(Lane):
    """The in-process lane of tests/sync/test_sync.py, with commands caught on their way up."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.commands: list[CommandMessage] = []
        self.writer = StoreWriter(cfg.store.path)
        self.core = LaneCore(cfg, self.writer)

        def submit(msg):
            self.commands.append(msg) if isinstance(msg, CommandMessage) else self.core.submit(msg)

        self.links = [BackendLink(cfg, b, submit) for b in cfg.backends]
        for link in self.links:
            self.core.on_committed.append(link.wake)
            self.core.resync[link.backend.name] = link.request_resync
        self.core.start()
        for link in self.links:
            link.start()


def lane_cfg(tmp_path, cluster, lane_id: str):
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": lane_id, "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10.0},
        "referral": {"random_rate": 0.0},
        "backends": [{"name": "cbsa", "country": "CA", "hosts": cluster.hosts(), "mqtt_version": "3.1.1",
                      "require_ack": True, "max_rate": 0, "username": USER,
                      "password_file": str(_password_file(tmp_path))}],
    })


def _password_file(tmp_path):
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def test_node_killed_under_a_lane_nothing_lost(tmp_path, cluster):
    lane_id = "K1"
    country = Country(cluster.nodes[2], lane_id)
    lane = ClusterLane(lane_cfg(tmp_path, cluster, lane_id))
    link = lane.links[0]
    try:
        wait_for(lambda: link.connected, timeout=30, what="the lane on the cluster")
        first = link.snapshot()["node"]
        assert first == cluster.hosts()[0]
        for i in range(5):
            lane.truck(f"AA{i:02d}")
        wait_for(lambda: len(country.seqs()) == 5, timeout=30, what="5 events at the country")

        victim = cluster.nodes[0]
        victim.kill()  # SIGKILL the node the lane is connected to
        killed = time.monotonic()
        for i in range(5, 10):
            lane.truck(f"AA{i:02d}")  # trucks keep passing through the failover
        wait_for(lambda: link.connected and link.snapshot()["node"] != first, timeout=30,
                 what="the lane on another node")
        took = time.monotonic() - killed
        assert took < FAILOVER_S, f"failover took {took:.1f} s"
        assert first in link.snapshot()["unreachable"]
        wait_for(lambda: len(country.seqs()) == 10, timeout=30, what="10 events at the country")

        # downlink and commands still reach the lane through the surviving nodes
        cache = lane.core.counters["cache_messages"]
        country.publish("border/0901/cache", {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot",
                                              "records": [{"kind": "driver", "id": "D1", "card_epc": "AA00"}]})
        wait_for(lambda: lane.core.counters["cache_messages"] > cache, timeout=20, what="the cache message applied")
        country.publish(f"border/0901/{lane_id}/cmd", {"v": 1, "type": "cmd", "id": "c1", "seq": 1,
                                                       "command": "status"})
        wait_for(lambda: lane.commands, timeout=20, what="the command handed up")

        victim.start()  # the killed node comes back and rejoins the cluster
        victim.wait_listening()
        wait_for(lambda: len(cluster.running_nodes()) == 3, timeout=60, what="the node rejoining")
        for i in range(10, 13):
            lane.truck(f"AA{i:02d}")
        wait_for(lambda: len(country.seqs()) == 13, timeout=30, what="13 events at the country")
        assert link.snapshot()["node"] != first  # stays where it is when the lost node returns
        country.check_exactly_once(13)
        wait_for(lambda: owed(lane) == 0, timeout=20, what="every event acked by the country")
    finally:
        lane.stop()
        country.close()


def test_reference_config_quorum_sessions_and_no_anonymous_login(cluster):
    """What config/rabbitmq/rabbitmq.conf promises: a persistent session is a quorum queue
    (it survives its node), and a client without credentials is refused."""
    country = Country(cluster.nodes[1], "Q1")
    try:
        queues = cluster.nodes[1].ctl("list_queues", "name", "type", "--formatter", "json")
        assert {"name": "mqtt-subscription-country-ca-Q1qos1", "type": "quorum"} in json.loads(queues)
    finally:
        country.close()
    answer = threading.Event()
    codes = []
    anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous-probe", protocol=mqtt.MQTTv311)
    anon.on_connect = lambda c, u, f, rc, p: (codes.append(rc), answer.set())
    anon.connect(cluster.nodes[1].host, cluster.nodes[1].mqtt_port)
    anon.loop_start()
    try:
        assert answer.wait(20), "no CONNACK to an anonymous CONNECT"
        assert codes[0].is_failure, codes
    finally:
        anon.loop_stop()
        anon.disconnect()


def test_whole_cluster_down_then_back_backlog_drains(tmp_path, cluster):
    lane_id = "K2"
    country = Country(cluster.nodes[1], lane_id)
    lane = ClusterLane(lane_cfg(tmp_path, cluster, lane_id))
    link = lane.links[0]
    try:
        wait_for(lambda: link.connected, timeout=30, what="the lane on the cluster")
        lane.truck("BB00")
        wait_for(lambda: country.seqs() == {1}, timeout=30, what="the first event")
        # A lane's session has been up for days when a power cut comes, not one second: wait
        # until both sessions' quorum queue members are registered on disk on every node (Ra
        # writes that lazily; a queue SIGKILLed whole before it comes back empty and leaderless).
        wait_for(lambda: cluster.quorum_queues_durable(f"mqtt-subscription-laneagent-0901-{lane_id}-cbsaqos1",
                                                       f"mqtt-subscription-country-ca-{lane_id}qos1"),
                 timeout=60, what="the sessions' quorum queues on disk on every node")
        for node in cluster.nodes:
            node.kill()
        for i in range(1, 8):
            lane.truck(f"BB{i:02d}")
        wait_for(lambda: not link.connected, what="the lane cut off")
        # All nodes boot again together, their MQTT client-ID tracker kicked (see
        # RabbitCluster.restart_after_outage: RabbitMQ 3.10's plugin deadlocks otherwise).
        cluster.restart_after_outage()
        try:
            wait_for(lambda: link.connected, timeout=WHOLE_RESTART_S, what="the lane back")
        except AssertionError as e:
            queues = cluster.nodes[1].try_ctl("list_queues", "name", "type", "leader", "online")
            raise AssertionError(f"{e}; link: {link.last_error}; queues: {queues}; "
                                 f"node 1 log: {cluster.nodes[0].log_tail(1500)}")
        wait_for(lambda: len(country.seqs()) == 8, timeout=60, what="the backlog drained")
        country.check_exactly_once(8)
        wait_for(lambda: owed(lane) == 0, timeout=20, what="every event acked by the country")
    finally:
        lane.stop()
        country.close()


def owed(lane) -> int:
    return lane.writer.conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]
