"""Delivery marks are held for a commit that happens anyway, keep the time they arrived,
and are never lost at a clean stop (core/marks.py)."""

import time

from agent import config
from agent.core import LaneCore
from agent.handoff import Delivered
from agent.lane.disclosure import View
from agent.store.writer import StoreWriter


def lane(tmp_path):
    cfg = config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"},
                     {"name": "cbp", "country": "US", "host": "127.0.0.1"}]})
    writer = StoreWriter(cfg.store.path)
    with writer.transaction():
        for seq in (1, 2, 3):
            writer.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 2, "hash": f"h{seq}"},
                             {"cbsa": View("entry", ()), "cbp": View("exit", ())}, int(time.time() * 1000))
    return writer, LaneCore(cfg, writer)


def marks(writer):
    return writer.conn.execute("SELECT backend, item_id, delivered_ms FROM deliveries WHERE delivered_ms IS NOT NULL "
                               "ORDER BY backend, item_id").fetchall()


def test_held_marks_are_written_at_a_clean_stop_with_the_time_they_arrived(tmp_path):
    writer, core = lane(tmp_path)
    core.start()
    before = int(time.time() * 1000)
    core.submit(Delivered("cbsa", (("event", 1), ("event", 2))))
    core.submit(Delivered("cbp", (("event", 1),)))
    after = int(time.time() * 1000)
    core.stop()  # at once: the marks are held, and the stop writes them
    got = marks(writer)
    assert [(b, i) for b, i, _ in got] == [("cbp", 1), ("cbsa", 1), ("cbsa", 2)]
    # Stamped when the core took them, not when they were written.
    assert all(before <= ms <= after + 1_000 for _, _, ms in got)
    writer.close()


def test_a_mark_alone_is_written_within_the_hold(tmp_path):
    writer, core = lane(tmp_path)
    core.start()
    try:
        core.submit(Delivered("cbp", (("event", 3),)))
        deadline = time.monotonic() + 20
        while not marks(writer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(b, i) for b, i, _ in marks(writer)] == [("cbp", 3)]
    finally:
        core.stop()
        writer.close()
