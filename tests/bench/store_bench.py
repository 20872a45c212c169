"""Durability costs: group commit against SQLite's own one-row-per-fsync rate, and the
daemon's memory and start-up time with a million-event backlog on disk.

Group commit: tag reports submitted to a running core as fast as it takes them, each
durable (journaled, synchronous=FULL) before the loop moves on. Baseline: the same
file settings, one INSERT and one COMMIT (one fsync) per row, in the same run.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent import config
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store.writer import StoreWriter
from simulators.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


def single_row_fsync_rate(path: str, seconds: float = 2.0) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, epc TEXT, wall_ms INTEGER)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t(epc, wall_ms) VALUES (?, ?)", ("E2801160600002054C4B1A7F", n))
        conn.execute("COMMIT")
        n += 1
    conn.close()
    return n / (time.perf_counter() - start)


def group_commit_rate(tmp: str, reads: int = 200_000) -> dict:
    cfg = config.parse({"lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
                        "store": {"path": f"{tmp}/agent.db"},
                        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]})
    writer = StoreWriter(cfg.store.path)
    core = LaneCore(cfg, writer)
    core.start()
    report = TagReport("thingmagic", "E2801160600002054C4B1A7F", 1, rssi=-50)
    start = time.perf_counter()
    for i in range(reads):
        core.submit_read("booth", report, time.monotonic(), 1_800_000_000_000 + i)
    while core.counters["reads"] < reads:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    commits = writer.commits
    core.stop()
    writer.close()
    return {"reads": reads, "reads_per_s": round(reads / elapsed), "commits": commits}


def fill_million(path: str, n: int = 1_000_000) -> None:
    """A million small events owed to two back ends, written straight into the schema."""
    writer = StoreWriter(path)
    body = b"\xa1\x61v\x01" + b"x" * 200
    now = int(time.time() * 1000)
    with writer.transaction() as conn:
        for lo in range(1, n + 1, 50_000):
            hi = min(n, lo + 49_999)
            conn.executemany("INSERT INTO events(seq, event_id, created_ms, started_ms, ended_ms, hash, body) "
                             "VALUES (?, ?, ?, 0, 0, 'h', ?)", ((s, f"e{s}", now, body) for s in range(lo, hi + 1)))
            conn.executemany("INSERT INTO deliveries(backend, item_type, item_id, bytes, created_ms, payload) "
                             "VALUES (?, 'event', ?, 204, ?, ?)",
                             ((b, s, now, body) for s in range(lo, hi + 1) for b in ("cbsa", "cbp")))
        conn.execute("UPDATE lane_state SET next_seq = ?", (n + 1,))
    writer.close()


def daemon_with_backlog(tmp: str, n: int = 1_000_000, watch_s: float = 15.0) -> dict:
    """Start the real agent on a million-event backlog: time to READY, then RSS while it drains."""
    fill_million(f"{tmp}/agent.db", n)
    with Mosquitto(Path(tmp) / "ca", persistent=False) as ca, Mosquitto(Path(tmp) / "us", persistent=False) as us:
        conf = Path(tmp) / "agent.toml"
        conf.write_text(f"""
[lane]
port_code = "0901"
lane_id = "C3"
entering = "CA"
leaving = "US"
[store]
path = "{tmp}/agent.db"
max_queue_mb = 4096
[[backends]]
name = "cbsa"
country = "CA"
host = "127.0.0.1"
port = {ca.port}
max_rate = 0
[[backends]]
name = "cbp"
country = "US"
host = "127.0.0.1"
port = {us.port}
max_rate = 0
""")
        sock_path = f"{tmp}/notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(30)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(conf), "run"], cwd=ROOT,
                                env={**os.environ, "NOTIFY_SOCKET": sock_path}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        ready_s = None
        while ready_s is None:
            if sock.recv(4096).startswith(b"READY=1"):
                ready_s = time.perf_counter() - start
        peak = 0
        end = time.monotonic() + watch_s
        while time.monotonic() < end:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            peak = max(peak, rss)
            time.sleep(0.2)
        conn = sqlite3.connect(f"file:{tmp}/agent.db?mode=ro", uri=True)
        drained = conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NOT NULL").fetchone()[0]
        conn.close()
        proc.terminate()
        proc.wait(30)
        sock.close()
    return {"backlog_events": n, "start_to_ready_s": round(ready_s, 2), "peak_rss_mb_while_draining": round(peak / 1024, 1),
            "delivered_in_window": drained, "window_s": watch_s}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        baseline = single_row_fsync_rate(f"{tmp}/baseline.db")
        group = group_commit_rate(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        backlog = daemon_with_backlog(tmp)
    return {"single_row_fsync_per_s": round(baseline), **group,
            "group_commit_ratio": round(group["reads_per_s"] / baseline, 1), **backlog}


if __name__ == "__main__":
    print(run())
