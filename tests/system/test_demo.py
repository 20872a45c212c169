"""The demo's orchestration, with stand-ins for the agent and the reader simulator.

The stand-in agent is a short script: it reads the config the demo wrote, announces
itself (retained birth) on both brokers and publishes one correctly chained crossing
per planned pass, shared per back end as the config says; it also starts a grandchild,
so the tests can prove the demo stops whole process groups. The real agent and reader
replace them in `python -m simulators.demo`.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
import threading
import time
import tomllib
from pathlib import Path

import pytest

from agent.readers.registry import load_config as load_agent_config
from simulators.demo import DemoOptions, run
from simulators.demo.agentconfig import write_demo_config
from simulators.demo.processes import Child, ChildError

FAKE_READER = [sys.executable, "-c", "import time; print('/dev/pts/demo-test', flush=True); time.sleep(600)"]

FAKE_AGENT = textwrap.dedent('''
    import hashlib, json, os, subprocess, sys, time, tomllib, uuid
    from pathlib import Path
    import cbor2
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    config_path = Path(sys.argv[1])
    cfg = tomllib.loads(config_path.read_text())
    mode = os.environ.get("FAKE_AGENT_MODE", "good")
    grandchild = subprocess.Popen(["sleep", "600"])
    (config_path.parent / "grandchild.pid").write_text(str(grandchild.pid))
    if mode == "crash":
        print("fake agent: cannot open the reader", file=sys.stderr)
        sys.exit(3)
    passes = json.loads((config_path.parent / "expectations.json").read_text())["passes"]
    if mode == "hang":
        passes = []  # online, but no truck ever comes out
    lane = cfg["lane"]
    SECTIONS = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral")
    def canon(x): return cbor2.dumps(x, canonical=True)
    links = []
    for b in cfg["backends"]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"laneagent-0901-C3-{b['name']}")
        client.connect(b["host"], b["port"])
        client.loop_start()
        base = f"{b['topic_prefix']}/{lane['port_code']}/{lane['lane_id']}"
        birth = {"v": 1, "type": "status", "state": "online", "seq": 0, "hash": "0" * 64}
        client.publish(base + "/status", cbor2.dumps(birth), qos=1, retain=True).wait_for_publish(5)
        links.append((client, base, b))
    prev = "0" * 64
    for seq, p in enumerate(passes, 1):
        t0 = int(time.time() * 1000)
        lookout = p["lookout"]
        findings = [{"code": c, "detail": {"source": lookout[0], "lookout_id": lookout[1]}
                     if c == "lookout_hit" else {}} for c in p["findings"]]
        sections = {
            "tags": [{"epc": e, "role": "unknown", "antenna": 1, "reader": "booth", "count": 20, "rssi_max": -50,
                      "first_ms": t0, "last_ms": t0} for e in p["epcs"]],
            "driver": [{"id": d} for d in p["drivers"]], "conveyance": {"id": p["conveyance"]},
            "equipment": [{"id": e} for e in p["equipment"]],
            "trip": {"id": p["trip"], "carrier": "X", "eta_ms": t0} if p["trip"] else None,
            "shipments": [], "findings": findings,
            "referral": {"refer": p["refer"], "reasons": p["findings"] if p["refer"] else [], "random": False},
        }
        identity = {"v": 1, "type": "crossing", "event_id": str(uuid.uuid4()), "seq": seq, "port": "0901",
                    "lane": "C3", "entering": "CA", "leaving": "US", "started_ms": t0, "ended_ms": t0}
        digests = {k: hashlib.sha256(canon(v)).hexdigest() for k, v in sections.items()}
        h = hashlib.sha256(bytes.fromhex(prev) + canon(identity) + canon(digests)).hexdigest()
        for client, base, b in links:
            if mode == "drop" and b["country"] == "US" and seq == len(passes):
                continue
            if lookout and lookout[0] == b["country"]:
                alert = {"v": 1, "type": "alert", "alert_id": str(uuid.uuid4()), "kind": "lookout_hit", "at_ms": t0,
                         "event_id": identity["event_id"], "lookout": {"id": lookout[1]}, "detail": {}}
                client.publish(base + "/alerts", cbor2.dumps(alert), qos=1)
            event = {**identity, "kind": "entry" if b["country"] == "CA" else "exit",
                     **{k: v for k, v in sections.items() if k in b["share"]},
                     "digests": digests, "prev_hash": prev, "hash": h}
            client.publish(base + "/events", cbor2.dumps(event), qos=1)
        prev = h
    time.sleep(600)
''')


def gone(pid: int) -> bool:
    """Not running: absent, or a zombie waiting for a reaper (containers may lack one)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def our_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and not gone(int(entry.name)):
                found.append(cmdline)
    return found


@pytest.fixture
def fake_agent(tmp_path) -> list[str]:
    script = tmp_path / "fake_agent.py"
    script.write_text(FAKE_AGENT)
    return [sys.executable, str(script), "{config}"]


def demo(tmp_path, fake_agent, mode: str, monkeypatch, **kwargs) -> tuple[int, str, Path]:
    monkeypatch.setenv("FAKE_AGENT_MODE", mode)
    out = io.StringIO()
    run_dir = tmp_path / "run"
    options = DemoOptions(seconds=5, lead_s=3, keep=run_dir, reader_argv=FAKE_READER, agent_argv=fake_agent,
                          out=out, **kwargs)
    code = run(options)
    return code, out.getvalue(), run_dir


def test_a_lane_that_delivers_everything_passes_and_nothing_is_left_running(tmp_path, fake_agent, monkeypatch):
    code, out, run_dir = demo(tmp_path, fake_agent, "good", monkeypatch, timeout_s=20)
    assert code == 0, out
    assert "RESULT: PASS" in out
    assert "cbsa (CA entry): 5/5 crossings, 0 duplicates, chain verified (seq 1..5)" in out
    assert "cbp (US exit): 5/5 crossings, 0 duplicates, chain verified (seq 1..5)" in out
    assert "[CA entry] seq 1 lane C3" in out and "[US exit] seq 1 lane C3" in out and "  <- pass 1 ok" in out
    assert "findings seen: clean x1, credential_revoked x1, lookout_hit x1, no_trip x1" in out
    assert "[US alert] lane C3 lookout_hit" in out
    assert gone(int((run_dir / "grandchild.pid").read_text()))
    assert our_processes(str(run_dir)) == []


def test_a_missing_crossing_fails_the_demo(tmp_path, fake_agent, monkeypatch):
    code, out, _ = demo(tmp_path, fake_agent, "drop", monkeypatch, timeout_s=3)
    assert code == 1
    assert "cbp (US exit): 4/5 crossings" in out and "never arrived" in out and "RESULT: FAIL" in out


def test_an_agent_that_dies_is_reported_with_its_log(tmp_path, fake_agent, monkeypatch):
    code, out, run_dir = demo(tmp_path, fake_agent, "crash", monkeypatch, timeout_s=3)
    assert code == 1
    assert "exited with status 3" in out and "cannot open the reader" in out
    assert gone(int((run_dir / "grandchild.pid").read_text()))
    assert our_processes(str(run_dir)) == []


def test_ctrl_c_judges_what_was_due_and_stops_everything(tmp_path, fake_agent, monkeypatch):
    out = io.StringIO()

    def press_ctrl_c_once_waiting():
        deadline = time.monotonic() + 20
        while "[US cache] snapshot" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the demo is in its wait loop by now
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    threading.Thread(target=press_ctrl_c_once_waiting, daemon=True).start()
    run_dir = tmp_path / "run"
    code = run(DemoOptions(seconds=5, lead_s=30, keep=run_dir, reader_argv=FAKE_READER, agent_argv=fake_agent,
                           out=out, timeout_s=60))
    assert code == 130
    assert "interrupted" in out.getvalue() and "RESULT: INTERRUPTED, no problem so far" in out.getvalue()
    assert "0/0 crossings (5 planned)" in out.getvalue()
    assert our_processes(str(run_dir)) == []


def test_the_run_directory_is_removed_unless_kept(tmp_path, fake_agent, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_MODE", "crash")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    run(DemoOptions(seconds=5, lead_s=3, reader_argv=FAKE_READER, agent_argv=fake_agent, out=io.StringIO()))
    assert not list(tmp_path.glob("laneagent-demo-*"))


# --- the pieces ----------------------------------------------------------------------------------

def test_the_demo_config_is_accepted_by_the_agents_loader(tmp_path):
    path = tmp_path / "agent.toml"
    write_demo_config(path, store_path=tmp_path / "db" / "agent.db", reader_url="/dev/pts/9",
                      broker_ports={"CA": 18830, "US": 18831})
    config = load_agent_config(str(path))
    assert (config.lane.port_code, config.lane.lane_id, config.lane.entering, config.lane.leaving) == \
        ("0901", "C3", "CA", "US")
    assert config.store.path == str(tmp_path / "db" / "agent.db")
    assert config.aggregation.idle_close_s == 2.0
    (reader,) = config.readers
    assert (reader.dialect, reader.url, reader.silence_timeout_s) == ("thingmagic", "/dev/pts/9", 5)
    cbsa, cbp = config.backends
    assert (cbsa.name, cbsa.country, cbsa.port, cbp.name, cbp.country, cbp.port) == \
        ("cbsa", "CA", 18830, "cbp", "US", 18831)
    assert {"driver", "trip", "shipments"} <= set(cbsa.share) and not {"driver", "trip"} & set(cbp.share)
    assert tomllib.loads(path.read_text())["readers"][0]["region"] == "NA2"  # template values survive


def test_a_child_is_stopped_with_its_whole_process_group(tmp_path):
    child = Child("shell", ["sh", "-c", "sleep 600 & echo $!; wait"], tmp_path / "shell.log", announce=True).start()
    grandchild = int(child.first_line(timeout=5))
    assert child.alive and not gone(grandchild)
    assert child.stop() is True
    assert not child.alive and gone(grandchild)
    assert child.stop() is True  # twice is harmless


def test_a_child_that_never_announces_is_an_error(tmp_path):
    silent = Child("silent", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "s.log",
                   announce=True).start()
    with pytest.raises(ChildError, match="printed no line"):
        silent.first_line(timeout=0.5)
    silent.stop()
    quitter = Child("quitter", [sys.executable, "-c", "import sys; sys.exit(2)"], tmp_path / "q.log",
                    announce=True).start()
    with pytest.raises(ChildError, match="exited"):
        quitter.first_line(timeout=5)
    quitter.stop()
