"""`make bench`: every benchmark, printed as a table and written to bench-results.json.

Each figure is measured beside a baseline in the same run (the machine is noisy, so
ratios count more than absolute numbers). Nothing here is asserted.
"""

from __future__ import annotations

import json
import platform
import sys
import time

from tests.bench import cache_bench, codec_bench, drain_bench, store_bench


def main() -> int:
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": sys.version.split()[0],
                     "machine": platform.machine()}
    print("laneagent benchmarks (figures, not pass/fail; see DESIGN part 4 for the bars)\n", flush=True)
    print("Codecs, each dialect ...", flush=True)
    results["codecs"] = codec_bench.run_all()
    print(f"  {results['codecs']}", flush=True)
    print("Backlog drain, 100,000 events to two brokers, beside two bare paho loops ...", flush=True)
    results["drain"] = drain_bench.run(100_000)
    print(f"  {results['drain']}", flush=True)
    print("Store: group commit vs one fsync per row; the daemon on a 1,000,000-event backlog ...", flush=True)
    results["store"] = store_bench.run()
    print(f"  {results['store']}", flush=True)
    print("Cache: a 1,000,000-record snapshot (500k drivers, 100k trips and theirs) ...", flush=True)
    results["cache_1m_records"] = cache_bench.run(drivers=500_000, trips=100_000, passages=500)
    print(f"  {results['cache_1m_records']}", flush=True)
    print("Cache: the full fleet, 1,000,000 drivers + 200,000 trips (2,000,000 records), then linking ...",
          flush=True)
    results["cache"] = cache_bench.run()
    print(f"  {results['cache']}", flush=True)
    with open("bench-results.json", "w") as f:
        json.dump(results, f, indent=2)
    print("\n| figure | value | bar |\n|---|---|---|")
    for name, codec in results["codecs"].items():
        print(f"| {name} codec, tag reports/s | {codec['reports_per_s']:,.0f} | >= 200,000 |")
    drain = results["drain"]
    print(f"| drain, events/s per back end (2 back ends) | {drain['drain_events_per_s_per_backend']:,} | |")
    print(f"| bare paho QoS 1 loops, events/s per broker | {drain['bare_paho_events_per_s_per_broker']:,} | |")
    print(f"| drain / bare paho | {drain['ratio']:.2f} | >= 0.70 |")
    store = results["store"]
    print(f"| reads made durable per s, group commit | {store['reads_per_s']:,} | |")
    print(f"| rows per s, one commit (fsync) each | {store['single_row_fsync_per_s']:,} | |")
    print(f"| group commit / single-row fsync | {store['group_commit_ratio']} x | |")
    print(f"| start to READY, 1,000,000-event backlog | {store['start_to_ready_s']} s | < 2 s |")
    print(f"| peak RSS draining a 1,000,000-event backlog | {store['peak_rss_mb_while_draining']} MB | < 80 MB |")
    print(f"| cache snapshot, {results['cache_1m_records']['records']:,} records | "
          f"{results['cache_1m_records']['snapshot_load_s']} s | < 60 s |")
    cache = results["cache"]
    print(f"| cache snapshot, full fleet, {cache['records']:,} records | {cache['snapshot_load_s']} s | < 60 s |")
    print(f"| link a passage, p50 / p99 | {cache['link_p50_ms']} / {cache['link_p99_ms']} ms | p99 < 2 ms |")
    print(f"| max RSS of the cache bench (generator included) | {cache['max_rss_mb']} MB | |")
    print("\nwritten: bench-results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
