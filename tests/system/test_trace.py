"""The latency trace (agent/trace.py) through the real daemon: with LANEAGENT_TRACE set, one
truck's passage leaves its four moments in the file (report received, reads journaled,
event committed, PUBACK from each back end), all on the monotonic clock; without it, the
trace is off and writes nothing. No timing is asserted: the bars live in the bench.
"""

import os
import signal
import subprocess
import sys
import time

from agent import trace
from tests.helpers import ROOT, agent_cmd, wait_for
from tests.lane_harness import ReaderSim, truck_pass, write_config
from tests.mqtt_probe import Probe

DRIVER, TRUCK = "E2000000000000000000D001", "E2000000000000000000C001"


def test_trace_records_each_moment_of_a_passage(tmp_path, broker_factory):
    ca, us = broker_factory("ca"), broker_factory("us")
    probes = [Probe(b, ["border/0901/C3/events"]) for b in (ca, us)]
    sim = ReaderSim(tmp_path, [truck_pass(2.0, DRIVER, TRUCK)])
    config = write_config(tmp_path, sim.path, ca.port, us.port)
    path = tmp_path / "trace.txt"
    before = time.monotonic()
    with open(tmp_path / "agent.log", "ab") as log:
        proc = subprocess.Popen(agent_cmd(config), cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
                                env={**os.environ, trace.ENV: str(path)})
    try:
        wait_for(lambda: all(p.on("events") for p in probes), 30, "the event at both brokers")
        wait_for(lambda: {("cbsa", "event"), ("cbp", "event")} <= {
            tuple(ids[:2]) for _, m, ids in trace.read(str(path)) if m == "puback"}, 10, "both PUBACKs traced")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        sim.stop()
        for p in probes:
            p.close()
    lines = trace.read(str(path))
    by = {m: [(t, ids) for t, mm, ids in lines if mm == m] for m in ("received", "journaled", "committed", "puback")}
    assert {ids[2] for _, ids in by["received"]} == {DRIVER, TRUCK}
    assert all(ids[1] == "booth" for _, ids in by["received"])
    journaled = {i for _, ids in by["journaled"] for i in ids}
    assert {ids[0] for _, ids in by["received"]} <= journaled  # every read's receipt stamp, journaled
    ((_, committed),) = by["committed"]
    assert committed[1] == "idle" and set(committed[2:]) == {DRIVER, TRUCK}
    seq = probes[0].on("events")[0]["seq"]
    assert {(ids[0], ids[2]) for _, ids in by["puback"] if ids[1] == "event"} == {("cbsa", str(seq)), ("cbp", str(seq))}
    # one clock: every stamp is CLOCK_MONOTONIC, after this test began and in causal order
    stamps = [t for t, _, _ in lines] + [float(ids[0]) for _, ids in by["received"]]
    assert all(before < s < time.monotonic() for s in stamps)
    assert max(t for t, _ in by["received"]) <= by["committed"][0][0] <= min(t for t, _ in by["puback"])


def test_trace_is_off_by_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != trace.ENV}
    code = ("import os; from agent import trace; assert not trace.enabled(); "
            "trace.emit('received', (1.0, 'booth', 'E200')); print(os.listdir('.'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # nothing written anywhere it could have gone
