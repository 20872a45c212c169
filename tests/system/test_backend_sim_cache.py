"""The back-end simulator's side of the cache protocol, against a real mosquitto (DESIGN 2.6).

Snapshots in parts (consecutive seqs, under the agent's size bound, `part`/`parts` only
when there is more than one), resync answered with the later messages while the history
holds them and with a snapshot otherwise, no snapshot on a reconnect (the lane's
persistent session delivers what it missed), and signed parts that the agent's own COSE
code accepts. Every message is read raw off the broker by a plain paho client.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.backend.__main__ import main as backend_main
from simulators.backend.parts import History, build, cut, encode_record
from simulators.fleet import iter_big_cache, shape_for_records
from tests.helpers import wait_for
from tests.system.test_backend_simulator import backend  # noqa: F401  (the same fixture: a started Backend)

ROOT = Path(__file__).resolve().parents[2]
CACHE = "border/0901/cache"
REQUESTS = "border/0901/C3/requests"
AGENT_LIMIT = 1024 * 1024  # the agent's default store.max_message_kb, in bytes
PLAIN_KEYS = {"v", "type", "source", "seq", "op", "records"}


def drivers(n: int, start: int = 0) -> list[dict]:
    return [{"kind": "driver", "id": f"DRV-{i:06d}", "name": f"Driver {i}", "card_epc": f"E2{i:022X}",
             "card_expires_ms": 1_800_000_000_000, "status": "valid", "programs": []}
            for i in range(start, start + n)]


class Listener:
    """A plain paho client on the cache topic that keeps the raw payloads (and can send requests).

    With `client_id` it stands in for the agent's persistent session: clean session off,
    so what is published while it is away waits for it on the broker.
    """

    def __init__(self, broker, client_id: str | None = None):
        self.broker, self.inbox = broker, queue.Queue()
        self.client_id = client_id or f"watch-{uuid.uuid4().hex[:8]}"
        self.client: mqtt.Client | None = None
        self.connect()

    def connect(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                             clean_session=False)
        client.on_message = lambda c, u, msg: self.inbox.put(msg.payload)
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        client.subscribe(CACHE, qos=1)
        assert subscribed.wait(5)
        self.client = client

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def raw(self, timeout: float = 10.0) -> bytes:
        return self.inbox.get(timeout=timeout)

    def next(self, timeout: float = 10.0) -> dict:
        return cbor2.loads(self.raw(timeout))

    def take(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]

    def resync(self, have_seq, source: str = "CA") -> None:
        payload = {"v": 1, "type": "resync", "source": source, "have_seq": have_seq}
        self.client.publish(REQUESTS, cbor2.dumps(payload), qos=1).wait_for_publish(5)


@pytest.fixture
def listen(broker):
    made = []

    def make(client_id: str | None = None) -> Listener:
        made.append(Listener(broker, client_id))
        return made[-1]
    yield make
    for item in made:
        item.close()


def assert_one_snapshot(messages: list[dict], first_seq: int) -> list[dict]:
    """`messages` are one snapshot in n > 1 parts from `first_seq`; returns its records."""
    n = len(messages)
    assert n > 1
    assert [(m["seq"], m["op"], m["part"], m["parts"]) for m in messages] == \
        [(first_seq + i, "snapshot", i + 1, n) for i in range(n)]
    assert all(set(m) == PLAIN_KEYS | {"part", "parts"} for m in messages)
    return [r for m in messages for r in m["records"]]


# --- parts: the pure cut ------------------------------------------------------------------------

def test_a_message_is_built_byte_for_byte_as_cbor2_would_encode_it():
    records = drivers(300)
    envelope = {"v": 1, "type": "cache", "source": "CA", "seq": 70_000, "op": "snapshot", "part": 2, "parts": 31}
    assert build(envelope, [encode_record(r) for r in records]) == cbor2.dumps({**envelope, "records": records})
    assert build(envelope, []) == cbor2.dumps({**envelope, "records": []})


@pytest.mark.parametrize("max_kb", [4, 64, 1024])
def test_records_are_cut_by_encoded_size_not_by_count(max_kb):
    encoded = [encode_record(r) for r in iter_big_cache(3, 0, shape_for_records(20_000))]
    runs = cut(encoded, max_kb * 1024)
    assert [r for run in runs for r in run] == encoded
    envelope = {"v": 1, "type": "cache", "source": "CA", "seq": 2**40, "op": "snapshot", "part": 2**31,
                "parts": 2**31}
    sizes = [len(build(envelope, run)) for run in runs]
    assert max(sizes) <= max_kb * 1024 - 300  # room left for the COSE wrapper
    largest = max(map(len, encoded))
    assert all(size > max_kb * 1024 - 512 - largest for size in sizes[:-1])  # and full: not a fixed count
    assert cut([], 4096) == [[]]  # an empty cache is one (empty) message


def test_the_history_is_bounded_by_count_and_bytes_and_a_rewound_seq_replaces_what_followed():
    history = History(max_messages=3, max_bytes=1_000)
    for seq in range(1, 6):
        history.add(seq, bytes(100))
    assert history.span == (3, 5) and history.after(2, 5) is not None and history.after(1, 5) is None
    history.add(6, bytes(900))  # 1,200 bytes: 3 and 4 go, 5 and 6 make the bound exactly
    assert history.span == (5, 6) and history.size_bytes == 1_000
    history.add(7, bytes(10), part=1)
    history.add(8, bytes(10), part=2)
    assert [s.seq for s in history.after(6, 8)] == [7, 8] and history.after(7, 8) is None  # not from part 2
    history.add(7, bytes(20))  # sent again: 7 is replaced and 8 is gone
    assert history.span == (6, 7) and history.after(6, 8) is None and history.size_bytes == 920
    assert History(max_messages=0).after(0, 1) is None


# --- snapshots in parts on the wire ------------------------------------------------------------------

def test_a_port_sized_snapshot_goes_in_parts_under_the_agents_bound(backend, listen):
    listener = listen()
    records = list(iter_big_cache(5, 1_767_225_600_000, shape_for_records(15_000)))
    b = backend(records=records)  # the first connect: the snapshot, in parts
    raws = [listener.raw()]
    n = cbor2.loads(raws[0])["parts"]
    raws += [listener.raw() for _ in range(n - 1)]
    assert max(len(raw) for raw in raws) < AGENT_LIMIT
    got = assert_one_snapshot([cbor2.loads(raw) for raw in raws], first_seq=1)
    assert got == records
    assert b.cache_seq == n and b.history_span == (1, n)


def test_a_snapshot_that_fits_one_message_has_no_part_keys(backend, listen):
    listener = listen()
    b = backend(records=drivers(50))
    message = listener.next()
    assert set(message) == PLAIN_KEYS and (message["op"], message["seq"]) == ("snapshot", 1)
    assert b.publish_snapshot() == [2]
    assert set(listener.next()) == PLAIN_KEYS


def test_a_large_upsert_goes_as_several_upserts_without_part_keys(backend, listen):
    listener = listen()
    b = backend(records=[], max_message_kb=16)
    listener.next()
    seqs = b.publish_cache("upsert", drivers(400))
    got = listener.take(len(seqs))
    assert len(seqs) > 1 and [m["seq"] for m in got] == seqs == list(range(2, 2 + len(seqs)))
    assert all(m["op"] == "upsert" and set(m) == PLAIN_KEYS for m in got)
    assert [r for m in got for r in m["records"]] == drivers(400)


# --- resync: the later messages, or a snapshot ---------------------------------------------------

def test_a_resync_inside_the_history_gets_exactly_the_later_messages(backend, listen):
    listener = listen()
    b = backend(records=drivers(20))
    sent = {1: listener.raw()}
    for n in range(2, 7):
        assert b.publish_cache("upsert", drivers(1, start=100 + n)) == [n]
        sent[n] = listener.raw()
    listener.resync(3)
    assert [listener.raw() for _ in range(3)] == [sent[4], sent[5], sent[6]]  # the very bytes, seqs 4..6
    assert b.publish_cache("upsert", drivers(1, start=200)) == [7]
    assert listener.next()["seq"] == 7  # nothing else came between
    assert b.resyncs == [{"have_seq": 3, "answer": "messages", "seqs": [4, 5, 6]}]


def test_a_resync_from_before_a_snapshot_gets_all_its_parts_again(backend, listen):
    listener = listen()
    b = backend(records=drivers(300), max_message_kb=16)
    first = listener.next()
    parts = [first] + listener.take(first["parts"] - 1)
    assert b.publish_cache("upsert", drivers(1, start=900)) == [len(parts) + 1]
    listener.next()
    listener.resync(0)  # a lane that dropped the staged parts: have_seq 0 is the history's start
    again = listener.take(len(parts) + 1)
    assert again[:-1] == parts and again[-1]["seq"] == len(parts) + 1
    assert b.resyncs[-1]["answer"] == "messages"


@pytest.mark.parametrize("case", ["older_than_history", "ahead_of_us", "inside_a_snapshot", "nothing_later"])
def test_a_resync_the_history_cannot_answer_gets_a_snapshot_in_parts(backend, listen, case):
    listener = listen()
    b = backend(records=drivers(300), max_message_kb=16, history_messages=4)
    first = listener.next()
    n = first["parts"]
    listener.take(n - 1)
    for k in range(1, 4):
        b.publish_cache("upsert", drivers(1, start=900 + k))
    listener.take(3)
    newest = n + 3  # the history now holds seqs n .. n + 3: the last part and three upserts
    assert b.history_span == (newest - 3, newest)
    have = {"older_than_history": 1, "ahead_of_us": newest + 50,
            "inside_a_snapshot": n - 1,  # the next one would be part n of n: the lane has no parts 1..n-1
            "nothing_later": newest}[case]
    listener.resync(have)
    start = max(have, newest) + 1  # ahead of us: our next seq must beat the lane's
    snapshot = listener.take(n)
    records = assert_one_snapshot(snapshot, first_seq=start)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in drivers(300) + [
        d for k in range(1, 4) for d in drivers(1, start=900 + k)])
    assert b.resyncs == [{"have_seq": have, "answer": "snapshot", "seqs": list(range(start, start + n))}]


def test_a_resync_for_another_source_is_not_answered(backend, listen):
    listener = listen()
    b = backend(records=drivers(5))
    listener.next()
    listener.resync(0, source="US")
    listener.resync(1)  # ours: nothing after seq 1, so a snapshot
    assert listener.next()["seq"] == 2
    assert [r["have_seq"] for r in b.resyncs] == [1]


# --- connects ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["first", "always"])
def test_a_reconnect_resends_no_snapshot_the_lanes_session_keeps_what_it_missed(broker, backend, listen, mode):
    lane = listen(client_id="laneagent-0901-C3-cbsa")  # the agent's persistent session (DESIGN 2.3)
    b = backend(records=drivers(10), snapshot_on_connect=mode)
    assert lane.next()["op"] == "snapshot"
    lane.close()  # the lane is away ...
    broker.restart()  # ... and the back end's connection drops and comes back
    wait_for(lambda: b.connections == 2 and b.connected, 15, "the back end to reconnect")
    b.publish_cache("upsert", drivers(1, start=50))
    lane.connect()  # the session kept everything published while the lane was away
    last = b.publish_cache("upsert", drivers(1, start=51))[0]
    got = [lane.next()]
    while got[-1]["seq"] != last:
        got.append(lane.next())
    # QoS 1 is at least once: seq 1 may come again (same seq, a duplicate the agent ignores); what
    # matters is that nothing new went out on the reconnect
    new = [(m["seq"], m["op"]) for m in got if m["seq"] > 1]
    if mode == "first":
        assert new == [(2, "upsert"), (3, "upsert")]
    else:  # the old behaviour, kept behind the flag: a snapshot on every connect
        assert new == [(2, "snapshot"), (3, "upsert"), (4, "upsert")]


def test_a_back_end_restarted_with_its_seq_file_sends_no_snapshot(backend, listen, tmp_path):
    listener = listen()
    seq_file = tmp_path / "ca.seq"
    first = backend(records=drivers(5), seq_file=seq_file)
    assert listener.next()["seq"] == 1
    first.stop()
    again = backend(records=drivers(5), seq_file=seq_file)  # connected and subscribed: no snapshot went out
    assert again.publish_cache("upsert", drivers(1, start=9)) == [2]
    assert (listener.next()["seq"], again.resyncs) == (2, [])


# --- signed downlink ------------------------------------------------------------------------------

def test_every_signed_part_and_every_resent_message_verifies_with_the_agents_cose(backend, listen, tmp_path):
    from agent.sync.cose import load_public_key, verify_sign1
    from simulators.backend.signing import new_key_pair

    key = new_key_pair(tmp_path / "cbsa.pub")
    public = load_public_key(str(tmp_path / "cbsa.pub"))
    listener = listen()
    b = backend(records=drivers(300), max_message_kb=16, signing_key=key)
    raws = [listener.raw()]
    n = cbor2.loads(verify_sign1(raws[0], public))["parts"]
    raws += [listener.raw() for _ in range(n - 1)]
    assert max(len(raw) for raw in raws) <= 16 * 1024
    parts = [cbor2.loads(verify_sign1(raw, public)) for raw in raws]
    assert [r["id"] for r in assert_one_snapshot(parts, first_seq=1)] == [d["id"] for d in drivers(300)]
    listener.resync(0)  # answered from the history: the same signed bytes
    assert [listener.raw() for _ in range(n)] == raws
    listener.resync(n)  # nothing later: a fresh snapshot, signed part by part
    fresh = [cbor2.loads(verify_sign1(listener.raw(), public)) for _ in range(n)]
    assert_one_snapshot(fresh, first_seq=n + 1)
    assert b.cache_seq == 2 * n


# --- the command line ------------------------------------------------------------------------------

def test_cli_sends_a_generated_port_sized_snapshot_in_parts(broker, listen):
    listener = listen()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.backend", "--name", "cbsa", "--country", "CA", "--host", broker.host,
         "--port", str(broker.port), "--snapshot-records", "3000", "--max-message-kb", "64"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        raw = listener.raw(20)
        n = cbor2.loads(raw)["parts"]
        raws = [raw] + [listener.raw() for _ in range(n - 1)]
        assert max(len(r) for r in raws) <= 64 * 1024
        records = assert_one_snapshot([cbor2.loads(r) for r in raws], first_seq=1)
        assert len(records) == 3000 and len({(r["kind"], r["id"]) for r in records}) == 3000
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "3000 records" in err and "cache seq " + str(n) in err


def test_help_gives_every_new_option_with_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        backend_main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--snapshot-records", "--max-message-kb", "--snapshot-on-connect", "--history", "--history-mb"):
        assert f"e.g. {option}" in " ".join(text.split()), option
        assert f" {option} " in text.split("examples:")[1], option
