"""Property: whatever arrives, the live cache is a complete snapshot plus the messages after it.

A back end sends snapshots (in 1-3 parts), upserts and deletes with rising seqs; the
lane receives them with losses, repeats and restarts in between. After every step the
records a lookup sees must equal the records of the last snapshot swapped in plus the
deltas that follow it seq by seq, or be unchanged: never a half-staged snapshot, never
a delta applied across a gap. The feed runs on a real SQLite file, driven directly
(the thread around it is tested in test_snapshot_parts.py).
"""

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.cachefeed import CacheFeed
from agent.core.guard import ItemGuard
from agent.handoff import CacheMessage
from agent.store.writer import StoreWriter

IDS = [f"D{i}" for i in range(6)]


def driver(rid, version):
    return {"kind": "driver", "id": rid, "name": f"{rid} v{version}", "card_epc": f"A{rid[1:]}", "status": "valid"}


@st.composite
def backend_script(draw):
    """What the back end sends, in order: a list of (seq, message)."""
    out, seq = [], 0
    for version in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["snapshot", "upsert", "delete"]))
        ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=len(IDS), unique=True))
        if op == "snapshot":
            records = [driver(i, version) for i in ids]
            n = draw(st.integers(1, min(3, len(records))))
            size = -(-len(records) // n)
            chunks = [records[k * size:(k + 1) * size] for k in range(n)]
            chunks = [c for c in chunks if c]
            for k, chunk in enumerate(chunks):
                seq += 1
                msg = {"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": "snapshot", "records": chunk}
                if len(chunks) > 1:
                    msg.update(part=k + 1, parts=len(chunks))
                out.append(msg)
        else:
            seq += 1
            records = [driver(i, version) if op == "upsert" else {"kind": "driver", "id": i} for i in ids]
            out.append({"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": op, "records": records})
    return out


@st.composite
def deliveries(draw):
    """The script as the lane receives it: each message delivered, lost or repeated; restarts between."""
    script = draw(backend_script())
    steps = []
    for msg in script:
        fate = draw(st.sampled_from(["deliver"] * 6 + ["lose", "twice", "restart_before"]))
        if fate == "restart_before":
            steps.append("restart")
        if fate != "lose":
            steps.append(msg)
        if fate == "twice":
            steps.append(msg)
    if draw(st.booleans()) and script:  # an old message replayed at the end
        steps.append(draw(st.sampled_from(script)))
    return script, steps


def expected_states(script, live_seq):
    """The records a live seq stands for: its snapshot's parts plus the deltas after it, seq by seq."""
    if live_seq == 0:
        return {}
    by_seq = {m["seq"]: m for m in script}
    deltas, seq = [], live_seq
    while seq > 0 and by_seq[seq]["op"] != "snapshot":
        deltas.append(by_seq[seq])
        seq -= 1
    records = {}
    if seq > 0:
        last = by_seq[seq]
        assert last.get("part", 1) == last.get("parts", 1), "the live seq ends in the middle of a snapshot"
        first = seq - last.get("parts", 1) + 1
        for s in range(first, seq + 1):
            records.update({r["id"]: r["name"] for r in by_seq[s]["records"]})
    for d in reversed(deltas):
        for r in d["records"]:
            if d["op"] == "upsert":
                records[r["id"]] = r["name"]
            else:
                records.pop(r["id"], None)
    return records


class Feed:
    def __init__(self, path):
        self.path = path
        self.open()

    def open(self):
        self.writer = StoreWriter(self.path)
        counters = Counter()
        self.feed = CacheFeed(self.writer, counters, lambda: 1_800_000_000_000, lambda *a: None,
                              lambda *a: None)
        self.guard = ItemGuard(self.writer, counters, lambda *a: None)
        self.feed.recover()

    def restart(self):
        self.writer.close()
        self.open()

    def send(self, msg):
        self.feed.take(CacheMessage("cbsa", msg))
        while self.feed.busy():
            self.feed.work(self.guard)

    def live(self):
        view = self.writer.cache
        seq = {s["source"]: s["seq"] for s in view.sources()}.get("CA", 0)
        return seq, {i: r["name"] for i in IDS if (r := view.record("CA", "driver", i))}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries())
def test_the_live_cache_is_always_a_complete_snapshot_plus_what_follows(tmp_path_factory, case):
    script, steps = case
    lane = Feed(str(tmp_path_factory.mktemp("feed") / "agent.db"))
    try:
        before = lane.live()
        for step in steps:
            if step == "restart":
                lane.restart()
                assert lane.live() == before, "a restart changed the live cache"
            else:
                lane.send(step)
            seq, records = lane.live()
            assert records == expected_states(script, seq)
            before = (seq, records)
        lane.feed.worker.wait()
        tables = {t for (t,) in lane.writer.cache_db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'records_%'")}
        live = {f"records_{s}_{g}" for s, g in lane.writer.cache_db.conn.execute("SELECT source, gen FROM cache_sources")}
        assert tables <= live or lane.feed.snapshots.staging, "generations no longer live were left behind"
    finally:
        lane.writer.close()
