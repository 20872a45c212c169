"""`laneagent tail`: passages and deliveries followed live from a real database.

The database is written through the store's own writer while `tail` runs as a real
process reading it; Ctrl-C (SIGINT) ends it with exit 0.
"""

import argparse
import contextlib
import io
import json
import signal
import subprocess
import sys
import time

from agent.cli.tail import Follower
from agent.readers.registry import load_config as load
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter
from tests.helpers import ROOT, backend_toml, lane_toml, payloads

CARD, TRUCK = "E2000000000000000000D001", "E2000000000000000000C001"


def event(seq, findings=(), refer=False, name="Alex Martin"):
    now = int(time.time() * 1000)
    return {"v": 1, "type": "crossing", "event_id": f"ev-{seq}", "seq": seq, "started_ms": now - 3000,
            "ended_ms": now - 500, "hash": f"{seq:064x}",
            "tags": [{"epc": CARD, "role": "driver", "count": 12}, {"epc": TRUCK, "role": "conveyance", "count": 9}],
            "driver": [{"id": "DRV-1", "name": name}], "conveyance": {"id": "TRK-1"}, "trip": {"id": "TRIP-1"},
            "findings": [{"code": c, "detail": {}} for c in findings],
            "referral": {"refer": refer, "reasons": list(findings) if refer else [], "random": False}}


def add(writer, ev):
    with writer.transaction():
        writer.add_event(ev, payloads(ev, ["cbsa", "cbp"]), int(time.time() * 1000))


def deliver(writer, backend, seq):
    with writer.transaction():
        writer.mark_delivered(backend, [("event", seq)], int(time.time() * 1000))


def setup(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db",
                                backends=backend_toml("cbsa", "CA", 1883) + backend_toml("cbp", "US", 1884)))
    return config, StoreWriter(str(tmp_path / "state" / "agent.db"))


def read_lines(proc, n, timeout=10.0):
    lines, deadline = [], time.monotonic() + timeout
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(json.loads(line))
    return lines


def test_tail_follows_passages_and_deliveries_and_ctrl_c_exits_0(tmp_path):
    config, writer = setup(tmp_path)
    try:
        add(writer, event(1))  # before tail starts: shown by --last
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config), "tail", "--json",
                                 "--last", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            [first] = read_lines(proc, 1)
            assert first["type"] == "passage" and first["seq"] == 1 and first["to"] == ["cbp", "cbsa"]
            add(writer, event(2, findings=["no_trip"], refer=True))
            [second] = read_lines(proc, 1)
            assert second["seq"] == 2 and second["findings"] == ["no_trip"] and second["refer"]
            assert [t["epc"] for t in second["tags"]] == ["****D001", "****C001"]
            deliver(writer, "cbsa", 2)
            deliver(writer, "cbp", 1)
            got = read_lines(proc, 2)
            assert {(d["type"], d["backend"], d["seq"]) for d in got} == {("delivery", "cbsa", 2),
                                                                         ("delivery", "cbp", 1)}
            assert {d["kind"] for d in got} == {"entry", "exit"}  # CA is entered, US left
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        writer.close()


def follow(config, **options):
    """One start-and-poll of tail in this process, text output."""
    cfg = load(str(config))
    args = argparse.Namespace(json=False, backend=None, kind=None, finding=None, refer=False, last=10)
    vars(args).update(options)
    kinds = {b.name: "entry" if b.country == cfg.lane.entering else "exit" for b in cfg.backends}
    chosen = {n: k for n, k in kinds.items() if (not args.backend or n == args.backend)
              and (not args.kind or k == args.kind)}
    out = io.StringIO()
    with StoreReader(cfg.store.path) as store, contextlib.redirect_stdout(out):
        Follower(cfg, store, chosen, args).start()
    return out.getvalue()


def test_filters_and_no_personal_data(tmp_path):
    config, writer = setup(tmp_path)
    try:
        add(writer, event(1))
        add(writer, event(2, findings=["lookout_hit"], refer=True))
        add(writer, event(3, findings=["unknown_tag"]))
        deliver(writer, "cbp", 2)
    finally:
        writer.close()
    everything = follow(config)
    assert everything.count(" passage ") == 3 and "Alex" not in everything and CARD not in everything
    assert "driver ****D001" in everything and "REFER (lookout_hit)" in everything
    assert "#2      -> cbp (US, exit) delivered" in everything
    assert follow(config, refer=True).count(" passage ") == 1
    only = follow(config, finding="unknown_tag")
    assert only.count(" passage ") == 1 and "#3" in only
    entry = follow(config, kind="entry")
    assert entry.count(" passage ") == 3 and "-> cbp" not in entry
    assert "-> cbp" in follow(config, backend="cbp")


def test_unknown_backend_names_the_choices(tmp_path):
    from tests.helpers import cli

    config, writer = setup(tmp_path)
    writer.close()
    code, _, err = cli("--config", str(config), "tail", "--backend", "cbx")
    assert code == 2 and "no back end 'cbx'" in err and "cbsa, cbp" in err
