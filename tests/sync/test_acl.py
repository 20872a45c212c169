"""The reference broker ACL (config/mosquitto/) against a real mosquitto 2.0 with mutual TLS.

A lane's identity is its certificate's CN, "{port}/{lane}"; it may publish only under
its own B/ and read only its own downlink. What mosquitto 2.0.11 really does with a
refused publish: MQTT 5 gets a PUBACK with reason code 135 (Not authorized), MQTT 3.1.1
a plain PUBACK; in both cases the message reaches no subscriber. A SUBSCRIBE to
another lane's topics is granted, but the broker delivers nothing from them.
"""

import time

import paho.mqtt.client as mqtt
import pytest

from simulators.mosquitto import free_port
from tests.support.pki import PKI, Peer, reference_acl, reference_broker_conf

NOT_AUTHORIZED = 135
SETTLE_S = 0.5  # after a sentinel arrived, anything refused earlier would have arrived too


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = PKI(tmp_path_factory.mktemp("pki"))
    return {"ca": ca, "server": ca.issue("server", "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",)),
            "backend": ca.issue("backend", "backend-cbsa"), "c3": ca.issue("c3", "0901/C3"),
            "c4": ca.issue("c4", "0901/C4"), "a1": ca.issue("a1", "0902/A1")}


@pytest.fixture
def acl_broker(broker_factory, pki, tmp_path):
    acl = tmp_path / "laneagent.acl"
    acl.write_text(reference_acl({"0901": ["C3", "C4"], "0902": ["A1"]}))
    port = free_port()
    broker_factory(extra_conf=reference_broker_conf(port, pki["ca"].ca_path, pki["server"], acl))
    peers: list[Peer] = []

    def peer(who: str, client_id: str | None = None, **kwargs) -> Peer:
        p = Peer(port, pki["ca"].ca_path, pki[who], client_id=client_id or f"test-{who}-{len(peers)}", **kwargs)
        peers.append(p)
        return p

    yield peer
    for p in peers:
        p.close()


def test_a_lane_cannot_publish_as_another_lane(acl_broker):
    backend = acl_broker("backend", subscribe=("border/#",))
    c3 = acl_broker("c3")
    assert c3.publish("border/0901/C4/events", b"forged") == NOT_AUTHORIZED
    assert c3.publish("border/0901/C4/status", b"forged") == NOT_AUTHORIZED
    assert c3.publish("border/0902/A1/alerts", b"forged") == NOT_AUTHORIZED
    # Nor may it write downlink, even its own: acks and cache come from the back end only.
    assert c3.publish("border/0901/C3/acks", b"forged") == NOT_AUTHORIZED
    assert c3.publish("border/0901/cache", b"forged") == NOT_AUTHORIZED
    for suffix in ("events", "alerts", "status", "health", "requests", "cmd/result"):
        assert c3.publish(f"border/0901/C3/{suffix}", b"own") == 0, suffix
    backend.wait(lambda: len(backend.messages) >= 6, "the lane's own six messages")
    time.sleep(SETTLE_S)
    assert sorted(t for t, _ in backend.messages) == sorted(
        f"border/0901/C3/{s}" for s in ("events", "alerts", "status", "health", "requests", "cmd/result"))
    assert all(p == b"own" for _, p in backend.messages)


def test_mqtt_311_refusal_is_silent_but_nothing_is_delivered(acl_broker):
    backend = acl_broker("backend", subscribe=("border/#",))
    c3 = acl_broker("c3", protocol=mqtt.MQTTv311)
    assert c3.publish("border/0901/C4/events", b"forged") == 0  # 3.1.1 PUBACK has no reason code
    c3.publish("border/0901/C3/events", b"sentinel")
    backend.wait(lambda: backend.on("border/0901/C3/events"), "the sentinel")
    time.sleep(SETTLE_S)
    assert backend.on("border/0901/C4/events") == []


def test_a_lane_reads_only_its_own_downlink(acl_broker):
    c3 = acl_broker("c3", subscribe=("border/#",))
    assert [rc.value for rc in c3.granted] == [1]  # mosquitto grants it, then filters each message
    backend = acl_broker("backend")
    assert acl_broker("c4").publish("border/0901/C4/events", b"C4's crossing") == 0  # another lane's uplink
    for topic in ("border/0902/cache", "border/0901/C4/cmd", "border/0901/C4/acks", "border/0902/A1/cmd",
                  "border/0901/cache", "border/0901/C3/acks", "border/0901/C3/cmd"):
        assert backend.publish(topic, topic.encode()) == 0, topic
    c3.wait(lambda: len(c3.messages) >= 3, "the lane's own downlink")
    time.sleep(SETTLE_S)
    assert sorted(t for t, _ in c3.messages) == ["border/0901/C3/acks", "border/0901/C3/cmd", "border/0901/cache"]


def test_the_back_end_cannot_speak_for_a_lane(acl_broker):
    backend = acl_broker("backend")
    assert backend.publish("border/0901/C3/events", b"forged") == NOT_AUTHORIZED
    assert backend.publish("border/0901/C3/status", b"forged") == NOT_AUTHORIZED


def test_a_lane_cannot_take_over_another_lanes_session(acl_broker):
    # use_username_as_clientid: the client id a lane asks for is replaced by its CN, so C3
    # asking for C4's id neither kicks C4 off nor inherits C4's queued downlink.
    c4 = acl_broker("c4", client_id="laneagent-0901-C4-cbsa", subscribe=("border/0901/C4/cmd",))
    c3 = acl_broker("c3", client_id="laneagent-0901-C4-cbsa", subscribe=("border/0901/C4/cmd",))
    acl_broker("backend").publish("border/0901/C4/cmd", b"for C4")
    c4.wait(lambda: c4.on("border/0901/C4/cmd"), "C4's command (C4 must still be connected)")
    time.sleep(SETTLE_S)
    assert c4.disconnects == 0 and c3.messages == []
