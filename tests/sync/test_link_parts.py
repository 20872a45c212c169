"""The link's parts on their own, without a broker: back-off, figures, downlink routing,
and the outbox read API the drain uses."""

from __future__ import annotations

import time
from types import SimpleNamespace

import cbor2

from agent import config
from agent.handoff import CacheMessage, CommandMessage, DownlinkRefused
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.store.writer import StoreWriter
from agent.sync import figures as figures_module
from agent.sync.connection import reconnect_wait
from agent.sync.downlink import Downlink
from agent.sync.figures import LinkFigures


def make_cfg(tmp_path, **store):
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db"), **store},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "port": 1883, "share": ["tags"]}]})


def test_reconnect_wait_is_full_jitter_doubling_from_half_a_second_up_to_a_minute():
    for attempt in range(1, 12):
        high = min(60.0, 0.5 * 2 ** (attempt - 1))
        waits = [reconnect_wait(attempt) for _ in range(200)]
        assert all(0.0 <= w <= high for w in waits), attempt
        assert max(waits) > high / 2 and min(waits) < high / 2  # spread over the whole range
    assert 0.0 <= reconnect_wait(10 ** 6) <= 60.0  # a week of failed attempts does not overflow


def test_drain_rate_counts_the_pubacks_of_the_last_ten_seconds(monkeypatch):
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(figures_module, "time", SimpleNamespace(monotonic=lambda: clock.now, time=time.time))
    figures = LinkFigures("cbsa")
    for i in range(50):
        clock.now = 1000.0 + i * 0.1  # 50 PUBACKs over 5 s
        figures.acked(1)
    assert figures.drain_rate() == 5.0
    snapshot = figures.snapshot()
    assert snapshot["acked"] == 50 and snapshot["drain_rate"] == 5.0 and snapshot["last_puback_ms"] is not None
    clock.now = 1012.5  # the window is seconds 1003-1012: the PUBACKs of 1000-1002 have left it
    assert figures.drain_rate() == 2.0
    clock.now = 1020.0
    assert figures.drain_rate() == 0.0 and figures.snapshot()["acked"] == 50


def test_errors_are_logged_once_per_change(caplog):
    figures = LinkFigures("cbsa")
    for _ in range(3):
        figures.error("cannot connect")
    figures.error("refused", quiet=True)
    assert figures.last_error == "refused"
    assert [r.getMessage() for r in caplog.records] == ["back end cbsa: cannot connect"]


def message(topic: str, payload) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, payload=payload if isinstance(payload, bytes) else cbor2.dumps(payload))


def test_downlink_topics_become_handoff_messages(tmp_path):
    cfg = make_cfg(tmp_path, max_message_kb=1)
    submitted, acks = [], []
    downlink = Downlink(cfg, cfg.backends[0], submitted.append, acks.append)
    assert downlink.subscriptions() == [("border/0901/cache", 1), ("border/0901/C3/acks", 1), ("border/0901/C3/cmd", 1)]
    snapshot = {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot", "records": []}
    command = {"v": 1, "type": "cmd", "id": "cmd-1", "seq": 1, "command": "ping"}
    downlink.on_message(None, None, message("border/0901/cache", snapshot))
    downlink.on_message(None, None, message("border/0901/C3/cmd", command))
    downlink.on_message(None, None, message("border/0901/C3/acks", {"v": 1, "type": "ack", "event_ids": ["e1"]}))
    downlink.on_message(None, None, message("border/0901/cache", b"\xff\x00 not cbor"))
    downlink.on_message(None, None, message("border/0901/C3/cmd", b"\xa0" * 2000))
    downlink.on_message(None, None, message("border/0901/cache", {**snapshot, "source": "US"}))
    assert submitted[:2] == [CacheMessage("cbsa", snapshot, signed=False), CommandMessage("cbsa", command)]
    assert [(type(m), m.backend, m.reason) for m in submitted[2:]] == [
        (DownlinkRefused, "cbsa", "malformed"), (DownlinkRefused, "cbsa", "oversized"),
        (DownlinkRefused, "cbsa", "wrong_source")]
    assert "exceeds store.max_message_kb" in submitted[3].message
    assert acks == [["e1"]]


def test_outbox_names_the_seqs_of_acked_event_ids(tmp_path):
    writer = StoreWriter(str(tmp_path / "agent.db"))
    with writer.transaction():
        for seq in range(1, 1201):
            writer.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 1, "hash": f"{seq:064x}"},
                             {"cbsa": b"payload"}, 1)
    outbox = Outbox(open_reader(writer.path))
    assert outbox.seqs_of(["e3", "unknown", "e1"]) == {"e3": 3, "e1": 1}
    assert outbox.seqs_of([]) == {}
    many = outbox.seqs_of([f"e{seq}" for seq in range(1, 1201)])  # more than one chunk of parameters
    assert len(many) == 1200 and many["e1200"] == 1200
    assert outbox.pending("cbsa", "event", 1198, 10) == [(1199, b"payload"), (1200, b"payload")]
    writer.close()
