"""Disk footprint and flash writes (DESIGN part 4, `footprint`).

(a) Bytes on disk per event owed to two back ends: passages driven through the core
    (journal, aggregation, passages, decide, the event and its deliveries: production's
    path, with a cache so events carry linked records), no link running, then a clean
    close (checkpoint); database + WAL file sizes / events. Beside it, the bytes the two
    back ends would be sent for those events (the payloads), in the same run.
(b) Bytes written per event in a live lane: the real daemon (`laneagent run`) with a
    simulated ThingMagic reader on a pty making ~1 s passages of ~48 reads and two real
    mosquitto brokers. write_bytes of the daemon from /proc/PID/io, from the first event
    delivered (warm-up) to its exit after SIGTERM, so WAL writes, checkpoints and the
    clean stop's checkpoint all count; divided by the events delivered to both back ends.
    The daemon's lifetime total comes from our own /proc/self/io once we have reaped it
    (the kernel adds a reaped child's I/O to its parent's). The daemon runs in a booth's
    layout: the store on disk, the runtime directory (status.json, traffic dumps) on a
    tmpfs, as systemd's RuntimeDirectory= gives it (`Config.runtime_dir` picks /run/laneagent
    only for the unit's own store path, so the bench points both names at its directories).

The idle figure (bytes written per second with nothing in the field) is `idle`'s.
FOOTPRINT_SHORT=1 runs a short version while iterating. FOOTPRINT_PAGE_SIZE=1024 creates
the databases with that SQLite page size first (the agent keeps a file's page size), to
measure what the page size does to both figures. Run it on a disk, not a tmpfs (tmpfs
writes never reach write_bytes): FOOTPRINT_DIR picks the directory, default the system's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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
from tests.helpers import ROOT, backend_toml, lane_toml, reader_toml

H = 3600_000
TRUCKS = 10  # distinct trucks in turn, so no tag is held back by rearm_s
US_SHARE = ["tags", "conveyance", "findings", "referral"]


def fleet_cache(now_ms: int, trucks: int = TRUCKS) -> dict:
    """A CA snapshot: per truck a driver, a conveyance, two trailers, a trip and a shipment."""
    records = []
    for i in range(trucks):
        records += [
            {"kind": "driver", "id": f"DRV-{i}", "name": f"Driver Number{i}", "card_epc": f"E200000000000000D000{i:04X}",
             "card_expires_ms": now_ms + 900 * H, "status": "valid", "programs": ["FAST"]},
            {"kind": "conveyance", "id": f"TRK-{i}", "vin": f"1XKAD49X0DJ{i:06d}", "plate": f"AB{i:04d}",
             "plate_region": "ON", "carrier": "NORTHLINE", "transponder_epc": f"E200000000000000C000{i:04X}",
             "status": "valid"},
            *({"kind": "equipment", "id": f"TRL-{i}-{k}", "number": f"53-{i}{k}", "plate": f"TR{i}{k}",
               "plate_region": "ON", "tag_epc": f"E20000000000000{k}E000{i:04X}", "seals": [f"S{i}{k}"]}
              for k in (1, 2)),
            {"kind": "trip", "id": f"TRIP-{i}", "carrier": "NORTHLINE", "port": "0901", "eta_ms": now_ms,
             "conveyance": f"TRK-{i}", "drivers": [f"DRV-{i}"], "equipment": [f"TRL-{i}-1", f"TRL-{i}-2"],
             "shipments": [f"SHP-{i}"]},
            {"kind": "shipment", "id": f"SHP-{i}", "trip": f"TRIP-{i}", "shipper": "Maple Co",
             "consignee": "Eagle Inc", "importer": "Eagle Inc", "description": "lumber, kiln dried",
             "trusted_trader": True},
        ]
    return {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot", "records": records}


def truck_epcs(i: int) -> list[str]:
    i %= TRUCKS
    return [f"E200000000000000D000{i:04X}", f"E200000000000000C000{i:04X}", f"E200000000000001E000{i:04X}",
            f"E200000000000002E000{i:04X}"]


def _write_bytes(pid: str | int = "self") -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


# `laneagent run` with the unit's layout: this store path counts as the state directory
# and the given directory as its RuntimeDirectory.
BOOTH_LAYOUT = ("import sys, agent.config as c; c.DEFAULT_STORE_PATH, c.RUNTIME_DIR = sys.argv[1:3]; "
                "from agent.cli.main import main; raise SystemExit(main(sys.argv[3:]))")


def _new_database(path: str) -> None:
    """An empty database file with FOOTPRINT_PAGE_SIZE, when asked; the agent migrates it."""
    size = os.environ.get("FOOTPRINT_PAGE_SIZE")
    if size:
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA page_size = {int(size)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()


def _page_size(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def _files(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal", "-shm") if os.path.exists(path + s))


# --- (a) on disk per owed event ------------------------------------------------------------
def on_disk(tmp: str, events: int, reads_per_tag: int = 12) -> dict:
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": f"{tmp}/agent.db"},
        "aggregation": {"idle_close_s": 1.0, "max_passage_s": 20.0, "rearm_s": 1.0},
        "referral": {"random_rate": 0.0},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "share": list(config.SHARE_ITEMS)},
                     {"name": "cbp", "country": "US", "host": "127.0.0.1", "share": US_SHARE}]})
    now = int(time.time() * 1000)
    _new_database(cfg.store.path)
    writer = StoreWriter(cfg.store.path)
    with writer.transaction():
        writer.apply_cache(fleet_cache(now), now)
    writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    empty = _files(cfg.store.path)
    core = LaneCore(cfg, writer)
    core.start()
    written0 = _write_bytes()
    # Passages in the (monotonic) past, 5 s apart: each closes as the next one's first read
    # arrives. A batch of TRUCKS passages at a time, each truck once per batch, so a tag's
    # journal row is consumed before the same truck comes round again.
    base = time.monotonic() - events * 5.0 - 10
    for first in range(0, events, TRUCKS):
        for p in range(first, min(events, first + TRUCKS)):
            for r in range(reads_per_tag):
                for k, epc in enumerate(truck_epcs(p)):
                    t = base + p * 5.0 + r / reads_per_tag
                    core.submit_read("booth", TagReport("thingmagic", epc, 1 + k % 2, rssi=-50 - r % 7), t,
                                     now - int((time.monotonic() - t) * 1000))
        target = min(events, first + TRUCKS)
        while core.counters["events"] < target:
            time.sleep(0.01)
    core.stop()
    writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as the clean stop does (also for an older store)
    writer.close()
    written = _write_bytes() - written0
    conn = sqlite3.connect(f"file:{cfg.store.path}?mode=ro", uri=True)
    owed = conn.execute("SELECT count(DISTINCT item_id), count(*), sum(bytes) FROM deliveries "
                        "WHERE item_type = 'event' AND delivered_ms IS NULL").fetchone()
    tables = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    reads = conn.execute("SELECT count(*), sum(count) FROM reads").fetchone()
    conn.close()
    size = _files(cfg.store.path) - empty
    n = owed[0]
    return {"events": n, "page_size": _page_size(cfg.store.path), "deliveries_owed": owed[1], "bytes_on_disk_per_event": round(size / n),
            "payload_bytes_per_event": round(owed[2] / n), "fill_bytes_written_per_event": round(written / n),
            "read_rows_per_event": round(reads[0] / n, 1), "reads_per_event": round(reads[1] / n, 1),
            "table_bytes_per_event": {k: round(v / n) for k, v in sorted(tables.items(), key=lambda kv: -kv[1])
                                      if v / n >= 10}}


# --- (b) written per event in a live lane ------------------------------------------------------
def live_lane(tmp: str, passages: int, period_s: float = 2.5, read_rate_hz: float = 12.0) -> dict:
    work = Path(tmp)
    state = work / "state"
    state.mkdir()
    scenario = work / "scenario.json"
    warmup_s = 6.0  # the daemon is READY well before the first truck
    scenario.write_text(json.dumps({"read_rate_hz": read_rate_hz, "repeat_every_s": 0, "passes": [
        {"at_s": warmup_s + p * period_s, "dwell_s": 1.0, "label": f"truck {p}",
         "tags": [{"epc": e, "antenna": 1 + k % 2, "rssi": -50} for k, e in enumerate(truck_epcs(p))]}
        for p in range(passages + 1)]}))
    with Mosquitto(work / "ca", persistent=False) as ca, Mosquitto(work / "us", persistent=False) as us:
        reader = subprocess.Popen([sys.executable, "-m", "simulators.reader", "--dialect", "thingmagic", "--pty",
                                   "--scenario", str(scenario)], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            url = reader.stdout.readline().strip()
            conf = work / "agent.toml"
            conf.write_text(lane_toml(state / "agent.db", readers=reader_toml(url),
                                      backends=backend_toml("cbsa", "CA", ca.port)
                                      + backend_toml("cbp", "US", us.port, share=json.dumps(US_SHARE))))
            db = str(state / "agent.db")
            _new_database(db)
            _import(conf, work)
            run_dir = tempfile.mkdtemp(dir="/dev/shm")
            with open(work / "agent.log", "wb") as log:
                daemon = subprocess.Popen([sys.executable, "-c", BOOTH_LAYOUT, db, run_dir, "--config", str(conf),
                                           "run"], cwd=ROOT, stdout=log, stderr=log)
            try:
                _wait(lambda: _delivered_both(db) >= 1, 60, "the warm-up event delivered")
                written0, first_seq = _write_bytes(daemon.pid), _delivered_both(db)
                started = time.monotonic()
                _wait(lambda: _delivered_both(db) >= passages + 1, period_s * passages + 60, "every event delivered")
                seconds = time.monotonic() - started
                last_seq = _delivered_both(db)
                live_written = _write_bytes(daemon.pid) - written0
                ours = _write_bytes()
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
                total = _write_bytes() - ours  # the daemon's whole life, now that we reaped it
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
        finally:
            os.killpg(reader.pid, signal.SIGTERM)
            reader.wait(10)
            reader.stdout.close()
        if os.path.exists(state / "status.json") or not os.path.exists(f"{run_dir}/status.json"):
            raise RuntimeError("footprint bench: status.json is not in the tmpfs runtime directory; the layout changed")
        shutil.rmtree(run_dir)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        reads = conn.execute("SELECT sum(count) FROM reads WHERE consumed_by IN "
                             "(SELECT event_id FROM events WHERE seq > ? AND seq <= ?)", (first_seq, last_seq)).fetchone()[0]
        conn.close()
    events = last_seq - first_seq
    with_stop = total - written0
    wal_after = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
    return {"events": events, "page_size": _page_size(db), "seconds": round(seconds, 1), "reads_per_event": round((reads or 0) / events, 1),
            "bytes_written_per_event": round(with_stop / events),
            "bytes_written_per_event_running": round(live_written / events),
            "stop_bytes_written": with_stop - live_written, "wal_bytes_after_stop": wal_after,
            "db_bytes_after_stop": os.path.getsize(db)}


def _import(conf: Path, work: Path) -> None:
    path = work / "cache.json"
    path.write_text(json.dumps(fleet_cache(int(time.time() * 1000))))
    subprocess.run([sys.executable, "-m", "agent", "--config", str(conf), "cache", "import", str(path)], cwd=ROOT,
                   check=True, capture_output=True)


def _delivered_both(db: str) -> int:
    """The highest seq such that every event up to it is delivered to both back ends."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        pending = conn.execute("SELECT min(item_id) FROM deliveries WHERE item_type = 'event' "
                               "AND delivered_ms IS NULL").fetchone()[0]
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        return last if pending is None else pending - 1
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"footprint bench: timed out waiting for {what}")
        time.sleep(0.2)


def run() -> dict:
    short = os.environ.get("FOOTPRINT_SHORT") == "1"
    with tempfile.TemporaryDirectory(dir=os.environ.get("FOOTPRINT_DIR")) as tmp:
        disk = on_disk(tmp, 500 if short else 5_000)
    with tempfile.TemporaryDirectory(dir=os.environ.get("FOOTPRINT_DIR")) as tmp:
        live = live_lane(tmp, 12 if short else 100)
    return {"on_disk": disk, "live_lane": live, "short": short}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
