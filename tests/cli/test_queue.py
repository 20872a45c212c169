"""`laneagent queue` and the B/health figures: backlog per back end, one event, gaps."""

import json

from agent import config as config_mod
from agent.app import Daemon
from agent.lane.event import gap_alert
from agent.store.writer import StoreWriter
from tests.helpers import backend_toml, cli, lane_toml


def setup(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text(lane_toml(tmp_path / "agent.db", backends=backend_toml("cbsa", "CA", 1883)
                                + backend_toml("cbp", "US", 1884)))
    w = StoreWriter(str(tmp_path / "agent.db"))
    with w.transaction():
        for seq in (1, 2, 3):
            w.add_event({"seq": seq, "event_id": f"e{seq}", "started_ms": 1, "ended_ms": 2, "hash": f"h{seq}"},
                        {"cbsa": b"x" * 100, "cbp": b"y" * 50}, 1_000)
        w.mark_delivered("cbsa", [("event", 1), ("event", 2), ("event", 3)], 2_000)
        w.add_alert(gap_alert({"first_ms": 10, "last_ms": 20, "count": 7, "reason": "disk_full"}, 30), ["cbsa"], 30)
    w.close()
    return config


def test_queue_lists_backlog_and_gaps(tmp_path):
    config = setup(tmp_path)
    code, out, _ = cli("--config", str(config), "queue", "--json")
    doc = json.loads(out)
    rows = {r["backend"]: r for r in doc["backends"]}
    assert code == 0 and rows["cbsa"]["events"] == 0 and rows["cbsa"]["alerts"] == 1
    assert rows["cbp"]["events"] == 3 and rows["cbp"]["event_bytes"] == 150
    assert doc["gaps"] == [{"recorded_ms": 30, "first_ms": 10, "last_ms": 20, "count": 7, "reason": "disk_full"}]
    code, out, _ = cli("--config", str(config), "queue")
    assert "7 reads between" in out and "disk_full" in out


def test_queue_show_and_retry_without_a_daemon(tmp_path):
    config = setup(tmp_path)
    code, out, _ = cli("--config", str(config), "queue", "show", "e2")
    doc = json.loads(out)
    assert code == 0 and doc["event"]["seq"] == 2
    assert {d["backend"]: d["delivered_ms"] for d in doc["deliveries"]} == {"cbsa": 2_000, "cbp": None}
    assert cli("--config", str(config), "queue", "show", "nope")[0] == 1
    code, _, err = cli("--config", str(config), "queue", "retry")
    assert code == 1 and "not running" in err


def test_health_report_carries_chain_head_backlog_and_gaps(tmp_path):
    config = setup(tmp_path)
    daemon = Daemon(config_mod.load(str(config)))
    try:
        report = daemon.figures.health_report()
    finally:
        daemon.writer.close()
    assert report["chain"] == {"seq": 3, "hash": "h3"}
    assert report["backlog"]["cbp"]["events"] == 3 and report["gaps"][0]["count"] == 7
    assert {"readers", "backends", "counters", "random_rate", "alarms", "clock"} <= set(report)
