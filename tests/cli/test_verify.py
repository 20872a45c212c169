"""`laneagent verify` on a real database: intact, tampered, truncated, rolled back."""

import json

from agent.lane.event import GENESIS, canonical, seal
from agent.store import eventbody
from agent.store.writer import StoreWriter
from tests.helpers import backend_toml, cli, lane_toml, payloads


def setup(tmp_path, n=5):
    config = tmp_path / "a.toml"
    db = tmp_path / "agent.db"
    config.write_text(lane_toml(db, backends=backend_toml("cbsa", "CA", 1883)))
    w = StoreWriter(str(db))
    head = GENESIS
    with w.transaction():
        for seq in range(1, n + 1):
            event = seal({"v": 1, "type": "crossing", "event_id": f"e{seq}", "seq": seq, "port": "0901", "lane": "C3",
                          "entering": "CA", "leaving": "US", "started_ms": seq, "ended_ms": seq,
                          "tags": [{"epc": f"{seq:04X}"}], "driver": [], "conveyance": None, "equipment": [],
                          "trip": None, "shipments": [], "findings": [], "referral": {"refer": False}}, head)
            head = event["hash"]
            w.add_event(event, payloads(event, ["cbsa"]), 0)
    return config, w


def verify(config):
    code, out, _ = cli("--config", str(config), "verify", "--json")
    return code, json.loads(out)


def test_intact_chain(tmp_path):
    config, w = setup(tmp_path)
    assert verify(config) == (0, {"ok": True, "checked": 5, "first_seq": 1, "last_seq": 5, "purged_before": None,
                                  "first_break": None})
    code, out, _ = cli("--config", str(config), "verify")
    assert code == 0 and "chain intact: 5 events checked (seq 1..5)" in out


def test_a_changed_section_is_found(tmp_path):
    config, w = setup(tmp_path)
    body = eventbody.load(w.conn.execute("SELECT body FROM events WHERE seq = 3").fetchone()[0])
    body["tags"][0]["epc"] = "FFFF"
    with w.transaction():
        w.conn.execute("UPDATE events SET body = ? WHERE seq = 3", (canonical(body),))
    code, doc = verify(config)
    assert code == 1 and doc["first_break"] == {"seq": 3, "problem": "a section digest does not match its section"}
    assert doc["checked"] == 2


def test_a_missing_seq_is_found(tmp_path):
    config, w = setup(tmp_path)
    with w.transaction():
        w.conn.execute("DELETE FROM events WHERE seq = 4")
    code, doc = verify(config)
    assert code == 1 and doc["first_break"] == {"seq": 5, "problem": "seq 4..4 missing"}


def test_truncated_tail_is_a_rollback(tmp_path):
    config, w = setup(tmp_path)
    with w.transaction():
        w.conn.execute("DELETE FROM events WHERE seq = 5")
    code, doc = verify(config)
    assert code == 1 and "rollback or truncation" in doc["first_break"]["problem"]


def test_purged_prefix_is_reported_not_an_error(tmp_path):
    config, w = setup(tmp_path)
    with w.transaction():
        w.conn.execute("DELETE FROM events WHERE seq < 3")
    code, doc = verify(config)
    assert code == 0 and doc["purged_before"] == 3 and doc["checked"] == 3


def test_reordered_events_are_found(tmp_path):
    config, w = setup(tmp_path)
    rows = dict(w.conn.execute("SELECT seq, body FROM events WHERE seq IN (2, 3)").fetchall())
    with w.transaction():  # events 2 and 3 swap places
        w.conn.execute("UPDATE events SET body = ?, event_id = 'tmp' WHERE seq = 2", (rows[3],))
        w.conn.execute("UPDATE events SET body = ? WHERE seq = 3", (rows[2],))
    code, doc = verify(config)
    assert code == 1 and doc["first_break"]["seq"] == 2 and doc["checked"] == 1
