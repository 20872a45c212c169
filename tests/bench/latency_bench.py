"""`latency` (DESIGN part 4, bars p99 < 50 ms each): how long the moments of a crossing take
through the real daemon, a simulated ThingMagic reader on a pty and two real brokers.

Trucks pass one after the other (60 of them, 3 tags each, read at 10 Hz for DWELL_S,
a new truck every GAP_S); the daemon runs with its trace on (agent/trace.py) and a
subscriber on each broker stamps each event on arrival. All stamps are CLOCK_MONOTONIC,
one clock for the whole machine, so the daemon's and this process's stamps subtract
directly. Segments:

- received -> journaled: a report decoded by the reader session, to the return of the
  group commit that took it (first read of a tag: a new row; later reads: added to its
  row, written at the next flush, DESIGN part 3 promise 1);
- closed -> committed: the passage's closing moment by its rule (its last read +
  idle_close_s) to the return of its event's transaction; so it includes how late the
  core noticed the deadline;
- committed -> PUBACK, per back end: that return to the link's PUBACK callback for the
  event (matched by seq through the subscribers' copies);
- closed -> received, per broker: the closing moment to the subscriber's arrival stamp.

Baseline beside it, same run: the broker round trip alone (a bare paho QoS 1 publish to
the subscriber's broker, publish -> arrival), the floor of the last segment.
`LATENCY_PASSES=n` for a shorter run. `python -m tests.bench.latency_bench` prints JSON.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from tests.bench.lane_rig import BACKENDS, LaneRig

BAR_MS = 50.0
DWELL_S, GAP_S, FIRST_AT_S, TAGS_PER_TRUCK = 0.6, 1.8, 6.0, 3


def _scenario(passes: int) -> tuple[dict, dict[str, int]]:
    doc, truck_of = {"read_rate_hz": 10, "keepalive_s": 1.0, "passes": []}, {}
    for i in range(passes):
        epcs = [f"E2{i:010X}{k:012X}" for k in range(TAGS_PER_TRUCK)]
        truck_of.update({e: i for e in epcs})
        doc["passes"].append({"at_s": FIRST_AT_S + i * GAP_S, "dwell_s": DWELL_S, "label": f"truck {i}",
                              "tags": [{"epc": e, "antenna": 1, "rssi": -50} for e in epcs]})
    return doc, truck_of


def stats(samples_s: list[float]) -> dict:
    """p50 / p99 / max in ms (nearest rank: with 100 samples or fewer, p99 is the max) and the count."""
    if not samples_s:
        return {"n": 0}
    ms = sorted(s * 1000 for s in samples_s)
    rank = lambda q: ms[max(0, math.ceil(q * len(ms)) - 1)]  # noqa: E731
    return {"n": len(ms), "p50_ms": round(rank(0.50), 1), "p99_ms": round(rank(0.99), 1), "max_ms": round(ms[-1], 1)}


def segments(trace_lines, subscribers, idle_close_s: float, truck_of: dict[str, int]) -> dict:
    """The four segments from the daemon's trace and the subscribers' stamps (seconds)."""
    received: dict[str, float] = {}
    journaled: dict[str, float] = {}
    closes_at: dict[int, float] = {}  # truck -> when its passage closed by the rule
    committed: dict[int, float] = {}  # truck -> its event's commit returned
    puback: dict[tuple[str, int], float] = {}  # (back end, seq) -> PUBACK
    for t, moment, ids in trace_lines:
        if moment == "received":
            received[ids[0]] = float(ids[0])
        elif moment == "journaled":
            for read in ids:
                journaled.setdefault(read, t)
        elif moment == "committed" and ids[1] == "idle":
            truck = truck_of.get(ids[2])
            if truck is not None:
                closes_at[truck], committed[truck] = float(ids[0]) + idle_close_s, t
        elif moment == "puback" and ids[1] == "event":
            puback.setdefault((ids[0], int(ids[2])), t)
    out = {"received_to_journaled": [journaled[r] - t for r, t in received.items() if r in journaled],
           "closed_to_committed": [committed[k] - closes_at[k] for k in committed]}
    for (backend, _), sub in zip(BACKENDS, subscribers):
        to_puback, to_received = [], []
        for arrived, seq, epcs in sub.events:
            truck = truck_of.get(epcs[0]) if epcs else None
            if truck is None or truck not in committed:
                continue
            to_received.append(arrived - closes_at[truck])
            if (backend, seq) in puback:
                to_puback.append(puback[(backend, seq)] - committed[truck])
        out[f"committed_to_puback_{backend}"] = to_puback
        out[f"closed_to_received_{backend}"] = to_received
    return out


def broker_round_trip(broker, n: int = 200) -> list[float]:
    """Bare paho: QoS 1 publish -> arrival at a subscriber on the same broker, one at a time."""
    arrived, got = {}, threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rtt-sub-{uuid.uuid4().hex[:6]}")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rtt-pub-{uuid.uuid4().hex[:6]}")
    ready = threading.Event()
    sub.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/rtt", qos=1)

    def on_message(c, u, m):
        arrived[int(m.payload)] = time.monotonic()
        got.set()
    sub.on_message = on_message
    for c in (sub, pub):
        c.connect(broker.host, broker.port)
        c.loop_start()
    ready.wait(10)
    out = []
    try:
        for i in range(n):
            got.clear()
            sent = time.monotonic()
            pub.publish("bench/rtt", str(i).encode(), qos=1)
            if got.wait(2):
                out.append(arrived[i] - sent)
            time.sleep(0.01)
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
    return out


def run(passes: int | None = None) -> dict:
    passes = passes or int(os.environ.get("LATENCY_PASSES", "60"))
    doc, truck_of = _scenario(passes)
    with LaneRig("thingmagic", doc, antennas=(1,)) as rig:
        streaming_at = rig.wait_streaming()
        expected = sum(1 for p in doc["passes"] if p["at_s"] >= streaming_at)  # a slow start misses the first
        last_read_at = FIRST_AT_S + (passes - 1) * GAP_S + DWELL_S
        time.sleep(max(0.0, last_read_at - rig.sim.elapsed()))
        complete = rig.wait_events(expected, timeout=rig.idle_close_s + 30)
        rtt = broker_round_trip(rig.brokers[0])
        rig.stop_daemon()
        seg = segments(rig.trace(), rig.subscribers, rig.idle_close_s, truck_of)
        events = [s.count() for s in rig.subscribers]
    figures = {name: stats(samples) for name, samples in seg.items()}
    worst_p99 = max((f.get("p99_ms", math.inf) for f in figures.values()), default=math.inf)
    return {"name": "latency", "unit": "ms", "bar_p99_ms": BAR_MS, "passes": passes, "passes_while_streaming": expected,
            "events_received": events,
            "all_received": complete, "segments": figures, "baseline_broker_round_trip": stats(rtt),
            "worst_p99_ms": worst_p99, "meets_bar": complete and worst_p99 < BAR_MS,
            "clock": "CLOCK_MONOTONIC (time.monotonic) in the daemon's trace and in the bench"}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
