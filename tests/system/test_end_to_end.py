"""End to end: reader simulator on a pty -> agent process -> two real mosquitto brokers.

Nothing is mocked: the agent runs as its own process and is killed with real signals,
the brokers are real mosquitto processes, the reader speaks Mercury over a real pty.
"""

import json
import random
import signal
import socket
import sqlite3
import threading
import time

import pytest

from tests.helpers import cli
from tests.lane_harness import Agent, ReaderSim, cache_snapshot, truck_pass, verify_chain, write_config
from tests.mqtt_probe import Probe

DRIVER1, DRIVER2 = "E2000000000000000000D001", "E2000000000000000000D002"
TRUCK1, TRUCK_SHADY, TRUCK_UNKNOWN = "E2000000000000000000C001", "E2000000000000000000C002", "E2000000000000000000C099"
US_SHARE = {"v", "type", "event_id", "seq", "kind", "port", "lane", "entering", "leaving", "started_ms", "ended_ms",
            "digests", "prev_hash", "hash", "tags", "conveyance", "findings", "referral"}


@pytest.fixture
def lane(tmp_path, broker_factory):
    """Brokers, probes and a way to start the reader and the agent; everything stopped after."""
    ca, us = broker_factory("ca"), broker_factory("us")
    state = {"ca": ca, "us": us, "sims": [], "agents": [], "probes": []}

    def probe(broker, persistent_id=None):
        p = Probe(broker, ["border/0901/C3/#"], client_id=persistent_id, persistent=bool(persistent_id))
        state["probes"].append(p)
        return p

    def start(passes, reader_extra=(), import_cache=True, url=None):
        sim = None
        if passes is not None:
            sim = ReaderSim(tmp_path, passes, reader_extra)
            state["sims"].append(sim)
        config = write_config(tmp_path, url or (sim.path if sim else None), ca.port, us.port)
        if import_cache:
            (tmp_path / "cache.json").write_text(json.dumps(cache_snapshot()))
            code, out, err = cli("--config", str(config), "cache", "import", str(tmp_path / "cache.json"))
            assert code == 0, err
        agent = Agent(tmp_path, config).start()
        state["agents"].append(agent)
        return agent, config

    state["probe"], state["start"] = probe, start
    yield state
    for agent in state["agents"]:
        agent.stop()
    for sim in state["sims"]:
        sim.stop()
    for p in state["probes"]:
        p.close()


def db_rows(config_dir, sql):
    conn = sqlite3.connect(f"file:{config_dir / 'state' / 'agent.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def codes(event):
    return sorted({f["code"] for f in event["findings"]})


def test_trucks_cross_to_both_countries(lane, tmp_path):
    p_ca, p_us = lane["probe"](lane["ca"]), lane["probe"](lane["us"])
    agent, config = lane["start"]([
        truck_pass(2.0, DRIVER1, TRUCK1, label="clean"),
        truck_pass(6.0, DRIVER2, TRUCK_UNKNOWN, label="no manifest"),
        truck_pass(10.0, DRIVER2, TRUCK_SHADY, label="lookout"),
    ])
    ev_ca, ev_us = p_ca.wait("/events", 3, timeout=40), p_us.wait("/events", 3, timeout=10)
    assert len(ev_ca) == 3 and len(ev_us) == 3, agent.log_text()[-3000:]
    assert [e["event_id"] for e in ev_ca] == [e["event_id"] for e in ev_us]
    assert [e["seq"] for e in ev_ca] == [1, 2, 3]
    assert {e["kind"] for e in ev_ca} == {"entry"} and {e["kind"] for e in ev_us} == {"exit"}
    assert all(set(e) == US_SHARE for e in ev_us)
    assert verify_chain(ev_ca) == [] and verify_chain(ev_us) == []

    clean, no_trip, lookout = ev_ca
    assert codes(clean) == [] and clean["trip"]["id"] == "TRIP-1" and clean["referral"]["refer"] is False
    assert [s["id"] for s in clean["shipments"]] == ["SHP-1"] and clean["driver"][0]["id"] == "DRV-1"
    assert {t["epc"]: t["role"] for t in clean["tags"]} == {DRIVER1: "driver", TRUCK1: "conveyance"}
    assert codes(no_trip) == ["no_conveyance_tag", "no_trip", "unknown_tag"] and no_trip["referral"]["refer"]
    assert "lookout_hit" in codes(lookout) and lookout["referral"]["reasons"][0] == "lookout_hit"
    alerts = p_ca.wait("/alerts", 1)
    hits = [a for a in alerts if a["kind"] == "lookout_hit"]
    assert hits[0]["event_id"] == lookout["event_id"] and hits[0]["lookout"]["id"] == "LK-1"
    assert [a for a in p_us.on("/alerts") if a["kind"] == "lookout_hit"] == []  # CA's lookout, US has no share

    code, out, _ = cli("--config", str(config), "status", "--json")
    doc = json.loads(out)
    assert doc["readers"][0]["state"] == "up" and doc["readers"][0]["reports"] > 0
    assert all(b["connected"] for b in doc["backends"]) and doc["chain"]["last_seq"] == 3
    assert code == 0, out
    assert agent.kill(signal.SIGTERM) == 0
    log = agent.log_text()
    assert "stopped" in log
    # Personal data stays out of the log: no card number, transponder or name in full.
    for secret in (DRIVER1, DRIVER2, TRUCK1, TRUCK_SHADY, "Alex Martin", "Sam Roy"):
        assert secret not in log
    assert db_rows(tmp_path, "SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL") == [(0,)]


def test_broker_killed_then_restarted_receives_everything(lane, tmp_path):
    p_ca = lane["probe"](lane["ca"])
    p_us = lane["probe"](lane["us"], persistent_id="cbp-backend")
    time.sleep(1.5)  # the US broker saves the back end's persistent session to disk
    lane["us"].kill()
    agent, _ = lane["start"]([truck_pass(2.0 + 3 * i, DRIVER1, TRUCK1) for i in range(3)])
    got_ca = p_ca.wait("/events", 3, timeout=40)
    assert [e["seq"] for e in got_ca] == [1, 2, 3], agent.log_text()[-3000:]
    assert p_us.on("/events") == []
    lane["us"].start()
    got_us = p_us.wait("/events", 3, timeout=60)
    assert sorted({e["seq"] for e in got_us}) == [1, 2, 3]
    assert {e["event_id"] for e in got_us} == {e["event_id"] for e in got_ca}


def test_sigkill_while_trucks_pass_loses_nothing_journaled(lane, tmp_path):
    p_ca = lane["probe"](lane["ca"], persistent_id="cbsa-backend")
    p_us = lane["probe"](lane["us"], persistent_id="cbp-backend")
    passes = [truck_pass(1.5 + 2.5 * i, DRIVER1, TRUCK1, dwell_s=1.2) for i in range(8)]
    agent, config = lane["start"](passes)
    time.sleep(random.uniform(5.0, 8.0))  # somewhere in the middle of the traffic
    assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1.0)
    again = Agent(tmp_path, config).start()
    lane["agents"].append(again)
    time.sleep(max(0.0, passes[-1]["at_s"] + 6 - 9))  # the rest of the traffic, then some
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        pending = db_rows(tmp_path, "SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL")[0][0]
        open_reads = db_rows(tmp_path, "SELECT count(*) FROM reads WHERE consumed_by IS NULL")[0][0]
        if pending == 0 and open_reads == 0:
            break
        time.sleep(0.5)
    events = db_rows(tmp_path, "SELECT seq, event_id FROM events ORDER BY seq")
    assert events, again.log_text()[-3000:]
    # Every journaled read ended in exactly one event (or was a stray), and each event
    # reached each back end: duplicates only with the same event_id.
    assert db_rows(tmp_path, "SELECT count(*) FROM reads WHERE consumed_by IS NULL") == [(0,)]
    consumed = {r[0] for r in db_rows(tmp_path, "SELECT DISTINCT consumed_by FROM reads")} - {"stray"}
    assert consumed == {e for _, e in events}
    assert [s for s, _ in events] == list(range(1, len(events) + 1))
    for probe in (p_ca, p_us):
        got = probe.wait("/events", len(events), timeout=20)
        assert {e["event_id"] for e in got} == {e for _, e in events}
        assert verify_chain(got) == []


def test_garbage_on_the_serial_line_never_crashes_the_daemon(lane, tmp_path):
    """A 'reader' on a TCP socket (pyserial socket://) that sends only noise."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    stop = threading.Event()

    def noise():
        rnd = random.Random(7)
        while not stop.is_set():
            server.settimeout(0.5)
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                try:
                    while not stop.is_set():
                        conn.sendall(bytes(rnd.getrandbits(8) for _ in range(256)) + b"\xff\xf9\xff\x00")
                        time.sleep(0.02)
                except OSError:
                    pass

    t = threading.Thread(target=noise, daemon=True)
    t.start()
    try:
        p_ca = lane["probe"](lane["ca"])
        agent, config = lane["start"](None, url=f"socket://127.0.0.1:{server.getsockname()[1]}")
        time.sleep(6)
        assert agent.proc.poll() is None, agent.log_text()[-3000:]
        code, out, _ = cli("--config", str(config), "status", "--json")
        doc = json.loads(out)
        assert doc["daemon"]["running"] and doc["readers"][0]["state"] != "up"
        assert code == 1  # degraded, not dead
        assert p_ca.wait("/status", 1)[0]["state"] == "online"
        assert agent.kill(signal.SIGTERM) == 0
    finally:
        stop.set()
        server.close()
