"""`backends[].hosts` (DESIGN 2.2) and the topic-word rule, through the config schema."""

import pytest

from agent import config
from agent.errors import ConfigError
from agent.sync.connection import NodeRing, STABLE_S, no_connack_reason

LANE = {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"}


def parse(backend: dict, lane: dict | None = None):
    return config.parse({"lane": {**LANE, **(lane or {})}, "backends": [{"name": "cbsa", "country": "CA", **backend}]})


def problems(backend: dict, lane: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse(backend, lane)
    return e.value.problems


def test_hosts_parsed_in_order_and_first_is_host_port():
    b = parse({"hosts": ["10.1.0.11:8883", "broker-2.example:8884", "[::1]:1883"]}).backends[0]
    assert b.nodes == (("10.1.0.11", 8883), ("broker-2.example", 8884), ("::1", 1883))
    assert (b.host, b.port) == ("10.1.0.11", 8883)


def test_one_node_form_is_unchanged():
    b = parse({"host": "127.0.0.1", "port": 1884}).backends[0]
    assert b.hosts == () and b.nodes == (("127.0.0.1", 1884),)


def test_hosts_with_host_is_an_error_naming_the_key():
    assert any(p.startswith("backends[0].hosts: give either hosts") and "remove host" in p
               for p in problems({"host": "127.0.0.1", "hosts": ["10.0.0.1:1883"]}))
    assert any("remove port" in p for p in problems({"port": 1883, "hosts": ["10.0.0.1:1883"]}))


@pytest.mark.parametrize("bad", [[], ["10.0.0.1"], ["10.0.0.1:0"], ["10.0.0.1:99999"], ["a:1", "a:1"], [1883],
                                 ["::1:1883"]])
def test_bad_hosts_are_refused(bad):
    assert any(p.startswith("backends[0].hosts:") for p in problems({"hosts": bad}))


def test_neither_host_nor_hosts():
    assert "backends[0].host: missing (required, or hosts = [\"host:port\", ...] for a cluster)" in problems({})


@pytest.mark.parametrize("key", ["port_code", "lane_id"])
def test_dot_refused_in_lane_topic_words(key):
    assert any(p.startswith(f"lane.{key}:") and "'.'" in p for p in problems({"host": "h"}, {key: "C.3"}))


def test_dot_refused_in_topic_prefix():
    assert any(p.startswith("backends[0].topic_prefix:") for p in problems({"host": "h", "topic_prefix": "a.b"}))


def test_every_problem_reported_at_once():
    found = problems({"host": "h", "hosts": ["x"], "topic_prefix": "a.b"}, {"lane_id": "C.3"})
    assert {p.split(":")[0] for p in found} >= {"backends[0].hosts", "backends[0].topic_prefix", "lane.lane_id"}


def test_ring_round_robin_and_backoff_reset_only_when_stable(monkeypatch):
    monkeypatch.setattr("agent.sync.connection.random.uniform", lambda lo, hi: hi)  # the longest wait
    ring = NodeRing((("a", 1), ("b", 2), ("c", 3)))
    assert ring.name() == "a:1"
    waits = [ring.failed() for _ in range(7)]
    # first round short (a lane is on a live node within seconds), then doubling per round
    assert waits == [0.5, 0.5, 1.0, 1.0, 1.0, 2.0, 2.0]
    assert ring.name() == "b:2" and ring.unreachable_names() == ["a:1", "b:2", "c:3"]
    ring.reached()
    assert ring.unreachable_names() == ["a:1", "c:3"]
    assert ring.failures == 7  # connected is not enough: the back-off stays until proved stable
    ring.proved_stable()
    assert ring.failures == 0 and ring.lost() == 0.5 and ring.name() == "c:3"
    assert STABLE_S >= 5


def test_no_connack_names_the_mqtt_version():
    assert "MQTT 5" in no_connack_reason("n:1", "5") and "3.1.1" in no_connack_reason("n:1", "5")
