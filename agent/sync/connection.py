"""The MQTT connection of one link: who we are, how we connect, how we say goodbye.

Owns the paho client: client id, persistent session (MQTT 3.1.1 clean session off, MQTT 5
clean start off with a 7-day expiry), the retained offline will, TLS, credentials, the
birth on every CONNACK, a CONNACK timeout and jittered reconnects. The client is driven
with `loop()` from the link's thread only, so every callback runs there; other threads
learn about the connection through `LinkFigures`.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import threading
import time
from typing import Callable

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import __version__
from agent.config import BackendConfig, Config
from agent.sync import tls as tls_policy
from agent.sync.figures import LinkFigures
from agent.sync.wire import TurnClient

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
INFLIGHT_WINDOW = 64  # unacked publishes per back end, bounded by the drain (paho's own bound is off)
CONNACK_TIMEOUT_S = 10.0
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 60.0
STABLE_S = 10.0  # a connection up this long with its subscriptions granted resets the back-off
RECHECK_S = 30.0  # how often, while connected, the unreachable nodes are looked at again
NODE_CONNECT_TIMEOUT_S = 3.0  # TCP (+TLS) per node of a cluster, so a dead node cannot hold the failover


def reconnect_wait(attempt: int) -> float:
    """Full jitter, as tenacity's wait_random_exponential(multiplier=0.5, max=60): a hundred
    lanes reconnecting after a port-wide outage spread out instead of arriving together."""
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_MULTIPLIER_S * 2.0 ** min(attempt - 1, 32)))


class Connection:
    def __init__(self, cfg: Config, backend: BackendConfig, figures: LinkFigures, *,
                 birth: Callable[[], dict], subscriptions: list[tuple[str, int]],
                 on_up: Callable[[], None], on_new_session: Callable[[], None] = lambda: None, in_flight: Callable[[], int], stopping: Callable[[], bool]):
        self.backend, self.figures = backend, figures
        self.base = cfg.base_topic(backend)
        self.client_id = f"laneagent-{cfg.lane.port_code}-{cfg.lane.lane_id}-{backend.name}"
        self.identity = {"port": cfg.lane.port_code, "lane": cfg.lane.lane_id, "agent_version": __version__}
        self._birth, self._subscriptions = birth, subscriptions
        self._on_up, self._in_flight, self._stopping = on_up, in_flight, stopping
        self._on_new_session = on_new_session
        self.up = False  # CONNACK accepted and not lost since (this thread's own view)
        self.ring = NodeRing(backend.nodes)
        self._next_try = 0.0
        self._connect_mono = 0.0
        self._attempt_open = False  # a try of the node in use is under way (connect() returned)
        self._connack_seen = False
        self._granted_mono = 0.0  # when the SUBACK granted every subscription; 0 = not yet
        self._sub_mid: int | None = None
        self.client = self._make_client(cfg)

    # --- paho set-up -----------------------------------------------------------------------
    def _make_client(self, cfg: Config) -> mqtt.Client:
        backend = self.backend
        v5 = backend.mqtt_version == "5"
        client = TurnClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else False, reconnect_on_failure=False)
        # The drain keeps its own window (INFLIGHT_WINDOW). paho's bound, when set, walks every
        # message in flight on each PUBACK, looking for one to send: a tenth of a drain's CPU.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        # Publishes are queued and written by the link's `pump` once per turn (paho's external
        # loop API), not one send() each from inside publish(), and in one send() (wire.py).
        client.on_socket_register_write = lambda *_: None
        will = cbor2.dumps({"v": 1, "type": "status", "state": "offline", "port": cfg.lane.port_code,
                            "lane": cfg.lane.lane_id})
        client.will_set(f"{self.base}/status", will, qos=1, retain=True)
        if backend.tls:
            # TLS 1.2+, only the back end's CA, hostname checked, our certificate. With a
            # context set every connect is TLS or fails: there is no plaintext path.
            client.tls_set_context(tls_policy.client_context(backend.tls))
        if backend.username:
            password = None
            if backend.password_file:
                with open(backend.password_file) as f:
                    password = f.read().strip()
            client.username_pw_set(backend.username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        if len(backend.nodes) > 1:
            client.connect_timeout = NODE_CONNECT_TIMEOUT_S
        if backend.tls:
            self._report_tls_refusal(client)
        return client

    def _report_tls_refusal(self, client: mqtt.Client) -> None:
        """Make a broker's refusal of our certificate the link's last_error, logged once.

        Under TLS 1.3 the broker judges our certificate after our side of the handshake
        is done, so a missing or expired one shows up as a failed first read that paho
        only logs, followed by an "Unspecified error" disconnect that would hide it.
        """
        refused: list[str] = []

        def on_log(client, userdata, level, buf) -> None:
            if level == mqtt.MQTT_LOG_ERR and not self.up and buf.startswith("failed to receive on socket"):
                refused[:] = [tls_policy.explain(buf.partition(": ")[2], self.backend.tls)]
                self.figures.error(refused[0])

        def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
            if refused:
                self._connack_seen = True  # the TLS refusal is the cause, not the MQTT version
            self._on_disconnect(client, userdata, flags, reason_code, properties)
            if refused:
                self.figures.error(refused.pop(), quiet=True)

        client.on_log = on_log
        client.on_disconnect = on_disconnect

    # --- connect, with back-off, node after node ------------------------------------------------
    def ready(self) -> bool:
        """Connect when it is time. True when the client is to be looped (connected,
        connecting, or just tried); False while waiting out the back-off (see `wait_s`)."""
        if self.client.is_connected() or self._connecting():
            if self.up and not self.ring.stable and self._granted_mono \
                    and time.monotonic() - self._granted_mono >= STABLE_S:
                self.ring.proved_stable()
            return True
        if time.monotonic() < self._next_try:
            return False
        if not self._connect():
            self._attempt_over(failed=True)
        return True

    def wait_s(self) -> float:
        """Until the next try (the link's wake-up ends it early: a retry, stop)."""
        return max(0.0, self._next_try - time.monotonic())

    def skip_backoff(self) -> None:
        self._next_try = 0.0

    def _connecting(self) -> bool:
        """TCP is up and CONNACK is awaited; a broker that never answers is given up on."""
        if self.client.socket() is None or self.up:
            return False
        if time.monotonic() - self._connect_mono > CONNACK_TIMEOUT_S:
            self.figures.error(f"no CONNACK from {self.ring.name()} within {CONNACK_TIMEOUT_S:g} s "
                               f"to our MQTT {self.backend.mqtt_version} CONNECT")
            self._attempt_over(failed=True)
            self.client.disconnect()
            self.client.loop(timeout=0)
            return False
        return True

    def _connect(self) -> bool:
        backend = self.backend
        host, port = self.ring.current
        self._connect_mono = time.monotonic()
        self._attempt_open, self._connack_seen, self._granted_mono = True, False, 0.0
        try:
            if backend.mqtt_version == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                self.client.connect(host, port, backend.keepalive_s, clean_start=False, properties=props)
            else:
                self.client.connect(host, port, backend.keepalive_s)
            return True
        except (OSError, ssl.SSLError, ValueError) as e:
            self.figures.error(f"cannot connect to {self.ring.name()}: {e}")
            return False

    def _attempt_over(self, *, failed: bool) -> None:
        """The try of the node in use is over (failed, or a connection lost): move to the next
        node and schedule the next try. Counted once per try, whichever path sees it first."""
        if not self._attempt_open:
            return
        self._attempt_open = False
        wait = self.ring.failed() if failed else self.ring.lost()
        self._next_try = time.monotonic() + wait
        self.figures.nodes(None, self.ring.unreachable_names())

    def goodbye(self) -> None:
        """Replace the retained birth with a retained offline status, then disconnect."""
        if self.client.is_connected():
            info = self.client.publish(f"{self.base}/status", cbor2.dumps(
                {"v": 1, "type": "status", "state": "offline", **self.identity}), qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and self.client.is_connected():
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            self.client.loop(timeout=0.1)

    # --- callbacks (on the link's thread, inside loop()) ----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_seen = True
        if reason_code.is_failure:
            self.figures.error(f"{self.ring.name()} refused the connection: {reason_code}")
            return
        self.up = True
        self.ring.reached()
        self.figures.connection(True)
        self.figures.nodes(self.ring.name(), self.ring.unreachable_names())
        log.info("back end %s: connected to %s (session %s)", self.backend.name, self.ring.name(),
                 "resumed" if flags.session_present else "new")
        self._sub_mid = client.subscribe(self._subscriptions)[1]
        client.publish(f"{self.base}/status", cbor2.dumps({"v": 1, "type": "status", "state": "online",
                                                           **self.identity, **self._birth()}), qos=1, retain=True)
        if not flags.session_present:
            self._on_new_session()
        self._on_up()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """A refused subscription is a broken link, not a detail: without it no ack, cache or
        command arrives (RabbitMQ refuses it while the session queue's home node is down)."""
        if mid != self._sub_mid:
            return
        refused = [f"{topic} ({rc})" for (topic, _), rc in zip(self._subscriptions, reason_codes) if rc.is_failure]
        if refused:
            self.figures.error(f"{self.ring.name()} refused the subscription to {', '.join(refused)}; "
                               "reconnecting with back-off")
            self.up = False  # not a lost connection: a failed try, counted now (before the socket closes)
            self._attempt_over(failed=True)
            client.disconnect()
            return
        self._granted_mono = time.monotonic()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_up, self.up = self.up, False
        self.figures.connection(False)
        if was_up and self._stopping():
            log.info("back end %s: disconnected (agent stopping)", self.backend.name)
        elif was_up:
            log.warning("back end %s: connection lost (%s, node %s); %d in flight kept for re-send",
                        self.backend.name, reason_code, self.ring.name(), self._in_flight())
            if reason_code.is_failure:
                self.figures.error(f"disconnected from {self.ring.name()}: {reason_code}", quiet=True)
        elif not self._connack_seen and self._attempt_open:
            # TCP (and TLS) were accepted, then the socket closed without a CONNACK: the broker
            # did not understand our CONNECT. Say which MQTT version we spoke (issue 12:
            # RabbitMQ 3.x logs "unparseable payload" on an MQTT 5 CONNECT and closes).
            self.figures.error(no_connack_reason(self.ring.name(), self.backend.mqtt_version))
        # Not connected yet otherwise: keep the refusal's own reason (bad credentials, TLS) as last_error.
        self._attempt_over(failed=not (was_up and self.ring.stable))


def no_connack_reason(node: str, version: str) -> str:
    if version == "5":
        return (f"{node} closed the connection without a CONNACK to our MQTT 5 CONNECT: the broker probably "
                "speaks only MQTT 3.1.1 (RabbitMQ 3.x does); set mqtt_version = \"3.1.1\" for this back end")
    return f"{node} closed the connection without a CONNACK to our MQTT {version} CONNECT"


class NodeRing:
    """The broker nodes of one back end: the one in use, the ones that failed, and the back-off.

    Round-robin: a failed try or a lost connection moves to the next node; a node that comes
    back is not preferred (the link stays where it is). The back-off counts failed tries since
    the last connection that proved stable (CONNACK, SUBACK granted, up STABLE_S): within the
    first round of the nodes each wait is short, so a lane is on a live node within seconds;
    every further round doubles it. A TCP connect that is then refused or closed is a failure,
    so a broker that accepts sockets and refuses sessions cannot make the link spin.
    """

    def __init__(self, nodes: tuple[tuple[str, int], ...]):
        self.nodes = tuple(nodes)
        self.index = 0  # the first node is tried first
        self.failures = 0
        self.stable = False
        self._unreachable: set[int] = set()
        self._answered: queue.SimpleQueue = queue.SimpleQueue()  # node indexes the probe thread reached
        self._next_recheck = 0.0

    def recheck(self, connected: bool) -> bool:
        """While connected, every RECHECK_S see on a short-lived thread whether the unreachable
        nodes accept TCP again, so status stops naming a node that has returned (the link stays
        where it is). True when the unreachable set changed (on this, the link's thread)."""
        changed = False
        while not self._answered.empty():
            index = self._answered.get()
            changed |= index in self._unreachable and index != self.index
            if index != self.index:
                self._unreachable.discard(index)
        now = time.monotonic()
        if connected and self._unreachable and now >= self._next_recheck:
            self._next_recheck = now + RECHECK_S
            nodes = [(i, self.nodes[i]) for i in sorted(self._unreachable)]
            threading.Thread(target=self._probe, args=(nodes,), name="node-recheck", daemon=True).start()
        return changed

    def _probe(self, nodes: list[tuple[int, tuple[str, int]]]) -> None:
        for index, (host, port) in nodes:
            try:
                with socket.create_connection((host, port), timeout=NODE_CONNECT_TIMEOUT_S):
                    self._answered.put(index)
            except OSError:
                pass

    @property
    def current(self) -> tuple[str, int]:
        return self.nodes[self.index]

    def name(self, index: int | None = None) -> str:
        host, port = self.nodes[self.index if index is None else index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def unreachable_names(self) -> list[str]:
        return [self.name(i) for i in sorted(self._unreachable)]

    def reached(self) -> None:
        self._unreachable.discard(self.index)

    def proved_stable(self) -> None:
        self.stable, self.failures = True, 0

    def failed(self) -> float:
        """The node in use could not be reached or did not keep a session: the wait before the next."""
        self._unreachable.add(self.index)
        self.failures += 1
        return self._advance()

    def lost(self) -> float:
        """A stable connection was lost: straight on to the next node, after a short jitter."""
        self._unreachable.add(self.index)
        self.failures = 0
        return self._advance()

    def _advance(self) -> float:
        self.stable = False
        self.index = (self.index + 1) % len(self.nodes)
        return reconnect_wait(1 + self.failures // len(self.nodes))
