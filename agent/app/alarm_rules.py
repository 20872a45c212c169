"""When the lane raises and clears its alarms (run once a second on the main thread).

Clock jumps and an invalid clock, a store that cannot write, certificates expired or
unreadable, a backlog over its disk budget, a back end down for more than
BACKEND_ALARM_AFTER_S, a reader down (through `reader_state`, called by the sessions).
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

from agent.app.alarms import Alarms
from agent.app.store_view import ThreadReaders
from agent.clock import ClockWatch
from agent.config import Config
from agent.core import LaneCore
from agent.sync.tls import CertificateWatch

log = logging.getLogger(__name__)

BACKEND_ALARM_AFTER_S = 10.0
BUDGET_EVERY_S = 10.0
CLOCK_ALARM_FOR_S = 600.0  # a clock jump stays an alarm this long, so a technician sees it


class AlarmRules:
    def __init__(self, cfg: Config, alarms: Alarms, core: LaneCore, links: Sequence):
        self.cfg = cfg
        self.alarms = alarms
        self.core = core
        self.links = links
        self.clock = ClockWatch()
        self.certificates = CertificateWatch(cfg)  # re-reads the TLS certificates hourly
        self.backlog_bytes = 0
        self._readers = ThreadReaders(cfg.store.path)  # kept open: a fresh connection writes to -shm
        self._last_jump_mono: float | None = None
        self._next_budget_mono = 0.0
        self._down_since: dict[str, float] = {}  # back end -> when it was first seen down
        self._dropped: set[str] = set()  # sources whose staged snapshot was dropped

    def reader_state(self, name: str, state: str, detail: str) -> None:
        """A session's state change (any thread): down is an alarm, up clears it."""
        if state in ("down", "up"):
            self.alarms.set(f"reader_down:{name}", state == "down", detail)

    def update(self) -> None:
        now = time.monotonic()
        self._clock(now)
        self.alarms.set("store_unwritable", self.core.store_error is not None, self.core.store_error or "")
        self.certificates.update(self.alarms.raise_, self.alarms.clear)
        if now >= self._next_budget_mono:
            self._next_budget_mono = now + BUDGET_EVERY_S
            self._budget()
        self._cache_snapshots()
        for link in self.links:
            name = link.backend.name
            if link.connected:
                self._down_since.pop(name, None)
                self.alarms.clear(f"backend_down:{name}")
            elif now - self._down_since.setdefault(name, now) >= BACKEND_ALARM_AFTER_S:
                self.alarms.raise_(f"backend_down:{name}", link.last_error or "not connected")

    def _cache_snapshots(self) -> None:
        """A dropped staged snapshot is an alarm (with its cause) until the next one swaps in."""
        dropped = self.core.figures().get("cache", {}).get("dropped", {})
        for source, d in dropped.items():
            self.alarms.raise_(f"cache_snapshot_dropped:{source}", f"cache snapshot from {source} dropped after "
                               f"{d['parts_received']} of {d['parts']} parts: {d['cause']}; the old records stay "
                               "in use and a resync was asked for")
        for source in self._dropped - dropped.keys():
            self.alarms.clear(f"cache_snapshot_dropped:{source}")
        self._dropped = set(dropped)

    def _clock(self, now: float) -> None:
        jump = self.clock.observe()
        if jump is not None:
            log.warning("wall clock jumped by %+.1f s (NTP step or RTC reset); seq and passages are unaffected", jump)
            self._last_jump_mono = now
            self.alarms.clear("clock_jump")  # raise afresh with this jump's size
            self.alarms.raise_("clock_jump", f"wall clock jumped by {jump:+.1f} s")
        elif self._last_jump_mono is not None and now - self._last_jump_mono > CLOCK_ALARM_FOR_S:
            self.alarms.clear("clock_jump")
            self._last_jump_mono = None
        self.alarms.set("clock_invalid", not ClockWatch.sane(),
                        "wall clock is before 2020: set the time (timedatectl, NTP)")

    def _budget(self) -> None:
        """Alarm (and keep working) when the undelivered backlog exceeds store.max_queue_mb."""
        try:
            self.backlog_bytes = self._readers.get().backlog_bytes()
        except Exception as e:  # a figure for an alarm; never let it stop the daemon
            self._readers.drop()
            log.warning("cannot measure the backlog: %s", e)
            return
        budget = self.cfg.store.max_queue_mb
        self.alarms.set("backlog_over_budget", self.backlog_bytes > budget * 1024 * 1024,
                        f"undelivered backlog {self.backlog_bytes / 1e6:.1f} MB exceeds store.max_queue_mb ({budget} MB)")
