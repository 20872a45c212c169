"""The integrity check at the real daemon: READY first, the full check beside the lane; a
corrupt file makes the daemon stop with an error, and the restart (systemd's) moves it aside."""

from __future__ import annotations

import os
import signal

from agent.store import integrity
from agent.store.writer import StoreWriter
from tests.helpers import wait_for
from tests.lane_harness import Agent, write_config
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

    first = Agent(tmp_path, config).start()
    try:
        assert first.proc.wait(60) == 1, "a corrupt database must stop the daemon with an error"
    finally:
        first.stop()
    text = first.log_text()
    assert "integrity check failed" in text and "database_corrupt" in text
    assert integrity.check_at_start(str(db))

    status = tmp_path / "state" / "status.json"
    second = Agent(tmp_path, config).start()
    try:
        wait_for(lambda: "database_recovered" in status.read_text() if status.exists() else False, 30,
                 "the restarted daemon reporting the recovery")
        assert second.proc.poll() is None
        assert second.kill(signal.SIGTERM) == 0
    finally:
        second.stop()
    assert not integrity.check_at_start(str(db))
    assert [p for p in os.listdir(db.parent) if ".corrupt-" in p], "the corrupt file kept aside"
    assert "integrity check: ok" in second.log_text()
