"""A link's figures read from another thread while it drains a large backlog.

Issue 10: draining a 30,000-event backlog, the daemon died 15 s in with "deque mutated
during iteration": the status writer (main thread) iterated the link's PUBACK times
while the link thread appended to them. Here the main thread plays the status writer,
reading every figure as fast as it can while a link drains into a real mosquitto.
"""

import time

import cbor2

from agent import config
from agent.core import LaneCore
from agent.store.writer import StoreWriter
from tests.helpers import wait_for
from tests.sync.wiring import links_for

BACKLOG = 20_000


def fill(writer: StoreWriter, n: int, backend: str) -> None:
    """n events owed to `backend`, each with its payload (the link sends payloads as stored)."""
    with writer.transaction():
        for seq in range(1, n + 1):
            event = {"v": 1, "type": "crossing", "event_id": f"figures-{seq}", "seq": seq, "port": "0901",
                     "lane": "C3", "entering": "CA", "leaving": "US", "started_ms": seq, "ended_ms": seq,
                     "tags": [], "hash": f"{seq:064x}"}
            writer.add_event(event, {backend: cbor2.dumps(event)}, int(time.time() * 1000))


def owed(writer: StoreWriter) -> int:
    return writer.conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]


def test_figures_read_from_another_thread_while_a_large_backlog_drains(tmp_path, broker):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "backends": [{"name": "cbsa", "country": "CA", "host": broker.host, "port": broker.port,
                      "share": ["tags"], "max_rate": 0}]})
    writer = StoreWriter(cfg.store.path)
    fill(writer, BACKLOG, "cbsa")
    core = LaneCore(cfg, writer)
    [link] = links_for(cfg, core)
    core.start()
    link.start()
    try:
        reads, last_acked, rates = 0, 0, []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            figures = link.snapshot()  # what the status writer does, here without pause
            reads += 1
            assert figures["acked"] >= last_acked  # never seen going backwards
            last_acked = figures["acked"]
            rates.append(figures["drain_rate"])
            if figures["acked"] >= BACKLOG:
                break
        assert last_acked == BACKLOG, f"drained {last_acked} of {BACKLOG} in the time allowed"
        assert reads > 100 and max(rates) > 0
        wait_for(lambda: owed(writer) == 0, what="every PUBACK marked delivered")
        figures = link.snapshot()
        assert figures["published"] == BACKLOG and figures["inflight"] == 0 and figures["connected"]
    finally:
        link.stop()
        core.stop()
        writer.close()
