"""One MQTT link to one back end: drain its backlog, take its downlink, say who we are.

Each link runs on its own thread, which alone drives its paho client (`loop()`, so the
callbacks run there too) and its read connection to the store. The jobs are split:
`Connection` (client set-up, connect, back-off, birth and will), `Drain` (outbox cursor,
in-flight window, rate, require_ack), `Downlink` (topics to plain messages) and
`LinkFigures` (what other threads may read). The link never calls the core: it puts
`agent.handoff` messages into the `submit` it was given. Its public methods are safe
from any thread; other threads reach its thread through a `Wakeup` and a Queue only.

The thread sleeps until something happens (`netloop.pump`): the broker's socket (a PUBACK,
a downlink message), a wake-up from another thread (a commit, a control message, a retry,
stop) or a timer the link needs (keep-alive, rate limit, ack timeout, health, CONNACK
timeout). It turns at least every IDLE_WAIT_S so the watchdog sees it alive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import cbor2

from agent.config import BackendConfig, Config
from agent.errors import StoreError
from agent.handoff import Delivered, Submit
from agent.store.reader import StoreReader
from agent.sync.connection import Connection
from agent.sync.downlink import Downlink
from agent.sync.drain import Drain
from agent.sync.figures import LinkFigures
from agent.sync.netloop import Wakeup, pump

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 30.0
IDLE_WAIT_S = 2.0  # the longest sleep: well inside the watchdog's LINK_STALL_S, a fraction of keep-alive
CONNECTING_WAIT_S = 0.2  # while a CONNACK or a back-off is awaited: its timers are short


class BackendLink:
    def __init__(self, cfg: Config, backend: BackendConfig, submit: Submit, *,
                 health: Callable[[], dict] = dict, birth: Callable[[], dict] = dict):
        self.backend = backend
        self._submit, self._health = submit, health
        self._base = cfg.base_topic(backend)
        self._store_path = cfg.store.path
        self._figures = LinkFigures(backend.name)
        self._control: queue.Queue = queue.Queue()  # (topic, payload) asked for by other threads
        self._wake = Wakeup()
        self._retry = threading.Event()
        self._stop = threading.Event()
        self._downlink = Downlink(cfg, backend, submit, self._take_acks)
        self.connection = Connection(cfg, backend, self._figures, birth=birth,
                                     subscriptions=self._downlink.subscriptions(), on_up=self._wake.set,
                                     on_new_session=self._on_new_session,
                                     in_flight=lambda: len(self._drain.inflight), stopping=self._stop.is_set)
        self._drain = Drain(cfg, backend, self.connection.client, self._figures)
        self.connection.client.on_publish = self._drain.on_puback
        self.connection.client.on_message = self._downlink.on_message
        self._thread = threading.Thread(target=self._run, name=f"link-{backend.name}", daemon=True)

    # --- public, safe from any thread -----------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline status), disconnect, join."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Something was committed: look at the outbox now rather than at the next turn."""
        self._wake.set()

    def retry_now(self) -> None:
        """Skip the reconnect back-off and re-offer everything not in flight."""
        self._retry.set()
        self._wake.set()

    def request_resync(self, source: str, have_seq: int) -> None:
        """Ask our back end for a snapshot (B/requests)."""
        self._send(f"{self._base}/requests", {"v": 1, "type": "resync", "source": source, "have_seq": have_seq})

    def send_command_result(self, cmd_id: str, command: str, result: dict) -> None:
        """Answer a command on B/cmd/result; `result` is {"ok": True, "result": ...} or
        {"ok": False, "error": "..."}."""
        log.info("back end %s: command %s (%s): %s", self.backend.name, command, cmd_id,
                 "done" if result.get("ok") else result.get("error"))
        self._send(f"{self._base}/cmd/result", {"v": 1, "type": "cmd_result", "id": cmd_id, "command": command,
                                                 **result})

    def snapshot(self) -> dict:
        backend = self.backend
        broker = ",".join(self.connection.ring.name(i) for i in range(len(backend.nodes)))
        return {"name": backend.name, "country": backend.country, "broker": broker,
                "tls": backend.tls is not None, **self._figures.snapshot()}

    connected = property(lambda self: self._figures.connected)
    last_error = property(lambda self: self._figures.last_error)
    progress_mono = property(lambda self: self._figures.progress_mono)

    def _send(self, topic: str, body: dict) -> None:
        self._control.put((topic, cbor2.dumps(body, default=str)))
        self._wake.set()

    # --- the loop (this link's thread) ------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            delivered = self._drain.take_delivered(now=float("inf"))  # what is PUBACKed is not sent again
            if delivered:
                self._submit(Delivered(self.backend.name, delivered))
            self.connection.goodbye()
            self._wake.close()

    def _loop(self) -> None:
        connection, drain, client = self.connection, self._drain, self.connection.client
        next_health = time.monotonic() + HEALTH_EVERY_S
        timeout = 0.0
        while not self._stop.is_set():
            self._figures.turn(len(drain.inflight))
            if self._retry.is_set():
                self._retry.clear()
                connection.skip_backoff()
                drain.reoffer()
            if not connection.ready():  # backing off: only a wake-up or the next try ends the wait
                self._wake.wait(min(IDLE_WAIT_S, connection.wait_s()))
                if self._wake.take():
                    drain.committed()
                continue
            if pump(client, self._wake, timeout) and self._wake.take():
                # taken before the outbox is read: a later commit wakes the next turn
                drain.committed()
            delivered = drain.take_delivered(now=time.monotonic())
            if delivered:
                self._submit(Delivered(self.backend.name, delivered))
            if connection.ring.recheck(connection.up):
                self._figures.nodes(connection.ring.name() if connection.up else None,
                                    connection.ring.unreachable_names())
            now = time.monotonic()
            if not connection.up:
                timeout = CONNECTING_WAIT_S
                continue
            self._send_control()
            drain.step()
            drain.resend_unacked()
            if now >= next_health:
                next_health = now + HEALTH_EVERY_S
                self._publish_health()
            now = time.monotonic()
            due = drain.due_in(now)  # (its marks too: PUBACKs are handed to the core in batches)
            timeout = min(IDLE_WAIT_S, self.backend.keepalive_s / 4, next_health - now,
                          IDLE_WAIT_S if due is None else due)

    def _on_new_session(self) -> None:
        """The broker has no session for us. If our back end's cache messages ever reached us, one
        existed and was lost (expired, or held by a dead node's classic queue), and with it
        whatever was queued for us: ask for a resync rather than wait for the next message's gap."""
        try:
            with StoreReader(self._store_path) as store:
                have = next((s["seq"] for s in store.cache_sources() if s["source"] == self.backend.country), 0)
        except StoreError as e:
            log.warning("back end %s: new broker session; cannot read the cache seq: %s", self.backend.name, e)
            return
        if have:
            log.warning("back end %s: the broker kept no session for us; asking for a resync after seq %d",
                        self.backend.name, have)
            self.request_resync(self.backend.country, have)

    def _take_acks(self, event_ids: list[str]) -> None:
        marks = self._drain.take_acks(event_ids)
        if marks:
            self._submit(Delivered(self.backend.name, marks))

    def _send_control(self) -> None:
        if self._control.empty():  # most turns: no exception raised and caught each time
            return
        while True:
            try:
                topic, payload = self._control.get_nowait()
            except queue.Empty:
                return
            self.connection.client.publish(topic, payload, qos=1)

    def _publish_health(self) -> None:
        # every_s: the back end's liveness clock for this lane. Neither the retained status nor
        # the will can be relied on with a cluster (a will dies with its node on RabbitMQ).
        body = {"v": 1, "type": "health", "at_ms": int(time.time() * 1000), "every_s": HEALTH_EVERY_S,
                **self.connection.identity,
                **self._health()}
        self.connection.client.publish(f"{self._base}/health", cbor2.dumps(body), qos=0)
