"""What a technician reads: the daemon's log (one line per state change, never one per read)
and every command's --help (each has an example).

The log test runs the real agent with a real reader simulator streaming tags and a real
broker, then unplugs and replugs the reader and stops and restarts the broker.
"""

import argparse
import collections
import json
import re
import sqlite3
import time

import pytest

from agent.cli.main import build_parser
from tests.helpers import cli, wait_for
from tests.lane_harness import Agent, ReaderSim, truck_pass, write_config

CARD, TRUCK = "E2000000000000000000D001", "E2000000000000000000C001"


def reader_state(tmp_path):
    try:
        return json.loads((tmp_path / "state" / "status.json").read_text())["readers"][0]["state"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def backend_connected(tmp_path):
    try:
        return json.loads((tmp_path / "state" / "status.json").read_text())["backends"][0]["connected"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


@pytest.fixture(scope="module")
def agent_log(tmp_path_factory):
    from simulators.mosquitto import Mosquitto

    tmp = tmp_path_factory.mktemp("logging")
    link = str(tmp / "rfid-booth")
    ca, us = Mosquitto(tmp / "ca").start(), Mosquitto(tmp / "us").start()
    passes = [truck_pass(0.5, CARD, TRUCK, dwell_s=1.5)]
    sims = [ReaderSim(tmp, passes, ["--link", link])]
    agent = Agent(tmp, write_config(tmp, link, ca.port, us.port)).start()
    try:
        assert wait_for(lambda: reader_state(tmp) == "up"), agent.log_text()
        db = tmp / "state" / "agent.db"
        reads = lambda: sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(  # noqa: E731
            "SELECT coalesce(sum(count), 0) FROM reads").fetchone()[0]  # reads, aggregated per tag
        assert wait_for(lambda: reads() >= 20), agent.log_text()
        ca.stop()  # back end lost ...
        assert wait_for(lambda: backend_connected(tmp) is False)
        sims[0].stop()  # ... and the reader unplugged
        assert wait_for(lambda: reader_state(tmp) == "down")
        start = time.monotonic()
        code, out, _ = cli("--config", str(agent.config), "status", "--json")
        status = {"code": code, "doc": json.loads(out), "took_s": time.monotonic() - start}
        ca.start()  # back end back ...
        assert wait_for(lambda: backend_connected(tmp) is True, 30)
        sims.append(ReaderSim(tmp, [], ["--link", link]))  # ... and the reader plugged in again
        assert wait_for(lambda: reader_state(tmp) == "up"), agent.log_text()
        agent.stop()
        yield agent.log_text(), reads(), status
    finally:
        agent.stop()
        for sim in sims:
            sim.stop()
        ca.stop()
        us.stop()


def lines(log, pattern):
    return [line for line in log.splitlines() if re.search(pattern, line)]


def running_part(log):
    """The log up to the clean stop (which disconnects on purpose)."""
    return log.split("stopping: readers first", 1)[0]


def test_log_has_one_line_per_state_change(agent_log):
    log, _, _ = agent_log
    log = running_part(log)
    assert len(lines(log, r"back end cbsa: connected")) == 2
    assert len(lines(log, r"back end cbsa: connection lost")) == 1
    assert len(lines(log, r"alarm raised: reader_down:booth")) == 1
    assert len(lines(log, r"alarm cleared: reader_down:booth")) == 1
    # Readable timestamps of our own when not under the journal.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in log.splitlines() if line.strip())


def test_reader_state_changes_are_logged_once_each(agent_log):
    log, _, _ = agent_log
    log = running_part(log)
    ups = lines(log, r"reader booth\b.*\bup\b")
    downs = lines(log, r"reader booth\b.*\bdown\b")
    assert len(ups) == 2, ups  # first start and after the replug
    assert len(downs) == 1, downs


def test_log_never_has_a_line_per_read_nor_a_full_epc(agent_log):
    log, reads, _ = agent_log
    assert reads >= 20
    assert len(log.splitlines()) < reads
    assert CARD not in log and TRUCK not in log
    per_minute = collections.Counter(line[:16] for line in log.splitlines())
    assert max(per_minute.values()) < 40


def test_status_with_a_reader_unplugged_and_a_broker_down(agent_log):
    _, _, status = agent_log
    doc = status["doc"]
    assert status["code"] == 1 and not doc["healthy"] and doc["daemon"]["running"]
    assert status["took_s"] < 1.0
    [reader] = doc["readers"]
    assert reader["state"] == "down" and reader["last_error"] and reader["reports"] > 0
    assert {b["name"]: b["connected"] for b in doc["backends"]} == {"cbsa": False, "cbp": True}
    assert "reader_down:booth" in {a["alarm"] for a in doc["alarms"]}
    assert doc["chain"]["last_seq"] >= 1


def walk(parser, path):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


COMMANDS = dict(walk(build_parser(), "laneagent"))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_help_has_an_example(command):
    epilog = COMMANDS[command].epilog or ""
    assert "example" in epilog and "laneagent" in epilog.split("example", 1)[1], f"{command} --help has no example"


def test_errors_name_the_file_and_the_next_step(tmp_path):
    missing = tmp_path / "nowhere.toml"
    code, _, err = cli("--config", str(missing), "status")
    assert code == 2 and str(missing) in err and "config/agent.example.toml" in err
    config = tmp_path / "agent.toml"
    from tests.helpers import backend_toml, lane_toml

    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml("cbsa", "CA", 1)))
    code, _, err = cli("--config", str(config), "tail")
    assert code == 2 and str(tmp_path / "state" / "agent.db") in err and "laneagent run" in err
    code, _, err = cli("--config", str(config), "diag", "--out", str(tmp_path / "no-such-dir" / "d.tar.gz"),
                       "--timeout", "0.5")
    assert code == 2 and "no-such-dir" in err and "--out" in err
