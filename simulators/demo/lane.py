"""One simulated lane, end to end: two brokers, two back ends, the reader simulator and the real agent.

`run(options)` starts everything in a run directory, drives the scenario's trucks past
the reader, prints each crossing as each country receives it, judges the result with
`Tally`, and stops everything it started, in reverse order, whatever happened (an
exception, Ctrl-C, SIGTERM): the cleanup runs with SIGINT/SIGTERM ignored so a second
Ctrl-C cannot leave a broker or the agent behind. Brokers and back ends are started
first so the back ends' sessions exist before the agent publishes anything; the cache
snapshots go out once the agent's birth message shows it is online and subscribed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from simulators.backend import Backend, describe
from simulators.backend.signing import new_key_pair
from simulators.demo.agentconfig import (
    BACKEND_NAMES, DEMO_LANE, ROOT, shared_sections, write_demo_config,
)
from simulators.demo.processes import Child, ChildError
from simulators.demo.tally import Receiver, Tally
from simulators.fleet import Fleet
from simulators.mosquitto import Mosquitto

SUBSCRIBE_SETTLE_S = 1.0  # after the birth, before the snapshots: the agent may subscribe just after it


@dataclass
class DemoOptions:
    seconds: float = 60.0
    keep: Path | None = None  # keep the run directory (logs, config, database) here
    seed: int = 1
    trucks: int = 40
    lead_s: float = 8.0  # time for the agent to start and load its cache before the first truck
    grace_s: float = 20.0  # after the last truck, how long crossings may still take to arrive
    birth_timeout_s: float = 20.0
    timeout_s: float | None = None  # wait for crossings this long after the reader starts (None: scenario + grace)
    reader_argv: list[str] | None = None  # "{scenario}" is replaced by the scenario path
    agent_argv: list[str] | None = None  # "{config}" is replaced by the config path
    out: TextIO = field(default_factory=lambda: sys.stdout)


class Console:
    """Whole lines from several threads (two back ends' network threads and the main one)."""

    def __init__(self, out: TextIO):
        self.out, self.lock = out, threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)


def run(options: DemoOptions) -> int:
    """0: every crossing arrived at both back ends and verified; 1: not; 130: interrupted."""
    run_dir = Path(options.keep) if options.keep else Path(tempfile.mkdtemp(prefix="laneagent-demo-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    say = Console(options.out)
    stack = contextlib.ExitStack()
    try:
        return _run(options, run_dir, stack, say)
    except ChildError as e:
        say(f"demo failed: {e}")
        return 1
    finally:
        _close_quietly(stack)
        if options.keep:
            say(f"run directory kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def _close_quietly(stack: contextlib.ExitStack) -> None:
    if threading.current_thread() is not threading.main_thread():
        stack.close()
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.close()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run(options: DemoOptions, run_dir: Path, stack: contextlib.ExitStack, say: Console) -> int:
    fleet = Fleet.generate(options.seed, int(time.time() * 1000), trucks=options.trucks)
    scenario = fleet.scenario(seconds=options.seconds, lead_s=options.lead_s)
    scenario_path = scenario.write(run_dir / "scenario.json")
    say(f"demo: {len(scenario.passes)} trucks through FAST lane {DEMO_LANE['port_code']}/{DEMO_LANE['lane_id']} "
        f"({DEMO_LANE['leaving']} -> {DEMO_LANE['entering']}) over {scenario.duration_s:.0f} s; files in {run_dir}")
    for n, planned in enumerate(scenario.passes, 1):
        say(f"  pass {n} at {planned.at_s:4.0f} s: {planned.label} [{planned.crew.tier}]")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}

    brokers: dict[str, Mosquitto] = {}
    for country in (DEMO_LANE["entering"], DEMO_LANE["leaving"]):
        brokers[country] = broker = Mosquitto(run_dir / f"broker-{country}", persistent=False)
        stack.callback(broker.stop)
        broker.start()

    reader_argv = options.reader_argv or [sys.executable, "-m", "simulators.reader", "--dialect", "thingmagic",
                                          "--pty", "--scenario", "{scenario}"]
    reader = Child("reader simulator", [a.replace("{scenario}", str(scenario_path)) for a in reader_argv],
                   run_dir / "reader.log", cwd=ROOT, env=env, announce=True)
    stack.callback(reader.stop)
    reader.start()
    pty = reader.first_line(timeout=15)
    scenario_started = time.monotonic()

    config_path = run_dir / "agent.toml"
    # Each back end signs its downlink with its own key; the agent verifies (DESIGN 2.6).
    keys = {c: new_key_pair(run_dir / f"{BACKEND_NAMES[c]}.pub") for c in brokers}
    doc = write_demo_config(config_path, store_path=run_dir / "agent" / "agent.db", reader_url=pty,
                            broker_ports={c: b.port for c, b in brokers.items()},
                            verify_keys={c: str(run_dir / f"{BACKEND_NAMES[c]}.pub") for c in brokers})
    (run_dir / "expectations.json").write_text(json.dumps(
        {"passes": scenario.expectations(doc["lane"]["kind"], doc["referral"]["refer_on"])}, indent=1) + "\n")
    receivers = [Receiver(b["name"], b["country"], "entry" if b["country"] == DEMO_LANE["entering"] else "exit",
                          tuple(b.get("share", ()))) for b in doc["backends"]]
    tally = Tally(scenario, receivers, doc["referral"]["refer_on"], doc["lane"].get("kind", "general"))
    backends: dict[str, Backend] = {}
    for receiver in receivers:
        country = receiver.country
        backend = Backend(BACKEND_NAMES[country], country, brokers[country].host, brokers[country].port,
                          records=fleet.records_for(country), expect_share=shared_sections(doc, country),
                          snapshot_on_connect=False,  # sent once the agent is subscribed, below
                          signing_key=keys[country],
                          on_event=lambda r, c=country: say(tally.line(c, r)),
                          on_message=_alert_printer(country, say))
        stack.callback(backend.stop)
        backends[country] = backend.start()

    agent_argv = options.agent_argv or [sys.executable, "-m", "agent", "--config", "{config}", "run"]
    agent = Child("agent", [a.replace("{config}", str(config_path)) for a in agent_argv], run_dir / "agent.log",
                  cwd=ROOT, env=env)
    stack.callback(agent.stop)
    agent.start()
    say(f"reader on {pty}; agent started (log: {agent.log_path.name}); waiting for its birth messages")
    say("downlink signed: each back end signs its cache and acks (COSE_Sign1, Ed25519); the agent verifies")

    problems = _load_caches(backends, agent, options.birth_timeout_s, say)
    interrupted_at: float | None = None
    wait_s = options.timeout_s if options.timeout_s is not None else scenario.duration_s + options.grace_s
    deadline = scenario_started + wait_s
    try:
        while not tally.complete(backends) and time.monotonic() < deadline:
            if not agent.alive:
                problems.append(f"the agent exited with status {agent.returncode} during the run")
                break
            if reader.returncode not in (None, 0):
                problems.append(f"the reader simulator exited with status {reader.returncode}")
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted_at = time.monotonic() - scenario_started
        say("interrupted: judging the trucks that were due")
    if agent.alive and not agent.stop():
        say("warning: the agent needed SIGKILL; it did not stop within 5 s of SIGTERM")
    return _report(tally, backends, problems, agent, interrupted_at, say)


def _alert_printer(country: str, say: Console):
    def show(received) -> None:
        if received.channel == "alerts":
            say(describe(received, country))
    return show


def _load_caches(backends: dict[str, Backend], agent: Child, timeout: float, say: Console) -> list[str]:
    """Wait for the agent's birth on every broker, then publish both countries' snapshots."""
    lane = DEMO_LANE["lane_id"]
    deadline = time.monotonic() + timeout
    problems = []
    while not all((b.last_status(lane) or {}).get("state") == "online" for b in backends.values()):
        if not agent.alive:
            raise ChildError(f"the agent exited with status {agent.returncode} while starting:\n{agent.log_tail()}")
        if time.monotonic() > deadline:
            missing = [c for c, b in backends.items() if (b.last_status(lane) or {}).get("state") != "online"]
            problems.append(f"no birth (status online) from the agent on {', '.join(missing)} within {timeout:.0f} s")
            break
        time.sleep(0.1)
    time.sleep(SUBSCRIBE_SETTLE_S)
    for country, backend in backends.items():
        seqs = backend.publish_snapshot()
        say(f"[{country} cache] snapshot seq {seqs[0]}: {len(backend.records)} records")
    return problems


def _report(tally: Tally, backends: dict[str, Backend], problems: list[str], agent: Child,
            interrupted_at: float | None, say: Console) -> int:
    interrupted = interrupted_at is not None
    verdict = tally.judge(backends, due_s=interrupted_at)
    problems = problems + verdict.problems
    say("== summary ==")
    for line in verdict.lines:
        say(line)
    for problem in problems:
        say(f"PROBLEM: {problem}")
    tail = agent.log_tail()
    if problems and tail and not interrupted:
        say(f"agent log, last lines ({agent.log_path}):\n{tail}")
    ok = not problems and not interrupted
    result = "PASS" if ok else "FAIL" if problems else "INTERRUPTED, no problem so far"
    say(f"RESULT: {result} ({tally.expected} crossings planned per back end)")
    return 130 if interrupted else 0 if ok else 1
