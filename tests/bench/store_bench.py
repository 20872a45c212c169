"""Durability costs: group commit against SQLite's own one-row-per-fsync rate; start to
READY with a 100k-event backlog and a 1M-record cache (DESIGN part 4, `start`), from the
page cache and, where this user may drop it, from a cold disk as after a power cut; and
the daemon's memory while it drains a million-event backlog.

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
from agent.store.cache import validate_cache_message
from agent.store.cachegen import Staged
from agent.store.writer import StoreWriter
from simulators.fleet.bigcache import BigCacheShape, iter_big_cache, iter_cache_messages
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


def fill_cache(path: str, drivers: int = 500_000, trips: int = 100_000) -> int:
    """A live cache of about a million records (half the full fleet), through the staging path."""
    writer = StoreWriter(path)
    gens, now_ms, records = writer.generations, int(time.time() * 1000), 0
    staged = Staged("CA", gens.next_gen("CA"), "cbsa", 1, 0, 0, 1, now_ms)
    with writer.cache_transaction(durable=False):
        gens.begin(staged)
        for msg in iter_cache_messages(iter_big_cache(1, now_ms, BigCacheShape(drivers=drivers, trips=trips)), "CA"):
            msg.update(op="snapshot", part=1, parts=1)
            part = validate_cache_message(msg)["records"]
            gens.stage("CA", staged.gen, part)
            records += len(part)
        staged.records, staged.last_seq = records, 1
        gens.index("CA", staged.gen)
    with writer.cache_transaction():
        gens.swap(staged, now_ms)
    writer.close()
    return records


def write_agent_toml(tmp: str, ca_port: int, us_port: int) -> Path:
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
port = {ca_port}
max_rate = 0
[[backends]]
name = "cbp"
country = "US"
host = "127.0.0.1"
port = {us_port}
max_rate = 0
""")
    return conf


def start_daemon(tmp: str, conf: Path) -> tuple[subprocess.Popen, float]:
    """`laneagent run` under a systemd-style notify socket: the process and seconds to READY=1."""
    sock_path = f"{tmp}/notify.sock"
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(120)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(conf), "run"], cwd=ROOT,
                                env={**os.environ, "NOTIFY_SOCKET": sock_path}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not sock.recv(4096).startswith(b"READY=1"):
            pass
        return proc, time.perf_counter() - start
    finally:
        sock.close()


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(60)


def drop_page_cache() -> bool:
    """As after a power cut: nothing of the files in memory. Needs root; False when not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def start_figures(tmp: str, events: int = 100_000) -> dict:
    """Start to READY with `events` owed to two back ends and a 1M-record cache: warm (the files
    in the page cache, a restart) and cold (a boot after a power cut), each started twice."""
    fill_million(f"{tmp}/agent.db", events)
    records = fill_cache(f"{tmp}/agent.db")
    out: dict = {"start_backlog_events": events, "start_cache_records": records}
    with Mosquitto(Path(tmp) / "ca", persistent=False) as ca, Mosquitto(Path(tmp) / "us", persistent=False) as us:
        conf = write_agent_toml(tmp, ca.port, us.port)
        for how in ("warm", "cold"):
            times = []
            for _ in range(2):
                if how == "cold" and not drop_page_cache():
                    break
                proc, ready_s = start_daemon(tmp, conf)
                times.append(round(ready_s, 2))
                time.sleep(1)  # the integrity check runs after READY; let it go on as it would
                stop(proc)
            out[f"start_to_ready_s_{how}"] = max(times) if times else None
    return out


def daemon_with_backlog(tmp: str, n: int = 1_000_000, watch_s: float = 15.0) -> dict:
    """The real agent on a million-event backlog: time to READY, then RSS while it drains."""
    fill_million(f"{tmp}/agent.db", n)
    with Mosquitto(Path(tmp) / "ca", persistent=False) as ca, Mosquitto(Path(tmp) / "us", persistent=False) as us:
        proc, ready_s = start_daemon(tmp, write_agent_toml(tmp, ca.port, us.port))
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
        stop(proc)
    return {"backlog_events": n, "start_to_ready_s_1m_backlog": round(ready_s, 2),
            "peak_rss_mb_while_draining": round(peak / 1024, 1), "delivered_in_window": drained, "window_s": watch_s}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        baseline = single_row_fsync_rate(f"{tmp}/baseline.db")
        group = group_commit_rate(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        start = start_figures(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        backlog = daemon_with_backlog(tmp)
    return {"single_row_fsync_per_s": round(baseline), **group,
            "group_commit_ratio": round(group["reads_per_s"] / baseline, 1), **start, **backlog}


if __name__ == "__main__":
    print(run())
