"""The integrity check at the real daemon: READY first, the full check beside the lane; a
corrupt file makes the daemon stop with an error, and the restart (systemd's) moves it aside."""

from __future__ import annotations

import os
import signal
import subprocess

from agent.store import integrity
from agent.store.writer import StoreWriter
from tests.helpers import ROOT, agent_cmd, wait_for
from tests.lane_harness import write_config
from tests.store.test_recovery import add_events, corrupt_the_middle


def test_a_corrupt_file_stops_the_daemon_and_the_restart_moves_it_aside(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    config = write_config(tmp_path, None, ca.port, us.port)
    db = tmp_path / "state" / "agent.db"
    w = StoreWriter(str(db))
    add_events(w, 300)
    w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    w.close()
    corrupt_the_middle(db)

    log_path = tmp_path / "agent.log"
    with open(log_path, "ab") as log:
        first = subprocess.Popen(agent_cmd(config), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        assert first.wait(60) == 1, "a corrupt database must stop the daemon with an error"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    text = log_path.read_text()
    assert "integrity check failed" in text and "database_corrupt" in text
    assert integrity.check_at_start(str(db))

    status = tmp_path / "state" / "status.json"
    with open(log_path, "ab") as log:
        second = subprocess.Popen(agent_cmd(config), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: "database_recovered" in status.read_text() if status.exists() else False, 30,
                 "the restarted daemon reporting the recovery")
        assert second.poll() is None
        os.kill(second.pid, signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    assert not integrity.check_at_start(str(db))
    assert [p for p in os.listdir(db.parent) if ".corrupt-" in p], "the corrupt file kept aside"
    assert "integrity check: ok" in log_path.read_text()
