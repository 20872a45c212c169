"""`laneagent reader probe` against every simulator, each at a baud rate the probe is not told.

The simulators answer only while the host's termios speed on the pty is theirs and send
garbage otherwise (a pty does not enforce baud rates; see simulators/reader/runner.py), so
the probe has to find the speed the way it would on a serial line. The four run side by
side. Afterwards each simulator must be in the state it was in: the probe only asks.
"""

import json
import threading
import tomllib

import pytest
import serial

from agent.cli import main as cli
from agent.readers import probe as probing
from simulators.reader import SimulatedReader
from simulators.reader.alien import DEFAULTS as ALIEN_DEFAULTS
from tests.reader_lane import EMPTY, scenario

UNKNOWN_BAUD = {"thingmagic": 460800, "r2000": 9600, "chafon": 38400, "alien": 921600}
EXPECTED = {"thingmagic": ("M6e", "01.21.00.14"), "r2000": ("R2000", "1.9"), "chafon": ("UHFReader288M", "2.26"),
            "alien": ("ALR-F800", "17.11.24.00")}
QUICK = {"listen_s": 0.1, "reply_timeout_s": 0.1, "attempts": 1}


@pytest.fixture
def sims():
    started = []

    def start(dialect, baudrate, scen=EMPTY, **options):
        sim = SimulatedReader(dialect, scen, seed=2, baudrate=baudrate, **options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def test_each_dialect_found_at_a_baud_rate_it_was_not_told(sims):
    running = {d: sims(d, baud) for d, baud in UNKNOWN_BAUD.items()}
    reports = {}

    def run(dialect):
        reports[dialect] = probing.probe(running[dialect].device, **QUICK)

    threads = [threading.Thread(target=run, args=(d,)) for d in running]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for dialect, report in reports.items():
        found = report.found
        assert found is not None, (dialect, report.tried)
        assert (found.dialect, found.baudrate) == (dialect, UNKNOWN_BAUD[dialect])
        assert (found.model, found.firmware) == EXPECTED[dialect]
        assert f"115200 {dialect}" in report.tried  # it asked at the wrong speed first and got nothing
    # nothing was changed: only the identification queries reached each reader
    tm, r2, cf, al = (running[d].model for d in ("thingmagic", "r2000", "chafon", "alien"))
    assert not tm.application and {c.opcode for c in tm.commands} == {0x03}  # still in its bootloader
    assert {c.command for c in r2.commands} == {0x72} and r2.work_antenna == 0
    assert {c.command for c in cf.commands} == {0x21}
    verbs = {c.split()[0].lower() for c in al.commands if c.split()}
    assert "get" in verbs and not verbs & {"set", "clear", "reboot"} and al.settings == ALIEN_DEFAULTS


def test_a_streaming_module_is_recognised_and_left_streaming(sims):
    sim = sims("thingmagic", 57600, scenario(), start_streaming=True)
    report = probing.probe(sim.device, (115200, 57600), ("r2000", "thingmagic"), **QUICK)
    assert report.found.dialect == "thingmagic" and report.found.baudrate == 57600
    assert sim.model.streaming and {c.opcode for c in sim.model.commands} <= {0x03}


def test_an_alien_in_autonomous_mode(sims):
    sim = sims("alien", 115200, scenario(), start_autonomous=True)
    report = probing.probe(sim.device, (115200,), **QUICK)
    assert report.found.dialect == "alien" and sim.model.settings["NotifyMode"] == "ON"


def run_cli(capsys, *argv):
    code = cli.main(["reader", "probe", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_config_block(sims, capsys):
    sim = sims("chafon", 57600)
    code, out, _ = run_cli(capsys, "--url", sim.device, "--reply-timeout", "0.1")
    assert code == 0
    assert "dialect   chafon" in out and "baud rate 57600" in out and "model     UHFReader288M" in out
    block = tomllib.loads(out.split("For agent.toml:", 1)[1])
    assert block["readers"][0] == {"name": "booth", "dialect": "chafon", "url": sim.device, "baudrate": 57600,
                                   "antennas": [1], "silence_timeout_s": 10}


def test_cli_json(sims, capsys):
    sim = sims("r2000", 230400)
    code, out, _ = run_cli(capsys, "--url", sim.device, "--json", "--baud", "115200", "--baud", "230400",
                           "--reply-timeout", "0.1")
    doc = json.loads(out)
    assert code == 0 and doc["found"] and (doc["dialect"], doc["baudrate"], doc["firmware"]) == ("r2000", 230400, "1.9")
    assert tomllib.loads(doc["toml"])["readers"][0]["dialect"] == "r2000"
    assert doc["tried"][0] == "115200 thingmagic"


def test_cli_nothing_answers(sims, capsys):
    sim = sims("r2000", 115200)
    sim.mute()
    code, out, _ = run_cli(capsys, "--url", sim.device, "--baud", "115200", "--dialect", "r2000", "--reply-timeout",
                           "0.1")
    assert code == 1 and "No reader answered" in out


def test_cli_port_held_by_someone_else(sims, capsys):
    sim = sims("r2000", 115200)
    holder = serial.Serial(sim.device, exclusive=True)
    try:
        code, _, err = run_cli(capsys, "--url", sim.device)
    finally:
        holder.close()
    assert code == 2 and "held by another program" in err
    code, out, _ = run_cli(capsys, "--url", "/dev/does-not-exist", "--json")
    assert code == 2 and json.loads(out)["found"] is False
