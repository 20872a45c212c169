"""100 unplug/replug cycles per dialect: no thread, file descriptor or memory growth.

In process, so /proc/self/fd and threading.active_count() see the session and the
simulator alike. Each cycle pulls the pty away (the session gets EIO, goes down, fails to
reopen the vanished link), plugs a new one in behind the same link (the session reopens it,
re-initialises, goes up). Memory is measured with tracemalloc, counting what code under
agent/ allocated and still holds, except through the simulator (its command log, bounded)
and the test's recorder keeps only counts; the traffic ring for `laneagent diag` is bounded
by design, so the session gets a small one and it is checked against its bound instead; the
agent's log level is raised for the run, as pytest keeps every log record it captures.
The R2000 run is in the fast suite; the other dialects' are marked slow (LANEAGENT_LONG=1).
"""

import gc
import logging
import os
import threading
import time
import tracemalloc

import pytest

from agent.diagnostics.traffic import TrafficRing, TrafficTap
from simulators.reader import SimulatedReader
from tests.reader_lane import open_session, scenario

CYCLES = 100
QUICK = {"backoff_initial_s": 0.005, "backoff_max_s": 0.02, "stable_s": 0.05, "read_timeout_s": 0.005}


def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def agent_bytes() -> int:
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/agent/*", all_frames=True),
                                                      tracemalloc.Filter(False, "*/simulators/*", all_frames=True)])
    return sum(stat.size for stat in snap.statistics("filename"))


class CountingLane:
    """The daemon's callbacks, keeping counts only (a list would grow with the test)."""

    name = "booth"

    def __init__(self):
        self.reports = 0
        self.states: dict[str, int] = {}

    def on_report(self, name, report, mono, wall_ms):
        self.reports += 1

    def on_state(self, name, state, detail):
        self.states[state] = self.states.get(state, 0) + 1

    def count(self, state: str) -> int:
        return self.states.get(state, 0)

    def n_reports(self) -> int:
        return self.reports


def soak(dialect: str, link: str, cycles: int = CYCLES) -> dict:
    options = {"boot_s": 0.0} if dialect != "thingmagic" else {}
    sim = SimulatedReader(dialect, scenario(), seed=1, link=link, **options).start()
    lane = CountingLane()
    # The daemon taps the port for `laneagent diag` (wrap_transport); its ring keeps up to 64 KiB
    # of the very bytes the codec and the port made, which reads as growth until it is full: a
    # small ring keeps this about leaks.
    session = open_session(dialect, link, lane, antennas=(1,),
                           wrap_transport=lambda t: TrafficTap(t, TrafficRing("soak", 128)), **QUICK)
    try:
        session.start()
        until(lambda: lane.n_reports() > 0, 5, "first reports")

        def cycle(k: int) -> None:  # k-th unplug; failed reopen attempts add "down" events, so watch the state
            sim.unplug()
            until(lambda: session.state == "down", 15, f"down #{k}")
            sim.replug()
            until(lambda: lane.count("up") >= k + 1, 15, f"up #{k}")

        for k in range(1, 6):  # warm up: every code path has run, every lazy import happened
            cycle(k)
        gc.collect()
        tracemalloc.start(8)
        fds, threads, mem = len(os.listdir("/proc/self/fd")), threading.active_count(), agent_bytes()
        started = time.monotonic()
        for k in range(6, 6 + cycles):
            cycle(k)
        elapsed = time.monotonic() - started
        n = lane.n_reports()
        until(lambda: lane.n_reports() > n, 15, "reports after the last replug")
        gc.collect()
        after = {"fds": len(os.listdir("/proc/self/fd")) - fds, "threads": threading.active_count() - threads,
                 "agent_bytes": agent_bytes() - mem, "seconds": elapsed, "reconnects": session.reconnects,
                 "unplugs": sim.unplugs, "ring_ok": session.transport.traffic.size <= session.transport.traffic.max_bytes}
        tracemalloc.stop()
        return after
    finally:
        session.stop()
        sim.stop()


def check(result: dict) -> None:
    assert result["fds"] == 0 and result["threads"] == 0, result
    assert result["agent_bytes"] < 64 * 1024, result  # noise of caches and counters, not 100 cycles' worth
    assert result["reconnects"] == CYCLES + 5 and result["unplugs"] == CYCLES + 5 and result["ring_ok"], result


def test_r2000_100_unplug_replug_cycles(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="agent")
    check(soak("r2000", str(tmp_path / "rfid")))


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["thingmagic", "alien", "chafon"])
def test_100_unplug_replug_cycles(tmp_path, caplog, dialect):
    caplog.set_level(logging.ERROR, logger="agent")
    check(soak(dialect, str(tmp_path / "rfid")))
