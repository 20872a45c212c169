"""The port-sized cache: load 1M credentials and 200k trips as a snapshot, then link passages.

Bars (DESIGN part 4): full snapshot load < 60 s; linking a passage p99 < 2 ms. The
load takes the daemon's own path from the link onwards: each message decoded from CBOR,
validated, handed to a running core (LaneCore), which applies what arrives within its
commit window in one transaction. The messages are generated beforehand, not timed. Linking runs the lane's real `link` + `findings_for` on the result.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import tempfile
import time

import cbor2

from agent import config
from agent.config import AggregationConfig
from agent.core import CacheHandoff, LaneCore
from agent.lane.findings import findings_for
from agent.lane.linking import link
from agent.lane.passage import Aggregator, Read
from agent.store.cache import CacheView, validate_cache_message
from agent.store.writer import StoreWriter
from simulators.fleet.bigcache import (
    BigCacheShape,
    big_cache_crew,
    iter_big_cache,
    iter_cache_messages,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(drivers: int = 1_000_000, trips: int = 200_000, passages: int = 2_000) -> dict:
    shape = BigCacheShape(drivers=drivers, trips=trips)
    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.parse({"lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
                            "store": {"path": f"{tmp}/agent.db"},
                            "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]})
        writer = StoreWriter(cfg.store.path)
        core = LaneCore(cfg, writer)
        core.start()
        # The back end's messages are made first (not timed), as CBOR on disk, so that the
        # timed part is what the agent does: decode, validate, apply in the core.
        stream = f"{tmp}/cache.cbors"
        with open(stream, "wb") as f:
            for msg in iter_cache_messages(iter_big_cache(1, now_ms, shape), "CA"):
                cbor2.dump(msg, f)
        size = os.path.getsize(stream)
        records = messages = 0
        start = time.perf_counter()
        with open(stream, "rb") as f:
            while f.tell() < size:
                msg = cbor2.load(f)
                while core.inbox.qsize() > 20:  # as a broker would: the core sets the pace
                    time.sleep(0.005)
                core.submit_cache(CacheHandoff("cbsa", validate_cache_message(msg), lambda *_: None))
                records += len(msg["records"])
                messages += 1
        while core.counters["cache_messages"] < messages:
            time.sleep(0.01)
        load_s = time.perf_counter() - start
        core.stop()

        view = CacheView(writer.conn)
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
    return {"records": records, "drivers": drivers, "trips": trips, "snapshot_load_s": round(load_s, 1),
            "records_per_s": round(records / load_s), "link_p50_ms": round(statistics.median(timings), 3),
            "link_p99_ms": round(timings[int(len(timings) * 0.99)], 3), "max_rss_mb": round(rss_mb(), 1)}


if __name__ == "__main__":
    print(run(drivers=100_000, trips=20_000, passages=500))
