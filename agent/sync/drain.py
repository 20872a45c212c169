"""Draining one back end's backlog: what to publish next, and what the back end has.

Alerts before events, both oldest first, within the in-flight window and the rate
limit. An item is handed to paho once; paho keeps it until its PUBACK, re-sending it
after a reconnect. A PUBACK (or, where `require_ack`, the back end's own ack) makes
the item delivered; the link hands those to the core, the one writer, which marks
them. An event PUBACKed but not acked within `ack_timeout_s` is offered again, under
the same event_id. Runs on the link's thread only.
"""

from __future__ import annotations

import time

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


class Drain:
    def __init__(self, cfg: Config, backend: BackendConfig, client: mqtt.Client, figures: LinkFigures):
        self.backend, self.client, self.figures = backend, client, figures
        self.base = cfg.base_topic(backend)
        self.store_path = cfg.store.path
        self.inflight: dict[int, tuple[str, int]] = {}  # mid -> (item_type, item_id)
        self._awaiting_ack: dict[int, float] = {}  # seq -> when PUBACKed (require_ack back ends)
        self._cursor = {"alert": 0, "event": 0}  # highest item handed to paho in this run
        self._delivered: list[ItemRef] = []  # since the last take_delivered()
        self._tokens = 0.0
        self._tokens_mono = time.monotonic()
        self._hold_until = 0.0
        self._outbox: Outbox | None = None  # opened on the link's thread, on first use

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(open_reader(self.store_path))
        return self._outbox

    def reoffer(self) -> None:
        """Offer everything undelivered again (items still in flight are skipped)."""
        self._hold_until = 0.0
        self._awaiting_ack.clear()
        self._cursor = {"alert": 0, "event": 0}

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
        if room <= 0:
            return
        outbox = self.outbox()
        for item_type, topic in TOPICS:
            if room <= 0:
                break
            in_flight = set(self.inflight.values())
            for item_id, payload in outbox.pending(self.backend.name, item_type, self._cursor[item_type], room):
                if (item_type, item_id) in in_flight:
                    self._cursor[item_type] = item_id
                    continue
                info = self.client.publish(f"{self.base}/{topic}", payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_QUEUE_SIZE):
                    self.figures.error(f"publish failed: {mqtt.error_string(info.rc)}")
                    return
                self.inflight[info.mid] = (item_type, item_id)
                self._cursor[item_type] = item_id
                self.figures.published()
                self._tokens -= 1
                room -= 1

    def on_puback(self, client, userdata, mid, reason_code, properties) -> None:
        """paho's on_publish (the link's thread, inside loop())."""
        item = self.inflight.pop(mid, None)
        if item is None:
            return
        item_type, item_id = item
        if reason_code.is_failure:
            # The broker refused this one (not authorised, quota): try it again later.
            self.figures.error(f"broker refused {item_type} {item_id}: {reason_code}")
            self._cursor[item_type] = min(self._cursor[item_type], item_id - 1)
            self._hold_until = time.monotonic() + REFUSED_HOLD_S
            return
        self.figures.acked()
        trace.emit("puback", (self.backend.name, item_type, item_id))
        if item_type == "event" and self.backend.require_ack:
            self._awaiting_ack[item_id] = time.monotonic()
        else:
            self._delivered.append((item_type, item_id))

    def take_delivered(self) -> tuple[ItemRef, ...]:
        """The items PUBACKed since the last call, to be handed to the core in one message."""
        items, self._delivered = tuple(self._delivered), []
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
            self._cursor["event"] = min(self._cursor["event"], seq - 1)
