"""Fault injection with real processes: the agent SIGKILLed at random instants, brokers
stopped and restarted during traffic, both brokers down through a long backlog.

Each test ends with what a back end can check: every passage the agent recorded was
delivered to both, `seq` contiguous, duplicates only as the same `event_id` with the
same hash, and `PRAGMA integrity_check` ok. `make soak` runs the kill test 1,000 times.
"""

import os
import random
import signal
import sqlite3
import time

import pytest

from agent import config as config_mod
from agent.statusfile import StatusFile, StatusUnavailable
from agent.store.writer import StoreWriter
from tests.bench.drain_bench import fill_backlog
from tests.helpers import wait_for
from tests.lane_harness import Agent, ReaderSim, truck_pass, verify_chain, write_config
from tests.mqtt_probe import Probe

KILLS = int(os.environ.get("LANEAGENT_KILLS", "20"))


def db(tmp_path, sql):
    conn = sqlite3.connect(f"file:{tmp_path / 'state' / 'agent.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def settle(tmp_path, timeout=60.0):
    """Wait until nothing is owed to anyone and no journaled read waits for its passage."""
    try:
        return wait_for(lambda: db(tmp_path, "SELECT (SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL)"
                                             " + (SELECT count(*) FROM reads WHERE consumed_by IS NULL)") == [(0,)],
                        timeout, "nothing owed and no open read")
    except AssertionError:
        return False


def events(tmp_path) -> int:
    try:
        return db(tmp_path, "SELECT count(*) FROM events")[0][0]
    except sqlite3.OperationalError:  # no database yet: the agent is starting
        return 0


def daemon_status(tmp_path) -> dict:
    try:
        return StatusFile(str(tmp_path / "state" / "status.json")).read()
    except StatusUnavailable:
        return {}


def backends_connected(tmp_path) -> dict:
    """Back end name -> connected, from a fresh status file ({} while there is none)."""
    doc = daemon_status(tmp_path)
    if not StatusFile.is_fresh(doc):
        return {}
    return {b["name"]: b.get("connected") for b in doc.get("backends", [])}


def subscribed(probe, broker_name):
    """The probe's subscription is in place: a marker it publishes comes back to it (sent
    again until it does: the first may reach the broker before the SUBSCRIBE)."""
    def echoed():
        if not probe.on(f"/ready-{broker_name}"):
            probe.publish(f"border/0901/C3/ready-{broker_name}", {"v": 1, "type": "marker"})
        return probe.on(f"/ready-{broker_name}")

    wait_for(echoed, 10, f"the {broker_name} probe's subscription")


def check_delivery(tmp_path, probes):
    events = db(tmp_path, "SELECT seq, event_id, hash FROM events ORDER BY seq")
    assert [s for s, _, _ in events] == list(range(1, len(events) + 1))
    assert db(tmp_path, "PRAGMA integrity_check") == [("ok",)]
    for probe in probes:
        got = probe.wait("/events", len(events), timeout=30)
        by_id: dict[str, dict] = {}
        for e in got:
            if e["event_id"] in by_id:  # a duplicate must be the very same event
                assert by_id[e["event_id"]]["hash"] == e["hash"] and by_id[e["event_id"]]["seq"] == e["seq"]
            by_id.setdefault(e["event_id"], e)
        assert {e: h for _, e, h in events} == {i: e["hash"] for i, e in by_id.items()}
        assert verify_chain(list(by_id.values())) == []
    return len(events)


def traffic(n, start=1.0, every=2.2):
    """n trucks, each with its own tags, so a restart never merges two of them; 1.4 s
    between trucks, more than idle_close_s (1.0), so each is its own passage."""
    return [truck_pass(start + i * every, f"E200000000000000{i:04X}D001", f"E200000000000000{i:04X}C001", dwell_s=0.8)
            for i in range(n)]


@pytest.fixture
def brokers(broker_factory):
    return broker_factory("ca"), broker_factory("us")


def test_sigkill_at_random_instants_loses_nothing_journaled(tmp_path, brokers):
    ca, us = brokers
    probes = [Probe(ca, ["border/0901/C3/events"], "cbsa-check", persistent=True),
              Probe(us, ["border/0901/C3/events"], "cbp-check", persistent=True)]
    rng = random.Random(os.environ.get("LANEAGENT_SEED", "kills"))
    duration = 3.0 + KILLS * 1.4
    sim = ReaderSim(tmp_path, traffic(int(duration / 2.2)))
    config = write_config(tmp_path, sim.path, ca.port, us.port)
    agent = None
    try:
        for _ in range(KILLS):
            agent = Agent(tmp_path, config).start()
            time.sleep(rng.uniform(0.3, 2.0))
            assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
        agent = Agent(tmp_path, config).start()
        time.sleep(max(0.0, duration - KILLS * 1.2))
        assert settle(tmp_path), agent.log_text()[-3000:]
        delivered = check_delivery(tmp_path, probes)
        assert delivered > 0
        assert agent.kill(signal.SIGTERM) == 0
    finally:
        if agent:
            agent.stop()
        sim.stop()
        for p in probes:
            p.close()


def test_brokers_stopped_and_restarted_during_traffic(tmp_path, brokers):
    ca, us = brokers
    probes = [Probe(ca, ["border/0901/C3/events"], "cbsa-check", persistent=True),
              Probe(us, ["border/0901/C3/events"], "cbp-check", persistent=True)]
    sim = ReaderSim(tmp_path, traffic(10))
    agent = Agent(tmp_path, write_config(tmp_path, sim.path, ca.port, us.port)).start()
    try:
        # SIGTERM, not SIGKILL: mosquitto saves its queues only every autosave_interval,
        # so a SIGKILLed broker may lose what it had already acknowledged; that would
        # test mosquitto, not us. (Our own SIGKILL tests are above.) Each outage comes
        # while trucks pass (a new event since the last one) and lasts until the agent
        # has noticed it.
        seen = 0
        for t in range(8):
            name, broker = (("cbsa", ca), ("cbp", us))[t % 2]
            seen = wait_for(lambda s=seen: events(tmp_path) if events(tmp_path) > s else 0, 30, "a new event")
            assert wait_for(lambda: backends_connected(tmp_path).get(name) is True, 30, f"{name} connected")
            broker.stop()
            assert wait_for(lambda: backends_connected(tmp_path).get(name) is False, 30, f"{name} lost")
            broker.start()
        assert settle(tmp_path, timeout=90), agent.log_text()[-3000:]
        assert check_delivery(tmp_path, probes) >= 8
    finally:
        agent.stop()
        sim.stop()
        for p in probes:
            p.close()


def test_long_outage_of_both_drains_oldest_first_alerts_first_within_max_rate(tmp_path, brokers):
    """20,000 events and some alerts built up while both brokers were down."""
    ca, us = brokers
    max_rate = 4000
    probes = [Probe(ca, ["border/0901/C3/#"], "cbsa-check", persistent=True),
              Probe(us, ["border/0901/C3/#"], "cbp-check", persistent=True)]
    for probe, name in zip(probes, ("ca", "us")):
        subscribed(probe, name)  # so the brokers keep the probes' sessions (saved when they stop)
    ca.stop(), us.stop()
    config = write_config(tmp_path, None, ca.port, us.port, us_share='["tags", "alerts"]')
    text = config.read_text().replace("max_rate = 0", f"max_rate = {max_rate}")
    config.write_text(text)
    cfg = config_mod.load(str(config))
    writer = StoreWriter(cfg.store.path)
    fill_backlog(writer, 20_000, cfg)  # each back end's payload, as the core stores it
    from agent.lane.event import alarm_alert
    with writer.transaction():
        for i in range(5):
            writer.add_alert(alarm_alert("test", i, n=i), ["cbsa", "cbp"], int(time.time() * 1000))
    writer.close()
    agent = Agent(tmp_path, config).start()
    try:
        # The agent runs and has tried both brokers, still down.
        assert wait_for(lambda: [(b["connected"], bool(b.get("last_error")))
                                 for b in daemon_status(tmp_path).get("backends", [])] == [(False, True)] * 2
                        and StatusFile.is_fresh(daemon_status(tmp_path)), 30, "both back ends tried and down"), \
            agent.log_text()[-3000:]
        ca.start(), us.start()
        assert settle(tmp_path, timeout=120), agent.log_text()[-3000:]
        for probe in probes:
            got = probe.wait("/events", 20_000, timeout=30)
            with probe.cond:
                order = [(t.rsplit("/", 1)[1], p) for t, p, _ in probe.messages if t.endswith(("/events", "/alerts"))]
            kinds = [k for k, _ in order]
            assert kinds.index("events") > max(i for i, k in enumerate(kinds) if k == "alerts" and
                                               order[i][1]["kind"] == "alarm" and order[i][1]["detail"]["reason"] == "test")
            seqs = [p["seq"] for k, p in order if k == "events"]
            assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(1, 20_001))
            assert len(got) >= 20_000
        # max_rate: the drain of 20,000 events at 4,000/s cannot take less than ~5 s.
        span = db(tmp_path, "SELECT (max(delivered_ms) - min(delivered_ms)) / 1000.0 FROM deliveries "
                            "WHERE backend = 'cbsa' AND item_type = 'event'")[0][0]
        assert span >= 20_000 / max_rate * 0.9
    finally:
        agent.stop()
        for p in probes:
            p.close()
