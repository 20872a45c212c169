"""One MQTT link to one back end: drain its backlog, take its downlink, say who we are.

Each link runs on its own thread and owns its paho client (driven with `loop()` from
that thread, so callbacks need no locks) and its own read connection to the store.
An item is handed to paho once; paho keeps it until its PUBACK, re-sending it after a
reconnect; only the PUBACK (through the core, the one writer) marks it delivered. A
restart re-sends whatever was not marked: duplicates carry the same `event_id`.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from typing import Callable

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import wait_random_exponential

from agent import __version__
from agent.config import BackendConfig, Config
from agent.core import CacheHandoff, CommandHandoff, LaneCore
from agent.errors import DownlinkRejected
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.sync import downlink
from agent.sync import tls as tls_policy
from agent.sync.cose import load_public_key
from agent.sync.figures import LinkFigures
from agent.sync.payload import encode_event

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
INFLIGHT_WINDOW = 64  # unacked publishes per back end; paho's own limit is set to match
HEALTH_EVERY_S = 30.0
LOOP_TIMEOUT_S = 0.01
CONNACK_TIMEOUT_S = 10.0
# Full jitter: a hundred lanes reconnecting after a port-wide outage spread out.
RECONNECT_WAIT = wait_random_exponential(multiplier=0.5, max=60)


class _RetryState:
    """The bit of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, attempt: int):
        self.attempt_number = attempt


class BackendLink:
    def __init__(self, cfg: Config, backend: BackendConfig, core: LaneCore,
                 health: Callable[[], dict] = dict, birth: Callable[[], dict] = dict,
                 on_command: Callable[["BackendLink", dict], dict] | None = None):
        self.cfg, self.backend, self.core = cfg, backend, core
        self.health, self.birth, self.on_command = health, birth, on_command
        # A verify_key that cannot be read stops the start-up: no silent unsigned downlink.
        self.verify_key = load_public_key(backend.verify_key) if backend.verify_key else None
        self.base = cfg.base_topic(backend)
        self.client_id = f"laneagent-{cfg.lane.port_code}-{cfg.lane.lane_id}-{backend.name}"
        self.figures = LinkFigures(backend.name)  # written here, read from any thread
        self._inflight: dict[int, tuple[str, int, float]] = {}  # mid -> (item_type, item_id, sent mono)
        self._awaiting_ack: dict[int, float] = {}  # seq -> when PUBACKed (require_ack back ends)
        self._cursor = {"alert": 0, "event": 0}  # highest item handed to paho in this run
        self._tokens = 0.0
        self._tokens_mono = time.monotonic()
        self._hold_until = 0.0
        self._connect_mono = 0.0
        self._retry_requested = False
        self._delivered: list[tuple[str, int]] = []  # PUBACKed this loop, handed to the core in one go
        self._control: queue.Queue = queue.Queue()  # publishes asked for by other threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"link-{backend.name}", daemon=True)
        self.client = self._make_client()
        core.on_committed.append(self._wake.set)

    # --- paho set-up -----------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        v5 = self.backend.mqtt_version == "5"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else False, reconnect_on_failure=False)
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.max_queued_messages_set(0)
        will = cbor2.dumps({"v": 1, "type": "status", "state": "offline", "port": self.cfg.lane.port_code,
                            "lane": self.cfg.lane.lane_id})
        client.will_set(f"{self.base}/status", will, qos=1, retain=True)
        if self.backend.tls:
            # TLS 1.2+, only the back end's CA, hostname checked, our certificate. With a
            # context set every connect is TLS or fails: there is no plaintext path.
            client.tls_set_context(tls_policy.client_context(self.backend.tls))
        if self.backend.username:
            password = None
            if self.backend.password_file:
                with open(self.backend.password_file) as f:
                    password = f.read().strip()
            client.username_pw_set(self.backend.username, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if self.backend.tls:
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
            if level == mqtt.MQTT_LOG_ERR and not self.connected and buf.startswith("failed to receive on socket"):
                refused[:] = [tls_policy.explain(buf.partition(": ")[2], self.backend.tls)]
                self._error(refused[0])

        def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
            self._on_disconnect(client, userdata, flags, reason_code, properties)
            if refused:
                self.figures.error(refused.pop(), quiet=True)

        client.on_log = on_log
        client.on_disconnect = on_disconnect

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline status), disconnect, join."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    # --- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        next_try = 0.0
        next_health = time.monotonic() + HEALTH_EVERY_S
        while not self._stop.is_set():
            self.figures.turn(len(self._inflight))
            if self._retry_requested:
                self._retry_requested = False
                next_try, self._hold_until = 0.0, 0.0
                self._awaiting_ack.clear()
                self._cursor = {"alert": 0, "event": 0}  # in-flight items are skipped by _drain
            if not self.client.is_connected() and not self._connecting():
                if time.monotonic() >= next_try:
                    attempt += 1
                    if self._connect():
                        attempt = 0
                    next_try = time.monotonic() + RECONNECT_WAIT(_RetryState(max(attempt, 1)))
                else:
                    self._wake.wait(min(0.2, max(0.0, next_try - time.monotonic())))
                    self._wake.clear()
                    continue
            self.client.loop(timeout=LOOP_TIMEOUT_S)
            if self._delivered:
                self.core.submit_delivered(self.backend.name, self._delivered)
                self._delivered = []
            if self.connected:
                attempt = 0
                self._send_control()
                self._drain()
                self._resend_unacked()
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + HEALTH_EVERY_S
                    self._publish_health()
        self._goodbye()

    def _connecting(self) -> bool:
        """TCP is up and CONNACK is awaited; a broker that never answers is given up on."""
        if not self._sock_open() or self.connected:
            return False
        if time.monotonic() - self._connect_mono > CONNACK_TIMEOUT_S:
            self._error("no CONNACK from the broker within 10 s")
            self.client.disconnect()
            self.client.loop(timeout=0)
            return False
        return True

    def _sock_open(self) -> bool:
        return self.client.socket() is not None

    def _connect(self) -> bool:
        self._connect_mono = time.monotonic()
        try:
            if self.backend.mqtt_version == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                self.client.connect(self.backend.host, self.backend.port, self.backend.keepalive_s,
                                    clean_start=False, properties=props)
            else:
                self.client.connect(self.backend.host, self.backend.port, self.backend.keepalive_s)
            return True
        except (OSError, ssl.SSLError, ValueError) as e:
            self._error(f"cannot connect to {self.backend.host}:{self.backend.port}: {e}")
            return False

    def _goodbye(self) -> None:
        if self.client.is_connected():
            info = self.client.publish(f"{self.base}/status", cbor2.dumps(
                {"v": 1, "type": "status", "state": "offline", **self._identity()}), qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and self.client.is_connected():
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            self.client.loop(timeout=0.1)

    # --- callbacks (run on this thread, inside loop()) -----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._error(f"broker refused the connection: {reason_code}")
            return
        self.figures.connection(True)
        log.info("back end %s: connected to %s:%d (session %s)", self.backend.name, self.backend.host,
                 self.backend.port, "resumed" if flags.session_present else "new")
        prefix = self.backend.topic_prefix
        client.subscribe([(f"{prefix}/{self.cfg.lane.port_code}/cache", 1), (f"{self.base}/acks", 1),
                          (f"{self.base}/cmd", 1)])
        client.publish(f"{self.base}/status", cbor2.dumps({"v": 1, "type": "status", "state": "online",
                                                           **self._identity(), **self.birth()}), qos=1, retain=True)
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self.connected
        self.figures.connection(False)
        if was_connected and self._stop.is_set():
            log.info("back end %s: disconnected (agent stopping)", self.backend.name)
        elif was_connected:
            log.warning("back end %s: connection lost (%s); %d in flight kept for re-send", self.backend.name,
                        reason_code, len(self._inflight))
            if reason_code.is_failure:
                self.figures.error(f"disconnected: {reason_code}", quiet=True)
        # Not connected yet: keep the refusal's own reason (bad credentials, TLS) as last_error.

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        item = self._inflight.pop(mid, None)
        if item is None:
            return
        item_type, item_id, _ = item
        if reason_code.is_failure:
            # The broker refused this one (not authorised, quota): try it again later.
            self._error(f"broker refused {item_type} {item_id}: {reason_code}")
            self._cursor[item_type] = min(self._cursor[item_type], item_id - 1)
            self._hold_until = time.monotonic() + 5.0
            return
        self.figures.acked()
        if item_type == "event" and self.backend.require_ack:
            self._awaiting_ack[item_id] = time.monotonic()
        else:
            self._delivered.append((item_type, item_id))

    def _on_message(self, client, userdata, message) -> None:
        max_bytes, key = self.cfg.store.max_message_kb * 1024, self.verify_key
        try:
            if message.topic.endswith("/cache"):
                msg = downlink.cache_message(message.payload, max_bytes, self.backend.country, key)
                self.core.submit_cache(CacheHandoff(self.backend.name, msg, self.request_resync, signed=key is not None,
                                                    share_alerts="alerts" in self.backend.share))
            elif message.topic == f"{self.base}/acks":
                self._take_acks(downlink.ack_message(message.payload, max_bytes, key))
            elif message.topic == f"{self.base}/cmd":
                msg = downlink.command_message(message.payload, max_bytes, key)
                self.core.submit_command(CommandHandoff(self.backend.name, msg, self._execute, self._reject))
        except DownlinkRejected as e:
            self._reject(e)

    def _reject(self, error: DownlinkRejected) -> None:
        self.core.reject_downlink(self.backend.name, error, "alerts" in self.backend.share)

    def _execute(self, msg: dict) -> None:
        """Run an accepted command (on the core thread) and queue its result for B/cmd/result."""
        try:
            if msg.get("command") not in downlink.COMMANDS or self.on_command is None:
                raise ValueError(f"unknown command {msg.get('command')!r} (known: {', '.join(downlink.COMMANDS)})")
            result = {"ok": True, "result": self.on_command(self, msg)}
        except (ValueError, TypeError) as e:
            result = {"ok": False, "error": str(e)}
        log.info("back end %s: command %s (%s): %s", self.backend.name, msg.get("command"), msg["id"],
                 "done" if result["ok"] else result["error"])
        self._control.put((f"{self.base}/cmd/result", cbor2.dumps(
            {"v": 1, "type": "cmd_result", "id": msg["id"], "command": msg.get("command"), **result}, default=str)))
        self._wake.set()

    # --- work ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Hand paho the next undelivered items, alerts first, within window and rate."""
        now = time.monotonic()
        if now < self._hold_until:
            return
        room = INFLIGHT_WINDOW - len(self._inflight)
        if self.backend.max_rate > 0:
            # A bucket of a tenth of a second: over any second, at most max_rate (+10 %).
            burst = max(1.0, self.backend.max_rate / 10)
            self._tokens = min(burst, self._tokens + (now - self._tokens_mono) * self.backend.max_rate)
            self._tokens_mono = now
            room = min(room, int(self._tokens))
        if room <= 0:
            return
        outbox = self._outbox()
        for item_type, topic in (("alert", "alerts"), ("event", "events")):
            if room <= 0:
                break
            in_flight = {(t, i) for t, i, _ in self._inflight.values()}
            for item_id, payload in outbox.pending(self.backend.name, item_type, self._cursor[item_type], room):
                if (item_type, item_id) in in_flight:
                    self._cursor[item_type] = item_id
                    continue
                if payload is None:  # written by an older release
                    body = outbox.body(item_type, item_id)
                    payload = encode_event(body, self.backend, self.cfg.lane) if item_type == "event" else body
                info = self.client.publish(f"{self.base}/{topic}", payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_QUEUE_SIZE):
                    self._error(f"publish failed: {mqtt.error_string(info.rc)}")
                    return
                self._inflight[info.mid] = (item_type, item_id, now)
                self._cursor[item_type] = item_id
                self.figures.published()
                self._tokens -= 1
                room -= 1

    def _outbox(self) -> Outbox:
        if not hasattr(self, "_outbox_conn"):
            self._outbox_conn = Outbox(open_reader(self.cfg.store.path))
        return self._outbox_conn

    def _take_acks(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        marks = []
        conn = self._outbox().conn
        for event_id in event_ids:
            row = conn.execute("SELECT seq FROM events WHERE event_id = ?", (event_id,)).fetchone()
            if row:
                self._awaiting_ack.pop(row[0], None)
                marks.append(("event", row[0]))
        if marks:
            self.core.submit_delivered(self.backend.name, marks)

    def _resend_unacked(self) -> None:
        """require_ack: an event PUBACKed but not acked within ack_timeout_s goes again."""
        if not self._awaiting_ack:
            return
        due = [seq for seq, t in self._awaiting_ack.items() if time.monotonic() - t > self.backend.ack_timeout_s]
        for seq in due:
            del self._awaiting_ack[seq]
            self._cursor["event"] = min(self._cursor["event"], seq - 1)

    def retry_now(self) -> None:
        """Skip the reconnect back-off and re-offer everything not in flight (any thread)."""
        self._retry_requested = True
        self._wake.set()

    def request_resync(self, source: str, have_seq: int) -> None:
        """Ask our back end for a snapshot (called from the core thread)."""
        self._control.put((f"{self.base}/requests", cbor2.dumps(
            {"v": 1, "type": "resync", "source": source, "have_seq": have_seq})))
        self._wake.set()

    def _send_control(self) -> None:
        while True:
            try:
                topic, payload = self._control.get_nowait()
            except queue.Empty:
                return
            self.client.publish(topic, payload, qos=1)

    def _publish_health(self) -> None:
        body = {"v": 1, "type": "health", "at_ms": int(time.time() * 1000), **self._identity(), **self.health()}
        self.client.publish(f"{self.base}/health", cbor2.dumps(body), qos=0)

    def _identity(self) -> dict:
        return {"port": self.cfg.lane.port_code, "lane": self.cfg.lane.lane_id, "agent_version": __version__}

    def _error(self, text: str) -> None:
        self.figures.error(text)

    # --- figures (any thread) ----------------------------------------------------------------------
    connected = property(lambda self: self.figures.connected)
    last_error = property(lambda self: self.figures.last_error)
    progress_mono = property(lambda self: self.figures.progress_mono)

    def snapshot(self) -> dict:
        return {"name": self.backend.name, "country": self.backend.country,
                "broker": f"{self.backend.host}:{self.backend.port}", "tls": self.backend.tls is not None,
                **self.figures.snapshot()}
