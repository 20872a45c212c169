"""The passage -> event step: decide, seal into the chain, owe it to every back end.

One closed passage is one transaction: the event, its lookout alerts, one delivery row
per back end (with the view of the event that back end may see: the outbox cuts the
payload from the stored event at send time) and its reads consumed.
A passage whose event cannot be built (a bug, not the store) is not retried forever:
its reads are consumed as "error" and an alarm goes out, so nothing vanishes silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from agent import trace
from agent.config import Config
from agent.core.guard import is_store_failure
from agent.lane import event as ev
from agent.lane.decide import alerts_for, decide
from agent.lane.disclosure import view_for
from agent.lane.lookup import CacheLookup
from agent.lane.passage import Closed
from agent.lane.trust import TRUSTED
from agent.store.writer import StoreWriter

log = logging.getLogger(__name__)


class Crossings:
    def __init__(self, cfg: Config, writer: StoreWriter, cache: CacheLookup, counters: Counter,
                 wall_ms: Callable[[], int]):
        self.cfg = cfg
        self.writer = writer
        self.cache = cache
        self.counters = counters
        self.wall_ms = wall_ms
        # the random referral rates by tier (DESIGN 2.7); changed only on the core thread (a command)
        self.random_rate = cfg.referral.random_rate
        self.random_rate_trusted = cfg.referral.random_rate_trusted
        self.alert_backends = [b.name for b in cfg.backends if "alerts" in b.share]

    def close_safely(self, closed: Closed, before: Callable[[], None] = lambda: None) -> None:
        """Write one closed passage; a store failure propagates (the loop retries it).
        `before` runs first in the same transaction (the journal's last counts of its reads)."""
        try:
            with self.writer.transaction():
                before()
                self._close(closed)
            if closed.passage is not None:
                trace.emit("committed", (closed.passage.last_t, closed.reason, *closed.passage.tags))
                self.writer.remember_head()
        except Exception as e:
            if is_store_failure(e):
                raise  # the store, not the passage: the loop retries it
            self.counters["event_failures"] += 1
            log.exception("could not build the event of a passage (%d reads)", len(closed.read_ids))
            with self.writer.transaction():
                self.writer.consume(closed.read_ids, "error")
                self.writer.add_alert(ev.alarm_alert("event_failed", self.wall_ms(), reads=len(closed.read_ids),
                                                     error=type(e).__name__), self.alert_backends, self.wall_ms())

    def _close(self, closed: Closed) -> None:
        if closed.passage is None:
            self.writer.consume(closed.read_ids, "stray")
            self.counters["stray_reads"] += len(closed.read_ids)
            return
        now_ms = self.wall_ms()
        cfg = self.cfg
        decision = decide(closed.passage, self.cache, cfg, now_ms, self.random_rate, self.random_rate_trusted)
        seq, head = self.writer.chain_state()
        event = ev.finish(decision.draft, cfg, seq, head)
        self.writer.add_event(event, {b.name: view_for(b, cfg.lane) for b in cfg.backends}, now_ms)
        for alert, to in alerts_for(event, decision.draft, cfg, now_ms):
            self.writer.add_alert(alert, to, now_ms)
        self.writer.consume(closed.read_ids, event["event_id"])
        self.counters["events"] += 1
        self.counters["referrals"] += decision.referral["refer"]
        self.counters[f"events_{decision.trust.tier}"] += 1
        log.info("passage closed (%s): seq %d, %d tags, findings %s, tier %s, refer %s", closed.reason, seq,
                 len(event["tags"]), ",".join(f["code"] for f in decision.findings) or "-",
                 decision.trust.tier, decision.referral["refer"])

    def set_random_rate(self, tier: str, rate: float) -> float:
        """Change one tier's random referral rate (a back end's command); returns the old one."""
        attr = "random_rate_trusted" if tier == TRUSTED else "random_rate"
        was = getattr(self, attr)
        setattr(self, attr, rate)
        return was
