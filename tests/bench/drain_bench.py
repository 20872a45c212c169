"""Backlog drain: N stored events to two real brokers, beside bare paho loops.

The baseline does the same work with nothing but paho: one plain QoS 1 publish loop
per broker, both running at once in this process (as our two links do), same payload
size and in-flight window. The figure that counts is our rate / the baseline's.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt

from agent import config
from agent.core import LaneCore
from agent.lane.event import GENESIS, canonical, seal
from agent.store.writer import StoreWriter
from agent.lane.disclosure import event_for
from agent.sync.connection import INFLIGHT_WINDOW
from simulators.mosquitto import Mosquitto
from tests.sync.wiring import links_for

SECTIONS_SAMPLE = {
    "tags": [{"epc": "E2801160600002054C4B1A7F", "role": "driver", "antenna": 1, "reader": "booth", "count": 12,
              "rssi_max": -48, "first_ms": 1, "last_ms": 2}],
    "driver": [{"id": "DRV-0001", "source": "CA", "name": "Alex Martin", "status": "valid"}],
    "conveyance": {"id": "TRK-0001", "source": "CA", "plate": "AB 1234", "carrier": "NORTHLINE"},
    "equipment": [], "trip": {"id": "TRIP-1", "source": "CA", "carrier": "NORTHLINE", "eta_ms": 1},
    "shipments": [{"id": "SHP-1", "description": "lumber"}], "findings": [],
    "referral": {"refer": False, "reasons": [], "random": False},
}


def fill_backlog(writer: StoreWriter, n: int, cfg: config.Config) -> int:
    """n sealed events owed to every back end of `cfg`, each with the payload the core
    stores for it (its sections, its kind: `event_for`); returns the mean size of a
    full event (the bare-paho baseline publishes that many bytes)."""
    head = GENESIS
    total = 0
    with writer.transaction():
        for seq in range(1, n + 1):
            event = seal({"v": 1, "type": "crossing", "event_id": f"bench-{seq}", "seq": seq, "port": "0901",
                          "lane": "C3", "entering": "CA", "leaving": "US", "started_ms": seq, "ended_ms": seq,
                          **SECTIONS_SAMPLE}, head)
            head = event["hash"]
            total += len(canonical(event))
            writer.add_event(event, {b.name: cbor2.dumps(event_for(event, b, cfg.lane)) for b in cfg.backends},
                             int(time.time() * 1000))
    return total // max(n, 1)


def bare_paho(brokers: list[Mosquitto], n: int, size: int) -> float:
    """Events/s per broker of plain QoS 1 publish loops, one thread per broker, all at once."""
    rates: list[float] = []
    threads = [threading.Thread(target=lambda b=b: rates.append(_bare_loop(b, n, size))) for b in brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return min(rates)


def _bare_loop(broker: Mosquitto, n: int, size: int) -> float:
    """QoS 1 publishes with the same bounded in-flight window as production's link: an
    unbounded loop queues all n in paho at once and stalls at 100,000 (issue 13)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{broker.port}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT_WINDOW)
    client.max_queued_messages_set(0)
    acked = 0
    room = threading.Condition()

    def on_publish(*_):
        nonlocal acked
        with room:
            acked += 1
            room.notify()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    payload = b"x" * size
    start = time.perf_counter()
    for sent in range(n):
        with room:
            room.wait_for(lambda: sent - acked < INFLIGHT_WINDOW, timeout=30)
        client.publish("bench/bare", payload, qos=1)
    with room:
        room.wait_for(lambda: acked >= n, timeout=60)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def run(n: int = 20_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "ca", persistent=False) as ca, \
            Mosquitto(Path(tmp) / "us", persistent=False) as us:
        cfg = config.parse({
            "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
            "store": {"path": f"{tmp}/agent.db"},
            "backends": [{"name": "cbsa", "country": "CA", "host": ca.host, "port": ca.port, "max_rate": 0,
                          "share": list(config.SHARE_ITEMS)},
                         {"name": "cbp", "country": "US", "host": us.host, "port": us.port, "max_rate": 0,
                          "share": ["tags", "findings", "referral"]}]})
        writer = StoreWriter(cfg.store.path)
        size = fill_backlog(writer, n, cfg)
        baseline = bare_paho([ca, us], n, size)
        core = LaneCore(cfg, writer)
        links = links_for(cfg, core)
        core.start()
        start = time.perf_counter()
        for link in links:
            link.start()
        while writer_pending(cfg.store.path) > 0:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        for link in links:
            link.stop()
        core.stop()
        writer.close()
        per_backend = n / elapsed
        return {"events": n, "payload_bytes": size, "backends": 2, "seconds": round(elapsed, 2),
                "drain_events_per_s_per_backend": round(per_backend),
                "bare_paho_events_per_s_per_broker": round(baseline),
                "ratio": round(per_backend / baseline, 2)}


def writer_pending(path: str) -> int:
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]
    finally:
        conn.close()
