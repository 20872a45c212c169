"""The port-sized cache: a full snapshot in parts, staged and swapped while the lane reads.

Bars (DESIGN part 4, `snapshot` and `link`): the full fleet (1M drivers + 200k trips with
their trucks, trailers and shipments, 2M records) in parts < 30 s, while reads stay
durable within 250 ms (p99 of read -> committed during the load, beside the same figure
with no snapshot); linking a passage p99 < 2 ms. The load takes the daemon's own path
from the link onwards: each part decoded from CBOR, validated, handed to a running
core, which stages it in slices between group commits and swaps at the last part. The
messages are generated beforehand (not timed). A reader thread submits a tag read every
20 ms throughout, and another a PUBACK every 20 ms (as a link hands it to the core, for
events owed beforehand); pollers on their own connections see when each is committed.
`SNAPSHOT_SCALE=0.1` runs a tenth of the fleet for quick iteration.
"""

from __future__ import annotations

import os
import random
import resource
import sqlite3
import statistics
import tempfile
import threading
import time

import cbor2

from agent import config
from agent.config import AggregationConfig
from agent.core import LaneCore
from agent.handoff import CacheMessage, Delivered
from agent.readers.report import TagReport
from agent.lane.findings import findings_for
from agent.lane.linking import link
from agent.lane.passage import Aggregator, Read
from agent.store.cache import CacheView, validate_cache_message
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter
from simulators.fleet.bigcache import (
    BigCacheShape,
    big_cache_crew,
    iter_big_cache,
    iter_cache_messages,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Probe:
    """Submits one item every `every_s` and records how long until the core has committed it.

    `submit(k)` hands item k to the core; `committed()` counts, on its own connection, how
    many have been committed so far (they commit in order)."""

    def __init__(self, every_s: float = 0.02):
        self.every_s = every_s
        self.submitted: list[float] = []
        self.committed_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._submit, daemon=True),
                         threading.Thread(target=self._poll, daemon=True)]

    def submit(self, k: int) -> None:
        raise NotImplementedError

    def committed(self) -> int:
        raise NotImplementedError

    def __enter__(self):
        self._base = self.committed()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # the last items commit
        self._stop.set()
        for t in self._threads:
            t.join()

    def _submit(self) -> None:
        while not self._stop.is_set():
            self.submitted.append(time.perf_counter())
            self.submit(len(self.submitted) - 1)
            time.sleep(self.every_s)

    def _poll(self) -> None:
        while not self._stop.is_set():
            n = self.committed() - self._base
            now = time.perf_counter()
            for k in range(len(self.committed_at), n):
                self.committed_at[k] = now
            time.sleep(0.002)

    def done(self) -> int:
        return len(self.committed_at)

    def latencies_ms(self) -> list[float]:
        return sorted((self.committed_at[k] - t) * 1000 for k, t in enumerate(self.submitted)
                      if k in self.committed_at)


class ReadProbe(Probe):
    """A tag read every 20 ms, each of a new tag (repeated reads of one tag are aggregated
    into one row), too weak to open a passage: it is journaled as a stray."""

    def __init__(self, core: LaneCore, path: str):
        super().__init__()
        self.core = core
        self.conn = sqlite3.connect(path, check_same_thread=False)

    def submit(self, k: int) -> None:
        epc = f"E2000000000000000{k:07X}"
        self.core.submit_read("probe", TagReport("thingmagic", epc, 1, rssi=-99), time.monotonic(),
                              int(time.time() * 1000))

    def committed(self) -> int:
        return self.conn.execute("SELECT count(*) FROM reads").fetchone()[0]


class MarkProbe(Probe):
    """A PUBACK every 20 ms, as a link hands it to the core: event `first + k` delivered to `backend`."""

    def __init__(self, core: LaneCore, path: str, backend: str, first: int):
        super().__init__()
        self.core, self.backend, self.first = core, backend, first
        self.reader = StoreReader(path)
        self._seen_upto, self._count = 0, 0

    def submit(self, k: int) -> None:
        self.core.submit(Delivered(self.backend, (("event", self.first + k),)))

    def committed(self) -> int:
        # Only the rows marked since the last look: the probe polls every 2 ms, and reading
        # every delivered row each time took GIL time from the lane it measures.
        new = self.reader.delivered_since(self.backend, self._seen_upto + 1)
        if new:
            self._seen_upto = new[-1][0]
            self._count += len(new)
        return self._count


def owe_events(writer: StoreWriter, backend: str, count: int, now_ms: int) -> None:
    """`count` events owed to `backend`, for the PUBACKs the MarkProbe hands in."""
    with writer.transaction():
        for seq in range(1, count + 1):
            writer.add_event({"seq": seq, "event_id": f"bench-{seq}", "started_ms": now_ms, "ended_ms": now_ms,
                              "hash": f"{seq:064x}"}, {backend: b"event"}, now_ms)


MARKS_OWED = 20_000  # events owed to the back end: more than one PUBACK every 20 ms of the whole bench


def p99(values: list[float]) -> float:
    return round(values[min(len(values) - 1, int(len(values) * 0.99))], 1) if values else float("nan")


def scale() -> dict:
    """`SNAPSHOT_SCALE=0.1` runs a tenth of the full fleet (100k drivers, 20k trips) for quick
    iteration; the figure of record is the full fleet (the default, 1)."""
    f = float(os.environ.get("SNAPSHOT_SCALE", "1"))
    return {"drivers": int(1_000_000 * f), "trips": int(200_000 * f), "passages": max(200, int(2_000 * f))}


def run(drivers: int = 1_000_000, trips: int = 200_000, passages: int = 2_000) -> dict:
    shape = BigCacheShape(drivers=drivers, trips=trips)
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.parse({"lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
                            "store": {"path": f"{tmp}/agent.db"},
                            "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]})
        writer = StoreWriter(cfg.store.path)
        owe_events(writer, "cbsa", MARKS_OWED, now_ms)
        core = LaneCore(cfg, writer)
        core.start()
        # The back end's messages are made first (not timed), as CBOR on disk, so that the
        # timed part is what the agent does: decode, validate, stage, swap.
        stream = f"{tmp}/cache.cbors"
        parts = 0
        with open(stream, "wb") as f:
            for msg in iter_cache_messages(iter_big_cache(1, now_ms, shape), "CA"):
                cbor2.dump(msg, f)
                parts += 1
        size = os.path.getsize(stream)
        with ReadProbe(core, cfg.store.path) as idle, MarkProbe(core, cfg.store.path, "cbsa", 1) as idle_marks:
            time.sleep(3)
        records = 0
        with ReadProbe(core, cfg.store.path) as loading, \
                MarkProbe(core, cfg.store.path, "cbsa", idle_marks.done() + 1) as marks:
            start = time.perf_counter()
            with open(stream, "rb") as f:
                while f.tell() < size:
                    msg = cbor2.load(f)
                    msg.update(op="snapshot", part=msg["seq"], parts=parts)
                    while core.inbox.qsize() > 20 or core.figures().get("cache", {}).get("queued", 0) > 4:
                        time.sleep(0.005)  # as a broker would: the core sets the pace
                    core.submit(CacheMessage("cbsa", validate_cache_message(msg)))
                    records += len(msg["records"])
            while core.counters["cache_swaps"] < 1:
                time.sleep(0.01)
            load_s = time.perf_counter() - start
            marked_during_load = marks.done()  # before the probe's last half second after the swap
        core.stop()

        view = writer.cache
        rng = random.Random(7)
        timings = []
        for _ in range(passages):
            crew = big_cache_crew(1, rng.randrange(trips), shape)
            agg = Aggregator(AggregationConfig())
            for i, epc in enumerate(crew["card_epcs"] + [crew["transponder_epc"]] + crew["trailer_epcs"]):
                for k in range(3):
                    agg.add(Read(i * 3 + k, "booth", epc, 1, -50, 1, now_ms + k, k * 0.1))
            [closed] = [c for c in agg.tick(100) if c.passage]
            t0 = time.perf_counter()
            linked = link(closed.passage, view, 2, "CA", now_ms, 12)
            findings_for(linked, view, now_ms)
            timings.append((time.perf_counter() - t0) * 1000)
        writer.close()
    timings.sort()
    return {"records": records, "parts": parts, "drivers": drivers, "trips": trips,
            "snapshot_load_s": round(load_s, 1), "records_per_s": round(records / load_s),
            "read_to_commit_p99_ms_idle": p99(idle.latencies_ms()),
            "read_to_commit_p99_ms_loading": p99(loading.latencies_ms()),
            "read_to_commit_max_ms_loading": round(max(loading.latencies_ms(), default=float("nan")), 1),
            "pubacks_handed_in_loading": len(marks.submitted), "pubacks_marked_during_load": marked_during_load,
            "puback_to_marked_p99_ms_loading": p99(marks.latencies_ms()),
            "puback_to_marked_p99_ms_idle": p99(idle_marks.latencies_ms()),
            "link_p50_ms": round(statistics.median(timings), 3),
            "link_p99_ms": round(timings[int(len(timings) * 0.99)], 3), "max_rss_mb": round(rss_mb(), 1)}


if __name__ == "__main__":
    print(run(**scale()))
