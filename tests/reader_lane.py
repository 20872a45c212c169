"""Helpers for reader tests: a recording lane, waiting, and sessions with test-sized timeouts.

Timeouts are shortened (silence 1 s, rounds given up after 0.25 s, commands after 0.5 s,
backoff from 0.1 s) so that each test runs in seconds; the ratios are the daemon's (a
silence timeout is several round timeouts), so the behaviour is the one it gets.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from agent.config import ReaderConfig
from agent.readers import registry
from simulators.scenario import Pass, Scenario, ScenarioTag

SILENCE_S = 1.0
FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "stable_s": 0.3, "round_timeout_s": 0.25,
        "command_timeout_s": 0.5}
DIALECTS = registry.names()  # every dialect the registry has: a new entry is tested at once
NEW_DIALECTS = tuple(d for d in DIALECTS if d != "thingmagic")
EPCS = ("E2801160600002054E2C1A2B", "3074257BF7194E4000001A85", "E28011606000020500000042")


def scenario(at_s: float = 0.0, dwell_s: float = 1e6, rate_hz: float = 20) -> Scenario:
    """Three tags: two on antenna 1, one on antenna 2."""
    tags = (ScenarioTag(EPCS[0], 1, -48.0), ScenarioTag(EPCS[1], 2, -55.0), ScenarioTag(EPCS[2], 1, -60.0))
    return Scenario(passes=(Pass(at_s, dwell_s, tags),), read_rate_hz=rate_hz, keepalive_s=0.2)


EMPTY = Scenario(keepalive_s=0.2)


class Lane:
    """What the daemon would see: the session's callbacks, recorded."""

    def __init__(self, name: str = "booth"):
        self.name = name
        self.reports: list = []
        self.states: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    def on_report(self, name, report, mono, wall_ms):
        assert name == self.name
        with self.lock:
            self.reports.append(report)

    def on_state(self, name, state, detail):
        with self.lock:
            self.states.append((state, detail, time.monotonic()))

    def count(self, state: str) -> int:
        with self.lock:
            return sum(1 for s, _, _ in self.states if s == state)

    def n_reports(self) -> int:
        with self.lock:
            return len(self.reports)

    def epcs(self) -> Counter:
        with self.lock:
            return Counter(r.epc for r in self.reports)

    def settled(self, quiet_s: float = 0.4, timeout: float = 5.0) -> None:
        """Wait until no report has arrived for `quiet_s`."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = self.n_reports()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.02)
        raise AssertionError("reports never settled")


def settle_all(lanes, quiet_s: float = 0.4, timeout: float = 5.0) -> None:
    """Wait until none of `lanes` has had a report for `quiet_s`."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = [lane.n_reports() for lane in lanes]
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.02)
    raise AssertionError("reports never settled")


def open_session(dialect: str, url: str, lane: Lane, antennas=(1, 2), silence_s: float = SILENCE_S, **options):
    cfg = ReaderConfig(name=lane.name, dialect=dialect, url=url, antennas=antennas, silence_timeout_s=silence_s)
    return registry.open_session(cfg, lane.on_report, lane.on_state, **{**FAST, **options})
