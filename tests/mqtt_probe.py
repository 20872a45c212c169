"""A plain paho subscriber for tests: collects decoded CBOR payloads per topic."""

from __future__ import annotations

import threading
import time
import uuid

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Probe:
    def __init__(self, broker, topics: list[str], client_id: str | None = None, persistent: bool = False):
        self.messages: list[tuple[str, dict, bool]] = []  # (topic, payload, retained)
        self.cond = threading.Condition()
        self.subscribed = threading.Event()  # the broker's SUBACK arrived
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, reason_codes, p: self.subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.reconnect_delay_set(0.1, 0.5)
        if persistent:  # the broker keeps our subscription and queues for us while we are away
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        else:
            self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.messages.append((message.topic, cbor2.loads(message.payload), message.retain))
            self.cond.notify_all()

    def on(self, suffix: str) -> list[dict]:
        with self.cond:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait(self, suffix: str, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len([1 for t, _, _ in self.messages if t.endswith(suffix)]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        return self.on(suffix)

    def wait_subscribed(self, timeout: float = 10.0) -> "Probe":
        """Block until the broker acknowledged our subscription (raise on timeout)."""
        if not self.subscribed.wait(timeout):
            raise AssertionError(f"no SUBACK within {timeout} s")
        return self

    def publish(self, topic: str, payload, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
        self.client.publish(topic, data, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
