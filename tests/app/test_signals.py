"""Signals at the real daemon: a storm of them never wedges it, and SIGTERM still stops it.

The handlers run on the main thread between any two bytecodes. One that took a lock
(`threading.Event.set`) deadlocked against the main loop's own `Event.wait` when the
signal landed inside it: the bench once saw a SIGTERM that never stopped the daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess

from tests.helpers import ROOT, agent_cmd, wait_for
from tests.lane_harness import write_config


def test_a_storm_of_signals_then_sigterm_stops_the_daemon(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    config = write_config(tmp_path, None, ca.port, us.port)
    status = tmp_path / "state" / "status.json"
    with open(tmp_path / "agent.log", "ab") as log:
        proc = subprocess.Popen(agent_cmd(config), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(status.exists, 30, "the daemon running (its status file)")
        for i in range(3000):  # `laneagent diag` and `queue retry` asked over and over
            os.kill(proc.pid, signal.SIGUSR2 if i % 2 else signal.SIGUSR1)
        assert proc.poll() is None, "the daemon died of the signals"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "stopped" in (tmp_path / "agent.log").read_text()
