"""Progress on long work: `cache import` shows a percentage and records/s on a terminal,
`verify` its share of the chain, `diag` each step; nothing extra with --json or when
stderr is not a terminal (a pipe, a log, a script)."""

import io
import json
import os
import pty
import subprocess
import sys

import cbor2

from agent.cli import diag
from agent.cli.progress import CLEAR, Progress
from tests.helpers import ROOT, backend_toml, cli, lane_toml


class Terminal(io.StringIO):
    def isatty(self):
        return True


def msg(seq, op, first, n, source="CA"):
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op,
            "records": [{"kind": "driver", "id": f"D{i}", "card_epc": f"E2{i:022X}"} for i in range(first, first + n)]}


def setup(tmp_path, messages=40, per_message=50):
    config = tmp_path / "a.toml"
    config.write_text(lane_toml(tmp_path / "agent.db", backends=backend_toml("cbsa", "CA", 1883)))
    stream = tmp_path / "cache.cbors"
    stream.write_bytes(b"".join(cbor2.dumps(msg(s, "snapshot" if s == 1 else "upsert", s * per_message, per_message))
                                for s in range(1, messages + 1)))
    return config, stream


def test_the_progress_line_draws_in_place_and_leaves_nothing_behind():
    term = Terminal()
    p = Progress("cache import", "records", stream=term, every_s=0)
    p.update(500, 0.25)
    p.update(2000, 1.0)
    p.done()
    text = term.getvalue()
    assert text.count(CLEAR) == 3 and text.endswith(CLEAR) and "\n" not in text
    assert " 25%  500 records, " in text and "100%  2,000 records, " in text and "records/s" in text
    for kwargs in ({"stream": io.StringIO()}, {"stream": Terminal(), "json_out": True}):
        quiet = Progress("verify", **kwargs)
        quiet.update(1, 0.5)
        quiet.say("working")
        quiet.done()
        assert kwargs["stream"].getvalue() == ""


def test_cache_import_on_a_real_terminal_shows_percent_and_rate(tmp_path):
    config, stream = setup(tmp_path, messages=400, per_message=25)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config), "cache", "import", str(stream)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, seen = proc.communicate(timeout=120)[0], b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0, seen
    terminal = seen.decode()
    assert "cache import: " in terminal and "%  " in terminal and "records/s" in terminal, terminal
    assert terminal.endswith(CLEAR)  # the line is erased before the result
    assert out.strip() == "400 of 400 messages applied, 10,000 records, in " + out.split(" in ")[1].strip()


def test_cache_import_prints_nothing_extra_in_a_pipe_or_with_json(tmp_path):
    config, stream = setup(tmp_path)
    code, out, err = cli("--config", str(config), "cache", "import", str(stream), "--json")
    assert code == 0 and err == "" and len(json.loads(out)["messages"]) == 40
    code, out, err = cli("--config", str(config), "cache", "import", str(stream))
    assert code == 0 and err == "" and out.startswith("0 of 40 messages applied")


def run_with_terminal(*argv):
    from agent.cli.main import main

    term, out = Terminal(), io.StringIO()
    old = sys.stderr, sys.stdout
    sys.stderr, sys.stdout = term, out
    try:
        code = main(list(argv))
    finally:
        sys.stderr, sys.stdout = old
    return code, out.getvalue(), term.getvalue()


def test_verify_shows_its_share_of_the_chain_on_a_terminal_only(tmp_path):
    from tests.cli.test_verify import setup as chain  # the chain the verify tests build

    config, w = chain(tmp_path, 300)
    w.close()
    code, out, shown = run_with_terminal("--config", str(config), "verify")
    assert code == 0 and out.startswith("chain intact: 300 events checked")
    assert "verify: " in shown and "events/s" in shown and shown.endswith(CLEAR)
    code, out, shown = run_with_terminal("--config", str(config), "verify", "--json")
    assert code == 0 and shown == "" and json.loads(out)["checked"] == 300


def test_diag_says_what_it_is_collecting(tmp_path, monkeypatch):
    config, _ = setup(tmp_path, messages=1)
    monkeypatch.setattr(diag.bundle, "journal_text", lambda: "no journal here\n")
    steps = []
    files = diag.collect(str(config), 0.2, steps.append)
    assert "doctor.json" in files
    assert steps[0] == "reading the config" and steps[-1] == "removing personal data"
    assert any(s.startswith("running doctor's checks") for s in steps) and "measuring the database" in steps
