"""Draining one back end's backlog: what to publish next, and what the back end has.

Alerts before events, both oldest first, within the in-flight window and the rate
limit. An item is handed to paho once; paho keeps it until its PUBACK, re-sending it
after a reconnect. A PUBACK (or, where `require_ack`, the back end's own ack) makes
the item delivered; the link hands those to the core, the one writer, which marks
them. An event PUBACKed but not acked within `ack_timeout_s` is offered again, under
the same event_id. Runs on the link's thread only.

The outbox is read only when it may hold something new (a commit woke the link, a
reconnect, a re-offer) and in batches of FETCH rows: the rows beyond the window wait in
memory for the PUBACKs that make room, so a drain costs one query per FETCH items rather
than one per PUBACK, and an idle link costs none.
"""

from __future__ import annotations

import time
from collections import deque

import paho.mqtt.client as mqtt

from agent import trace
from agent.config import BackendConfig, Config
from agent.handoff import ItemRef
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.sync.connection import INFLIGHT_WINDOW
from agent.sync.figures import LinkFigures

REFUSED_HOLD_S = 5.0  # after the broker refused an item (not authorised, quota)
TOPICS = (("alert", "alerts"), ("event", "events"))  # the order they are offered in
PUBLISH_FAILED_HOLD_S = 0.1
MARK_EVERY_S = 0.05  # PUBACKed items wait this long at most before the core marks them
MARK_BATCH = 256
FETCH = 256  # rows per outbox read: ~300 KB of payloads at most, held until published


class Drain:
    def __init__(self, cfg: Config, backend: BackendConfig, client: mqtt.Client, figures: LinkFigures):
        self.backend, self.client, self.figures = backend, client, figures
        base = cfg.base_topic(backend)
        self._topic = {item_type: f"{base}/{topic}" for item_type, topic in TOPICS}
        self.store_path = cfg.store.path
        self.inflight: dict[int, tuple[str, int]] = {}  # mid -> (item_type, item_id)
        self._inflight_items: set[tuple[str, int]] = set()  # the same items, to skip re-offered ones
        self._awaiting_ack: dict[int, float] = {}  # seq -> when PUBACKed (require_ack back ends)
        self._cursor = {"alert": 0, "event": 0}  # highest item handed to paho in this run
        self._fetched = {"alert": deque(), "event": deque()}  # read after the cursor, not yet published
        self._more = {"alert": True, "event": True}  # the outbox may hold rows after what was read
        self._delivered: list[ItemRef] = []  # PUBACKed, not yet handed to the core
        self._acks_unreported = 0  # PUBACKs of this turn, not yet in the figures
        self._marked_mono = 0.0  # when they were last handed over
        self._tokens = 0.0
        self._tokens_mono = time.monotonic()
        self._hold_until = 0.0
        self._outbox: Outbox | None = None  # opened on the link's thread, on first use

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(open_reader(self.store_path))
        return self._outbox

    def committed(self) -> None:
        """New rows may be in the outbox (a commit, a reconnect): read it at the next step."""
        self._more["alert"] = self._more["event"] = True

    def reoffer(self) -> None:
        """Offer everything undelivered again (items still in flight are skipped)."""
        self._hold_until = 0.0
        self._awaiting_ack.clear()
        for item_type in self._cursor:
            self._rewind(item_type, 0)

    def _rewind(self, item_type: str, cursor: int) -> None:
        if cursor < self._cursor[item_type]:
            self._cursor[item_type] = cursor
        self._fetched[item_type].clear()
        self._more[item_type] = True

    def due_in(self, now: float) -> float | None:
        """Seconds until a timer of the drain needs the thread (None: only a socket event or a
        wake-up can give it work): a held refusal, a rate-limited backlog, an ack timeout."""
        due = []
        waiting = any(self._fetched.values()) or any(self._more.values())
        if waiting and len(self.inflight) < INFLIGHT_WINDOW:
            if now < self._hold_until:
                due.append(self._hold_until - now)
            elif self.backend.max_rate > 0 and self._tokens < 1.0:
                due.append((1.0 - self._tokens) / self.backend.max_rate)
            else:
                due.append(0.0)
        if self._awaiting_ack:
            due.append(min(self._awaiting_ack.values()) + self.backend.ack_timeout_s - now)
        if self._delivered:
            due.append(self._marked_mono + MARK_EVERY_S - now)
        return max(0.0, min(due)) if due else None

    def step(self) -> None:
        """Hand paho the next undelivered items, alerts first, within window and rate."""
        now = time.monotonic()
        if now < self._hold_until:
            return
        room = INFLIGHT_WINDOW - len(self.inflight)
        if self.backend.max_rate > 0:
            # A bucket of a tenth of a second: over any second, at most max_rate (+10 %).
            burst = max(1.0, self.backend.max_rate / 10)
            self._tokens = min(burst, self._tokens + (now - self._tokens_mono) * self.backend.max_rate)
            self._tokens_mono = now
            room = min(room, int(self._tokens))
        for item_type, _ in TOPICS:
            fetched, topic = self._fetched[item_type], self._topic[item_type]
            while room > 0:
                if not fetched:
                    if not self._more[item_type]:
                        break
                    rows = self.outbox().pending(self.backend.name, item_type, self._cursor[item_type], FETCH)
                    self._more[item_type] = len(rows) == FETCH
                    fetched.extend(rows)
                    if not fetched:
                        break
                item_id, payload = fetched.popleft()
                self._cursor[item_type] = item_id
                if (item_type, item_id) in self._inflight_items:
                    continue  # re-offered while paho still holds it
                info = self.client.publish(topic, payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_QUEUE_SIZE):
                    self.figures.error(f"publish failed: {mqtt.error_string(info.rc)}")
                    self._rewind(item_type, item_id - 1)
                    self._hold_until = now + PUBLISH_FAILED_HOLD_S  # not a busy loop on a failing client
                    return
                self.inflight[info.mid] = (item_type, item_id)
                self._inflight_items.add((item_type, item_id))
                self.figures.published()
                self._tokens -= 1
                room -= 1

    def on_puback(self, client, userdata, mid, reason_code, properties) -> None:
        """paho's on_publish (the link's thread, inside loop())."""
        item = self.inflight.pop(mid, None)
        if item is None:
            return
        self._inflight_items.discard(item)
        item_type, item_id = item
        if reason_code.is_failure:
            # The broker refused this one (not authorised, quota): try it again later.
            self.figures.error(f"broker refused {item_type} {item_id}: {reason_code}")
            self._rewind(item_type, item_id - 1)
            self._hold_until = time.monotonic() + REFUSED_HOLD_S
            return
        self._acks_unreported += 1
        trace.emit("puback", (self.backend.name, item_type, item_id))
        if item_type == "event" and self.backend.require_ack:
            self._awaiting_ack[item_id] = time.monotonic()
        else:
            self._delivered.append((item_type, item_id))

    def take_delivered(self, now: float) -> tuple[ItemRef, ...]:
        """The items PUBACKed since the last hand-over, to be given to the core in one message:
        at most every MARK_EVERY_S, or once MARK_BATCH are waiting. One message per PUBACK made
        the core run a savepoint and an UPDATE per PUBACK while draining. Called every turn:
        the PUBACKs of the turn go into the figures here, together."""
        if self._acks_unreported:
            self.figures.acked(self._acks_unreported)
            self._acks_unreported = 0
        if not self._delivered or (len(self._delivered) < MARK_BATCH and now < self._marked_mono + MARK_EVERY_S):
            return ()
        items, self._delivered, self._marked_mono = tuple(self._delivered), [], now
        return items

    def take_acks(self, event_ids: list[str]) -> tuple[ItemRef, ...]:
        """A back end's ack (require_ack): the events it names that we hold are delivered."""
        if not event_ids:
            return ()
        seqs = self.outbox().seqs_of(event_ids)
        marks = []
        for event_id in event_ids:
            seq = seqs.get(event_id)
            if seq is not None:
                self._awaiting_ack.pop(seq, None)
                marks.append(("event", seq))
        return tuple(marks)

    def resend_unacked(self) -> None:
        """require_ack: an event PUBACKed but not acked within ack_timeout_s goes again."""
        if not self._awaiting_ack:
            return
        now = time.monotonic()
        due = [seq for seq, t in self._awaiting_ack.items() if now - t > self.backend.ack_timeout_s]
        for seq in due:
            del self._awaiting_ack[seq]
        if due:
            self._rewind("event", min(due) - 1)
