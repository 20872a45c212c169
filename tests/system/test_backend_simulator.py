"""The back-end simulator against a real mosquitto: cache out, crossings in, verified independently.

Crossings are built here by hand from the DESIGN 2.5 text (hashlib + cbor2, no agent
code and no simulator code), then sent by a plain paho client, so the simulator's
verifier is checked against a third reading of the contract.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.backend import Backend, crossing_line
from simulators.fleet import Fleet
from tests.system.test_fleet import (
    FIELDS as RECORD_FIELDS,  # DESIGN 2.6 fields, pinned once
)

ROOT = Path(__file__).resolve().parents[2]
ALL_SECTIONS = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral")


# --- crossings built by hand ---------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crossing(seq: int, prev_hash: str, lane: str = "C3", kind: str = "entry") -> dict:
    """A complete crossing (all eight sections) chained onto `prev_hash`."""
    t0 = 1_767_225_600_000 + seq * 60_000
    sections = {
        "tags": [{"epc": "34143A1B4549436DA9B4ACCF", "role": "conveyance", "antenna": 1, "reader": "booth",
                  "count": 31, "rssi_max": -44, "first_ms": t0, "last_ms": t0 + 2900}],
        "driver": [{"id": "DRV-0044", "name": "Jean Tremblay"}],
        "conveyance": {"id": "TRK-0012", "carrier": "HNYW"},
        "equipment": [],
        "trip": {"id": "TRIP-HNYW-000012", "carrier": "HNYW", "eta_ms": t0 + 600_000},
        "shipments": [{"id": "SHP-HNYW-000001"}],
        "findings": [],
        "referral": {"refer": False, "reasons": [], "random": False},
    }
    identity = {"v": 1, "type": "crossing", "event_id": str(uuid.uuid4()), "seq": seq, "port": "0901",
                "lane": lane, "entering": "CA", "leaving": "US", "started_ms": t0, "ended_ms": t0 + 5000}
    digests = {name: sha(cbor2.dumps(value, canonical=True)) for name, value in sections.items()}
    hash_ = sha(bytes.fromhex(prev_hash) + cbor2.dumps(identity, canonical=True) + cbor2.dumps(digests, canonical=True))
    return {**identity, "kind": kind, **sections, "digests": digests, "prev_hash": prev_hash, "hash": hash_}


def chain(n: int, lane: str = "C3") -> list[dict]:
    events, prev = [], "0" * 64
    for seq in range(1, n + 1):
        events.append(crossing(seq, prev, lane))
        prev = events[-1]["hash"]
    return events


class Lane:
    """A plain paho client standing in for the agent: publishes, and listens on chosen topics."""

    def __init__(self, broker, subscribe: tuple[str, ...] = ()):
        self.inbox: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lane-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, msg: self.inbox.put((msg.topic, cbor2.loads(msg.payload)))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe([(t, 1) for t in subscribe])
            assert subscribed.wait(5)

    def send(self, payload, topic: str = "border/0901/C3/events") -> None:
        self.client.publish(topic, cbor2.dumps(payload), qos=1).wait_for_publish(5)

    def next(self, timeout: float = 5.0):
        return self.inbox.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def lane(broker):
    lanes = []

    def make(*subscribe: str) -> Lane:
        lanes.append(Lane(broker, subscribe))
        return lanes[-1]
    yield make
    for item in lanes:
        item.close()


@pytest.fixture
def backend(broker):
    started = []

    def make(**kwargs) -> Backend:
        kwargs.setdefault("name", "cbsa")
        kwargs.setdefault("country", "CA")
        started.append(Backend(host=broker.host, port=broker.port, **kwargs).start())
        return started[-1]
    yield make
    for item in started:
        item.stop()


# --- cache downlink --------------------------------------------------------------------------

def test_snapshot_on_connect_is_a_valid_cache_message(backend, lane):
    listener = lane("border/0901/cache")
    fleet = Fleet.generate(seed=3, now_ms=1_767_225_600_000, trucks=8)
    backend(records=fleet.records_for("CA"))
    topic, message = listener.next()
    assert topic == "border/0901/cache"
    assert {k: message[k] for k in ("v", "type", "source", "seq", "op")} == \
        {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot"}
    assert message["records"] == fleet.records_for("CA")
    for record in message["records"]:
        assert set(record) == RECORD_FIELDS[record["kind"]] | {"kind"}


def test_cache_seq_rises_by_one_per_message_and_large_snapshots_go_in_parts(backend, lane):
    listener = lane("border/0901/cache")
    b = backend(records=[], max_message_kb=64)
    listener.next()  # the (empty) snapshot on connect
    drivers = [{"kind": "driver", "id": f"DRV-{i:05d}", "name": "x", "card_epc": f"{i:024X}",
                "card_expires_ms": 1, "status": "valid", "programs": []} for i in range(1500)]
    seqs = b.publish_cache("snapshot", drivers)
    assert len(seqs) > 1 and seqs == list(range(2, 2 + len(seqs)))
    got = [listener.next()[1] for _ in seqs]
    assert [(m["seq"], m["op"], m["part"], m["parts"]) for m in got] == \
        [(seq, "snapshot", i, len(seqs)) for i, seq in enumerate(seqs, 1)]
    assert [r for m in got for r in m["records"]] == drivers
    assert b.publish_cache("delete", drivers[:1]) == [seqs[-1] + 1]
    assert listener.next()[1]["records"] == [{"kind": "driver", "id": "DRV-00000"}]


def test_resync_request_from_its_source_gets_a_fresh_snapshot(backend, lane):
    listener = lane("border/0901/cache")
    backend(records=Fleet.generate(seed=3, now_ms=0, trucks=4).records_for("CA"))
    assert listener.next()[1]["seq"] == 1
    listener.send({"v": 1, "type": "resync", "source": "US", "have_seq": 0}, "border/0901/C3/requests")
    listener.send({"v": 1, "type": "resync", "source": "CA", "have_seq": 7}, "border/0901/C3/requests")
    _, message = listener.next()
    # only the CA request is answered, above the lane's have_seq (it may know a later seq than us)
    assert (message["op"], message["seq"], message["source"]) == ("snapshot", 8, "CA")
    assert len(message["records"]) > 0
    with pytest.raises(queue.Empty):
        listener.next(timeout=0.5)


# --- crossings uplink: verification ---------------------------------------------------------

def test_a_correctly_chained_pair_verifies(backend, lane):
    b = backend(expect_share=ALL_SECTIONS)
    sender = lane()
    for event in chain(2):
        sender.send(event)
    assert b.wait_for_events(2, 5)
    assert b.problems() == []
    assert b.seqs == {"C3": [1, 2]} and b.duplicates == 0


def test_a_broken_chain_is_flagged(backend, lane):
    b = backend()
    first, _ = chain(2)
    sender = lane()
    sender.send(first)
    sender.send(crossing(2, "ab" * 32))  # its own hash is right, its link is not
    assert b.wait_for_events(2, 5)
    assert [p for p in b.problems() if "chain broken" in p] == [p for p in b.problems()]
    assert len(b.problems()) == 1


def test_a_seq_gap_is_flagged(backend, lane):
    b = backend()
    events = chain(4)
    sender = lane()
    for event in (events[0], events[3]):
        sender.send(event)
    assert b.wait_for_events(2, 5)
    assert b.problems() == ["lane C3: missing seq 2-3 (2 lost or late)"]
    sender.send(events[1])
    sender.send(events[2])  # late, not lost: the gap closes and the links check out
    assert b.wait_for_events(4, 5)
    assert b.problems() == []


def test_a_digest_mismatch_is_flagged(backend, lane):
    b = backend()
    event = chain(1)[0]
    event["driver"] = [{"id": "DRV-9999", "name": "Somebody Else"}]  # changed after hashing
    lane().send(event)
    assert b.wait_for_events(1, 5)
    assert b.problems() == [f"lane C3 seq 1 ({event['event_id'][-8:]}): digest mismatch in section 'driver'"]


def test_a_duplicate_is_counted_not_an_error(backend, lane):
    received = []
    b = backend(on_event=received.append)
    event = chain(1)[0]
    sender = lane()
    sender.send(event)
    sender.send(event)
    assert b.wait_for(lambda x: x.duplicates == 1, 5)
    assert b.problems() == [] and len(b.events) == 1
    assert [r.duplicate for r in received] == [False, True]


def test_sections_outside_the_share_are_flagged(backend, lane):
    b = backend(name="cbp", country="US", expect_share=("tags", "conveyance", "findings", "referral"))
    event = chain(1)[0]
    event["kind"] = "exit"
    for section in ("equipment", "trip", "shipments"):
        del event[section]
    lane().send(event)  # still carries `driver`, which CBP's share leaves out
    assert b.wait_for_events(1, 5)
    assert b.problems() == [f"lane C3 seq 1 ({event['event_id'][-8:]}): got sections not shared with us: ['driver']"]


def test_alerts_status_and_malformed_payloads_are_kept_apart(backend, lane):
    b = backend()
    sender = lane()
    sender.send({"v": 1, "type": "status", "state": "online", "seq": 0}, "border/0901/C3/status")
    sender.send({"v": 1, "type": "alert", "kind": "gap", "detail": {"count": 3}}, "border/0901/C3/alerts")
    sender.client.publish("border/0901/C3/health", b"\xff\x00not cbor", qos=1).wait_for_publish(5)
    assert b.wait_for(lambda x: x.alerts and x.statuses and x.problems(), 5)
    assert b.last_status("C3")["state"] == "online"
    assert b.alerts[0]["kind"] == "gap"
    assert "not CBOR" in b.problems()[0]


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_acks_are_sent_for_every_crossing(backend, lane, version):
    b = backend(ack=True, mqtt_version=version)
    listener = lane("border/0901/C3/acks")
    events = chain(3)
    for event in events:
        listener.send(event)
    acked = []
    while len(acked) < 3:
        topic, message = listener.next()
        assert message["v"] == 1 and message["type"] == "ack"
        acked += message["event_ids"]
    assert acked == [e["event_id"] for e in events]
    assert b.acks_sent == acked


# --- broker restarts and the persistent session ---------------------------------------------

@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_survives_a_broker_restart_and_finds_queued_crossings(broker, backend, lane, version):
    b = backend(mqtt_version=version)
    events = chain(3)
    sender = lane()
    sender.send(events[0])
    assert b.wait_for_events(1, 5)
    sender.close()

    broker.restart()  # SIGTERM: mosquitto saves sessions and queued messages
    assert b.wait_for(lambda x: x.connections == 2 and x.connected, 10)
    lane().send(events[1])
    assert b.wait_for_events(2, 5)

    b.stop()  # away; the broker queues for its session ...
    late = lane()
    late.send(events[2])
    late.close()
    broker.restart()  # ... through another restart
    again = backend(mqtt_version=version)
    assert again.wait_for_events(1, 5)
    assert list(again.events) == [events[2]["event_id"]]


# --- the command line --------------------------------------------------------------------------

def test_cli_prints_verifies_acks_and_exits_cleanly_on_sigterm(broker, lane, tmp_path):
    cache = tmp_path / "cache-CA.json"
    cache.write_text(json.dumps(Fleet.generate(seed=1, now_ms=0, trucks=4).cache_message("CA")))
    listener = lane("border/0901/cache", "border/0901/C3/acks")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.backend", "--name", "cbsa", "--country", "CA", "--host", broker.host,
         "--port", str(broker.port), "--cache", str(cache), "--json", "--ack"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        topic, snapshot = listener.next(10)  # connected and published: it is subscribed too
        assert topic == "border/0901/cache"
        assert snapshot["records"] == json.loads(cache.read_text())["records"]
        events = chain(2)
        for event in events:
            listener.send(event)
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [line["payload"]["seq"] for line in lines] == [1, 2]
        assert all(line["channel"] == "events" and line["problems"] == [] for line in lines)
        acked = []
        while len(acked) < 2:
            topic, message = listener.next()
            assert topic == "border/0901/C3/acks"
            acked += message["event_ids"]
        assert acked == [e["event_id"] for e in events]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "2 crossings" in err and "0 problems" in err and "Traceback" not in err


def test_the_verifier_does_not_use_the_agents_code():
    code = ("import sys, simulators.backend; "
            "print([m for m in sys.modules if m == 'agent' or m.startswith('agent.')])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "[]"


def test_a_crossing_line_shows_only_what_was_shared():
    event = chain(1)[0]
    assert crossing_line(event, "CA") == (
        f"[CA entry] seq 1 lane C3 ev {event['event_id'][-8:]} truck TRK-0012 driver DRV-0044 trailer - "
        "trip TRIP-HNYW-000012 tags 1 findings: - referral: no")
    for section in ("driver", "equipment", "trip", "shipments"):
        del event[section]
    hit = {"code": "lookout_hit", "detail": {"source": "US", "lookout_id": "LKO-US-0001"}}
    event.update(kind="exit", findings=[hit], referral={"refer": True, "reasons": ["lookout_hit"], "random": False})
    assert crossing_line(event, "US").endswith(
        "truck TRK-0012 tags 1 findings: lookout_hit(US:LKO-US-0001) referral: yes (lookout_hit)")


def test_a_signing_back_end_sends_cose_sign1_the_agent_accepts(broker, tmp_path):
    from agent.sync.cose import load_public_key, verify_sign1
    from simulators.backend.signing import new_key_pair

    key = new_key_pair(tmp_path / "cbsa.pub")
    got = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watch-signed")
    watcher.on_message = lambda c, u, m: got.append(m.payload)
    watcher.connect(broker.host, broker.port)
    watcher.subscribe("border/0901/cache", qos=1)
    watcher.loop_start()
    time.sleep(0.3)
    backend = Backend("cbsa", "CA", broker.host, broker.port, records=[{"kind": "driver", "id": "D1"}],
                      signing_key=key).start()
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        payload = verify_sign1(got[0], load_public_key(str(tmp_path / "cbsa.pub")))
        assert cbor2.loads(payload)["records"] == [{"kind": "driver", "id": "D1"}]
    finally:
        backend.stop()
        watcher.loop_stop()
        watcher.disconnect()
