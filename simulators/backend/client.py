"""One country's back end, played against its MQTT broker: pushes the cache, receives and checks a lane's output.

`Backend` connects with a stable client id and a persistent session (MQTT 5: clean
start off, a 7-day session expiry; 3.1.1: clean session off), so crossings published
while it was away are waiting when it returns. It publishes its records as DESIGN 2.6
cache messages with its own rising `seq`: a snapshot too large for one message goes in
parts (parts.py), and it keeps a bounded history of what it sent, so that a lane's
resync is answered with the messages after its `have_seq` while they are all still
there, and with a fresh snapshot otherwise. It sends a snapshot on connect only the first
time (nothing sent yet): a lane's persistent session delivers what the lane missed, so
a reconnect re-sends nothing ("always" restores the old snapshot on every connect,
"never" leaves it to the caller). It subscribes to every lane of its port, verifies
each crossing with the independent `ChainVerifier`, and, when asked to, acknowledges
crossings in small batches on `B/acks`. paho's network thread runs the callbacks; all
state sits behind one lock, and the accessors return copies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable

import cbor2
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.backend.parts import History, build, cut, encode_record
from simulators.backend.render import TOPIC_KINDS, Received
from simulators.backend.signing import sign1
from simulators.backend.verify import ChainVerifier

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # as the agent's own sessions (DESIGN 2.3)
ACK_FLUSH_S = 0.1  # acks wait this long to travel in batches, as a real back end's would
ACK_BATCH = 500
MAX_MESSAGE_KB = 1024  # the agent's default store.max_message_kb: every message stays under it
HISTORY_MESSAGES = 1_000  # the resync history: this many messages at most ...
HISTORY_MB = 64  # ... and this many MB (a port-sized snapshot's early parts do not fit: it is then resent whole)
SNAPSHOT_ON_CONNECT = ("first", "always", "never")
KEEP_HEALTH = 1_000  # health is periodic: keep the recent ones only


class Backend:
    """A back-end simulator for one country on one broker, usable from tests, the demo and the CLI."""

    def __init__(self, name: str, country: str, host: str = "127.0.0.1", port: int = 1883,
                 topic_prefix: str = "border", port_code: str = "0901", records: Iterable[dict] = (),
                 ack: bool = False, mqtt_version: str = "5",
                 on_event: Callable[[Received], None] | None = None,
                 on_message: Callable[[Received], None] | None = None,
                 expect_share: Iterable[str] | None = None, snapshot_on_connect: str | bool = "first",
                 first_seq: int | None = 1, seq_file: str | os.PathLike | None = None,
                 keepalive_s: int = 10, client_id: str | None = None,
                 signing_key: Ed25519PrivateKey | None = None, max_message_kb: int = MAX_MESSAGE_KB,
                 history_messages: int = HISTORY_MESSAGES, history_mb: float = HISTORY_MB):
        if mqtt_version not in ("5", "3.1.1"):
            raise ValueError(f"mqtt_version must be '5' or '3.1.1', not {mqtt_version!r}")
        if isinstance(snapshot_on_connect, bool):  # the older form: True = every connect, False = never
            snapshot_on_connect = "always" if snapshot_on_connect else "never"
        if snapshot_on_connect not in SNAPSHOT_ON_CONNECT:
            raise ValueError(f"snapshot_on_connect must be one of {SNAPSHOT_ON_CONNECT}, not {snapshot_on_connect!r}")
        self.name, self.country, self.host, self.port = name, country, host, port
        self.topic_prefix, self.port_code, self.ack, self.mqtt_version = topic_prefix, port_code, ack, mqtt_version
        self.on_event, self.on_message = on_event, on_message
        self.snapshot_on_connect, self.keepalive_s = snapshot_on_connect, keepalive_s
        self.client_id = client_id or f"backend-{name}-{port_code}"
        self.signing_key = signing_key  # with it, every downlink message goes out as a COSE_Sign1
        self.cache_topic = f"{topic_prefix}/{port_code}/cache"
        self.max_message_bytes = max_message_kb * 1024
        self._records = {(r["kind"], r["id"]): encode_record(r) for r in records}  # kept encoded: sized once
        self._history = History(history_messages, int(history_mb * 1024 * 1024))
        self._resyncs: list[dict] = []
        self._seq_file = Path(seq_file) if seq_file else None
        self._cache_seq = int(self._seq_file.read_text()) if self._seq_file and self._seq_file.exists() else 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._publish_lock = threading.RLock()  # a seq and its message go out together, in order
        self._verifier = ChainVerifier(country, expect_share, first_seq)
        self._alerts: list[dict] = []
        self._statuses: list[dict] = []
        self._last_status: dict[str, dict] = {}
        self._health: deque[dict] = deque(maxlen=KEEP_HEALTH)
        self._requests: list[dict] = []
        self._cmd_results: list[dict] = []
        self._problems: list[str] = []
        self._pending_acks: dict[str, list[str]] = {}
        self._acks_sent: list[str] = []
        self._connections = 0
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._client: mqtt.Client | None = None
        self._ack_thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self, timeout: float | None = 10.0) -> "Backend":
        """Connect (retrying in the background) and, unless `timeout` is None, wait until subscribed."""
        v5 = self.mqtt_version == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_subscribe, client.on_message = self._on_subscribe, self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=4)
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            client.connect_async(self.host, self.port, self.keepalive_s, clean_start=False, properties=properties)
        else:
            client.connect_async(self.host, self.port, self.keepalive_s)
        self._client = client
        self._stopping.clear()
        client.loop_start()
        if self.ack:
            self._ack_thread = threading.Thread(target=self._ack_loop, name=f"{self.name}-acks", daemon=True)
            self._ack_thread.start()
        if timeout is not None and not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"{self.name}: not connected to {self.host}:{self.port} within {timeout}s")
        return self

    def stop(self) -> None:
        """Send the last acks and disconnect; the broker keeps the session for the next start."""
        self._stopping.set()
        if self._ack_thread:
            self._ack_thread.join(2)
            self._ack_thread = None
        if self._client:
            self._flush_acks()
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._ready.clear()

    def __enter__(self) -> "Backend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- downlink: the cache ------------------------------------------------------------

    def publish_cache(self, op: str, records: Iterable[dict]) -> list[int]:
        """Publish cache messages (QoS 1) and remember the change for later snapshots.

        A snapshot too large for one message goes in parts (`part`/`parts`, consecutive
        seqs); a large upsert or delete goes as several messages of the same op. Every
        message stays under `max_message_kb`, cut by encoded size. Returns the seqs used.
        """
        if op not in ("snapshot", "upsert", "delete"):
            raise ValueError(f"op must be snapshot, upsert or delete, not {op!r}")
        if op == "delete":
            records = [{"kind": r["kind"], "id": r["id"]} for r in records]
        encoded = {(r["kind"], r["id"]): encode_record(r) for r in records}
        with self._publish_lock:
            if op == "snapshot":
                self._records = encoded
                return self._publish_snapshot()
            if op == "upsert":
                self._records.update(encoded)
            else:
                for key in encoded:
                    self._records.pop(key, None)
            runs = cut(encoded.values(), self.max_message_bytes)
            return [self._publish_cache_message({"op": op}, run) for run in runs]

    def publish_snapshot(self) -> list[int]:
        """Everything this back end holds, as a fresh snapshot (in parts when large)."""
        with self._publish_lock:
            return self._publish_snapshot()

    def _publish_snapshot(self) -> list[int]:
        runs = cut(self._records.values(), self.max_message_bytes)
        if len(runs) == 1:  # one part of one: the plain form, no part/parts
            return [self._publish_cache_message({"op": "snapshot"}, runs[0])]
        return [self._publish_cache_message({"op": "snapshot", "part": i, "parts": len(runs)}, run)
                for i, run in enumerate(runs, 1)]

    def _publish_cache_message(self, fields: dict, records: list[bytes]) -> int:
        if self._client is None:
            raise RuntimeError(f"{self.name}: start() the back end before publishing")
        seq = self._cache_seq + 1
        payload = self._seal_encoded(build({"v": 1, "type": "cache", "source": self.country, "seq": seq, **fields},
                                           records))
        if len(payload) > self.max_message_bytes:  # cut() reserves room for this; a bug if it happens
            raise AssertionError(f"cache seq {seq}: {len(payload)} bytes exceed {self.max_message_bytes}")
        self._cache_seq = seq
        if self._seq_file:
            tmp = self._seq_file.with_suffix(".tmp")
            tmp.write_text(str(self._cache_seq))
            os.replace(tmp, self._seq_file)  # atomic: a crash never leaves a torn seq
        # paho queues QoS 1 messages while disconnected and sends them on reconnect
        self._client.publish(self.cache_topic, payload, qos=1)
        self._history.add(seq, payload, fields.get("part"))
        log.info("%s: cache %s seq %d%s, %d records, %d bytes", self.name, fields["op"], seq,
                 f" part {fields['part']}/{fields['parts']}" if "part" in fields else "", len(records), len(payload))
        return seq

    # --- paho callbacks (network thread) ------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", self.name, reason_code)
            return
        with self._lock:
            self._connections += 1
        client.subscribe([(f"{self.topic_prefix}/{self.port_code}/+/{kind}", 1) for kind in TOPIC_KINDS])
        # Only when nothing was ever sent ("first"): what a lane missed while it was away
        # waits in its persistent session, and a gap it sees is answered by its resync.
        if self.snapshot_on_connect == "always" or (self.snapshot_on_connect == "first" and self._cache_seq == 0):
            self.publish_snapshot()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            self._problem(f"subscription refused: {failed}")
        with self._lock:
            self._ready.set()
            self._changed.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._ready.clear()
            self._changed.notify_all()
        if not self._stopping.is_set():
            log.warning("%s: disconnected (%s); reconnecting", self.name, reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/", 3)
        if len(parts) < 4 or parts[3] not in TOPIC_KINDS:
            return
        lane, channel = parts[2], parts[3]
        if not msg.payload:
            return  # a cleared retained status
        try:
            payload = cbor2.loads(msg.payload)
        except Exception as e:  # cbor2 raises several types on bad input
            self._problem(f"{msg.topic}: payload is not CBOR ({e})")
            return
        received = self._record(msg.topic, lane, channel, payload)
        if channel == "requests" and isinstance(payload, dict):
            self._answer_request(payload)
        for callback in (self.on_event if channel == "events" else None, self.on_message):
            if callback:
                try:
                    callback(received)
                except Exception:  # a caller's bug must not kill paho's network thread
                    log.exception("%s: callback failed", self.name)

    def _record(self, topic: str, lane: str, channel: str, payload) -> Received:
        now_ms = int(time.time() * 1000)
        with self._lock:
            duplicate, problems = False, ()
            if channel == "events":
                verdict = self._verifier.check(payload, topic_lane=lane)
                duplicate, problems = verdict.duplicate, verdict.problems
                if self.ack and isinstance(payload, dict) and isinstance(payload.get("event_id"), str):
                    self._pending_acks.setdefault(lane, []).append(payload["event_id"])
            elif not isinstance(payload, dict) or payload.get("v") != 1 or "type" not in payload:
                problems = (f"{topic}: not a map with v: 1 and a type",)
                self._problems += problems
            elif channel == "alerts":
                self._alerts.append(payload)
            elif channel == "status":
                self._statuses.append(payload)
                self._last_status[lane] = payload
            elif channel == "health":
                self._health.append(payload)
            elif channel == "requests":
                self._requests.append(payload)
            else:
                self._cmd_results.append(payload)
            self._changed.notify_all()
        return Received(topic, lane, channel, payload, now_ms, duplicate, tuple(problems))

    def _answer_request(self, request: dict) -> None:
        if request.get("type") != "resync" or request.get("source") != self.country:
            return
        have = request.get("have_seq")
        if not isinstance(have, int) or isinstance(have, bool):
            have = -1  # no usable have_seq: only a snapshot can answer
        with self._publish_lock:
            later = self._history.after(have, self._cache_seq)
            if later is None:
                if have > self._cache_seq:
                    self._cache_seq = have  # a lane ahead of us (we restarted): our next seq must beat it
                seqs = self._publish_snapshot()
                answer = "snapshot"
            else:
                for sent in later:  # the very bytes sent before: same seq, same signature
                    self._client.publish(self.cache_topic, sent.payload, qos=1)
                seqs = [sent.seq for sent in later]
                answer = "messages"
            with self._lock:
                self._resyncs.append({"have_seq": request.get("have_seq"), "answer": answer, "seqs": seqs})
        log.info("%s: resync from have_seq %s answered with %s, seq %d..%d", self.name, request.get("have_seq"),
                 answer, seqs[0], seqs[-1])

    # --- acks ----------------------------------------------------------------------------

    def _ack_loop(self) -> None:
        while not self._stopping.wait(ACK_FLUSH_S):
            self._flush_acks()

    def _seal(self, message: dict) -> bytes:
        return self._seal_encoded(cbor2.dumps(message))

    def _seal_encoded(self, payload: bytes) -> bytes:
        return sign1(payload, self.signing_key) if self.signing_key else payload

    def _flush_acks(self) -> None:
        with self._lock:
            pending, self._pending_acks = self._pending_acks, {}
        for lane, event_ids in pending.items():
            for i in range(0, len(event_ids), ACK_BATCH):
                batch = event_ids[i:i + ACK_BATCH]
                self._client.publish(f"{self.topic_prefix}/{self.port_code}/{lane}/acks",
                                     self._seal({"v": 1, "type": "ack", "event_ids": batch}), qos=1)
                with self._lock:
                    self._acks_sent += batch

    # --- what was received ----------------------------------------------------------------

    def _problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)
        log.warning("%s: %s", self.name, text)

    def problems(self) -> list[str]:
        """Chain breaks, digest and hash mismatches, seq gaps, unexpected sections, bad payloads."""
        with self._lock:
            return self._problems + self._verifier.problems()

    def wait_for(self, predicate: Callable[["Backend"], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def wait_for_events(self, n: int, timeout: float) -> bool:
        """True once `n` distinct crossings have arrived (duplicates do not count)."""
        return self.wait_for(lambda b: len(b._verifier.events) >= n, timeout)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def connections(self) -> int:
        """Successful connects so far: 2 after one reconnect."""
        with self._lock:
            return self._connections

    @property
    def events(self) -> dict[str, dict]:
        """event_id -> the first payload received with it."""
        with self._lock:
            return dict(self._verifier.events)

    @property
    def duplicates(self) -> int:
        with self._lock:
            return self._verifier.duplicates

    @property
    def seqs(self) -> dict[str, list[int]]:
        with self._lock:
            return self._verifier.seqs()

    @property
    def cache_seq(self) -> int:
        return self._cache_seq

    @property
    def records(self) -> list[dict]:
        """What this back end holds now: its next snapshot."""
        with self._publish_lock:
            return [cbor2.loads(r) for r in self._records.values()]

    @property
    def record_count(self) -> int:
        with self._publish_lock:
            return len(self._records)

    @property
    def resyncs(self) -> list[dict]:
        """Resync requests answered: {have_seq, answer: "messages" | "snapshot", seqs: [...]}, oldest first."""
        with self._lock:
            return [dict(r) for r in self._resyncs]

    @property
    def history_span(self) -> tuple[int, int] | None:
        """(oldest, newest) seq a resync can still be answered from, or None."""
        with self._publish_lock:
            return self._history.span

    def _copy(self, items) -> list[dict]:
        with self._lock:
            return list(items)

    alerts = property(lambda self: self._copy(self._alerts))
    statuses = property(lambda self: self._copy(self._statuses))
    health = property(lambda self: self._copy(self._health))
    requests = property(lambda self: self._copy(self._requests))
    cmd_results = property(lambda self: self._copy(self._cmd_results))
    acks_sent = property(lambda self: self._copy(self._acks_sent))

    def last_status(self, lane: str) -> dict | None:
        """The lane's latest status message (birth or will), or None."""
        with self._lock:
            return self._last_status.get(lane)
