"""Shared test helpers: writing configs, running the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lane_toml(store: Path, readers: str = "", backends: str | None = None, aggregation: str = "") -> str:
    if backends is None:
        backends = backend_toml("cbsa", "CA", 1883) + backend_toml("cbp", "US", 1884, share='["tags", "findings"]')
    return f"""
[lane]
port_code = "0901"
lane_id = "C3"
entering = "CA"
leaving = "US"

[store]
path = "{store}"

[aggregation]
idle_close_s = 1.0
max_passage_s = 20.0
min_reads = 2
min_rssi = -75
rearm_s = 1.0
{aggregation}

[referral]
random_rate = 0.0

{readers}
{backends}
"""


def backend_toml(name: str, country: str, port: int, share: str | None = None, extra: str = "") -> str:
    share = share or '["tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral", "alerts"]'
    return f"""
[[backends]]
name = "{name}"
country = "{country}"
host = "127.0.0.1"
port = {port}
share = {share}
max_rate = 0
{extra}
"""


def reader_toml(url: str, name: str = "booth", silence: float = 3.0) -> str:
    return f"""
[[readers]]
name = "{name}"
dialect = "thingmagic"
url = "{url}"
antennas = [1, 2]
silence_timeout_s = {silence}
"""


def cli(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run `laneagent ARGV` in-process; returns (exit code, stdout, stderr)."""
    from agent.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def agent_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent", "--config", str(config), "run", *extra]


def run_agent(config: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd(config), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    """Poll `condition` until it returns something truthy, and return that; raise
    AssertionError after `timeout` seconds. The one waiting helper of the tests: a test
    waits on the condition itself, never on a sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def decode_in_pieces(decode, stream: bytes, rnd) -> list:
    """Feed `stream` to a codec's `decode` in random pieces of 1 to 64 bytes, as a serial
    line delivers it, and flush at the end; returns every item decoded."""
    got, rest, pos = [], b"", 0
    while pos < len(stream):
        step = rnd.randint(1, 64)
        items, rest = decode(rest + stream[pos:pos + step])
        got += items
        pos += step
    return got + decode(rest, final=True)[0]


def payloads(event: dict, backends) -> dict[str, bytes]:
    """What `StoreWriter.add_event` owes each back end in tests that do not care about
    shares: the whole event as CBOR (the core encodes each back end's own view)."""
    import cbor2

    return {b: cbor2.dumps(event) for b in backends}


def import_snapshots(config, tmp_path, by_source: dict) -> None:
    """Load a snapshot per source through `laneagent cache import`, as a technician would."""
    for source, records in by_source.items():
        path = tmp_path / f"cache-{source}.json"
        path.write_text(json.dumps({"v": 1, "type": "cache", "source": source, "seq": 1, "op": "snapshot",
                                    "records": records}))
        assert cli("--config", str(config), "cache", "import", str(path))[0] == 0
