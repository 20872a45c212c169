"""The MQTT connection of one link: who we are, how we connect, how we say goodbye.

Owns the paho client: client id, persistent session (MQTT 3.1.1 clean session off, MQTT 5
clean start off with a 7-day expiry), the retained offline will, TLS, credentials, the
birth on every CONNACK, a CONNACK timeout and jittered reconnects. The client is driven
with `loop()` from the link's thread only, so every callback runs there; other threads
learn about the connection through `LinkFigures`.
"""

from __future__ import annotations

import logging
import random
import ssl
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

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
INFLIGHT_WINDOW = 64  # unacked publishes per back end; paho's own limit is set to match
CONNACK_TIMEOUT_S = 10.0
BACKOFF_MULTIPLIER_S = 0.5
BACKOFF_MAX_S = 60.0


def reconnect_wait(attempt: int) -> float:
    """Full jitter, as tenacity's wait_random_exponential(multiplier=0.5, max=60): a hundred
    lanes reconnecting after a port-wide outage spread out instead of arriving together."""
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_MULTIPLIER_S * 2.0 ** min(attempt - 1, 32)))


class Connection:
    def __init__(self, cfg: Config, backend: BackendConfig, figures: LinkFigures, *,
                 birth: Callable[[], dict], subscriptions: list[tuple[str, int]],
                 on_up: Callable[[], None], in_flight: Callable[[], int], stopping: Callable[[], bool]):
        self.backend, self.figures = backend, figures
        self.base = cfg.base_topic(backend)
        self.client_id = f"laneagent-{cfg.lane.port_code}-{cfg.lane.lane_id}-{backend.name}"
        self.identity = {"port": cfg.lane.port_code, "lane": cfg.lane.lane_id, "agent_version": __version__}
        self._birth, self._subscriptions = birth, subscriptions
        self._on_up, self._in_flight, self._stopping = on_up, in_flight, stopping
        self.up = False  # CONNACK accepted and not lost since (this thread's own view)
        self._attempt = 0
        self._next_try = 0.0
        self._connect_mono = 0.0
        self.client = self._make_client(cfg)

    # --- paho set-up -----------------------------------------------------------------------
    def _make_client(self, cfg: Config) -> mqtt.Client:
        backend = self.backend
        v5 = backend.mqtt_version == "5"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else False, reconnect_on_failure=False)
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.max_queued_messages_set(0)
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
            self._on_disconnect(client, userdata, flags, reason_code, properties)
            if refused:
                self.figures.error(refused.pop(), quiet=True)

        client.on_log = on_log
        client.on_disconnect = on_disconnect

    # --- connect, with back-off --------------------------------------------------------------
    def ready(self) -> bool:
        """Connect when it is time. True when the client is to be looped (connected,
        connecting, or just tried); False while waiting out the back-off (see `wait_s`)."""
        if self.client.is_connected() or self._connecting():
            return True
        if time.monotonic() < self._next_try:
            return False
        self._attempt += 1
        if self._connect():
            self._attempt = 0
        self._next_try = time.monotonic() + reconnect_wait(max(self._attempt, 1))
        return True

    def wait_s(self) -> float:
        return min(0.2, max(0.0, self._next_try - time.monotonic()))

    def skip_backoff(self) -> None:
        self._next_try = 0.0

    def _connecting(self) -> bool:
        """TCP is up and CONNACK is awaited; a broker that never answers is given up on."""
        if self.client.socket() is None or self.up:
            return False
        if time.monotonic() - self._connect_mono > CONNACK_TIMEOUT_S:
            self.figures.error("no CONNACK from the broker within 10 s")
            self.client.disconnect()
            self.client.loop(timeout=0)
            return False
        return True

    def _connect(self) -> bool:
        backend = self.backend
        self._connect_mono = time.monotonic()
        try:
            if backend.mqtt_version == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                self.client.connect(backend.host, backend.port, backend.keepalive_s, clean_start=False,
                                    properties=props)
            else:
                self.client.connect(backend.host, backend.port, backend.keepalive_s)
            return True
        except (OSError, ssl.SSLError, ValueError) as e:
            self.figures.error(f"cannot connect to {backend.host}:{backend.port}: {e}")
            return False

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
        if reason_code.is_failure:
            self.figures.error(f"broker refused the connection: {reason_code}")
            return
        self.up, self._attempt = True, 0
        self.figures.connection(True)
        log.info("back end %s: connected to %s:%d (session %s)", self.backend.name, self.backend.host,
                 self.backend.port, "resumed" if flags.session_present else "new")
        client.subscribe(self._subscriptions)
        client.publish(f"{self.base}/status", cbor2.dumps({"v": 1, "type": "status", "state": "online",
                                                           **self.identity, **self._birth()}), qos=1, retain=True)
        self._on_up()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_up, self.up = self.up, False
        self.figures.connection(False)
        if was_up and self._stopping():
            log.info("back end %s: disconnected (agent stopping)", self.backend.name)
        elif was_up:
            log.warning("back end %s: connection lost (%s); %d in flight kept for re-send", self.backend.name,
                        reason_code, self._in_flight())
            if reason_code.is_failure:
                self.figures.error(f"disconnected: {reason_code}", quiet=True)
        # Not connected yet: keep the refusal's own reason (bad credentials, TLS) as last_error.
