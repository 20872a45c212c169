"""`python -m simulators.reader` as a process: every dialect, the misbehaviour flags, the link.

The session reads through the stable link while the simulator process is noisy, corrupts
frames and unplugs itself once; the link disappears with the pty and comes back on a new
one. SIGTERM ends it cleanly and removes the link.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.reader.__main__ import model_options, parse_args
from tests.reader_lane import DIALECTS, EPCS, Lane, open_session
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "lane.json"
    path.write_text(json.dumps({"read_rate_hz": 20, "keepalive_s": 0.2, "passes": [
        {"at_s": 0, "dwell_s": 1000, "label": "parked truck", "tags": [{"epc": EPCS[0], "antenna": 1, "rssi": -52}]}]}))
    return path


def test_every_dialect_as_a_process_misbehaving_behind_a_link(tmp_path, scenario_file):
    procs, sessions = [], []
    try:
        for dialect in DIALECTS:
            link = tmp_path / f"rfid-{dialect}"
            proc = subprocess.Popen([sys.executable, "-m", "simulators.reader", "--dialect", dialect, "--pty", "--link",
                                     str(link), "--scenario", str(scenario_file), "--seed", "5", "--noise", "0.1",
                                     "--corrupt", "0.03", "--unplug-at", "1.5", "--replug-after", "0.7",
                                     "--boot-s", "0.2"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            procs.append((proc, link))
            device = proc.stdout.readline().strip()
            assert device.startswith("/dev/pts/") and os.readlink(link) == device
            lane = Lane()
            session = open_session(dialect, str(link), lane, antennas=(1,))
            sessions.append((session, lane))
            session.start()
        for (session, lane), (proc, link) in zip(sessions, procs):
            wait_for(lambda: lane.count("up") == 2, timeout=8, what=f"{session.dialect} back after the unplug")
            n = lane.n_reports()
            wait_for(lambda: lane.n_reports() > n + 2, what=f"{session.dialect} reports after the replug")
            assert {r.epc for r in lane.reports} == {EPCS[0]}, session.dialect
            assert lane.count("down") >= 1 and os.path.lexists(link)
    finally:
        for session, _ in sessions:
            session.stop()
        for proc, link in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(5) == 0
            proc.stdout.close()
            assert not os.path.lexists(link)


def test_cli_options_reach_the_model():
    args = parse_args(["--dialect", "chafon", "--pty", "--model", "uhfreader18", "--stall", "2", "--baudrate", "57600"])
    assert model_options(args) == {"type_code": 0x09} and args.stall == 2 and args.baudrate == 57600
    args = parse_args(["--dialect", "alien", "--pty", "--start-autonomous", "--boot-s", "3"])
    assert model_options(args) == {"boot_s": 3.0, "start_autonomous": True}


def test_a_wrong_scenario_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"passes": [{"at_s": 0, "dwell_s": 1, "tags": [{"epc": "XYZ"}]}]}')
    done = subprocess.run([sys.executable, "-m", "simulators.reader", "--dialect", "r2000", "--pty", "--scenario",
                           str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "passes[0].tags[0].epc" in done.stderr
