"""`make bench [ONLY=name,name]`: the figures of DESIGN part 4, by name, printed with their bars
and written to bench-results.json (with the machine, the commit and each baseline).

Each figure is measured beside a baseline in the same run (the machine is noisy, so
ratios count more than absolute numbers). Nothing here is asserted. A figure DESIGN
names that is not built yet is listed as such, never invented.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

from tests.bench import cache_bench, codec_bench, drain_bench, store_bench


def _codecs() -> tuple[dict, list[tuple[str, str, str]]]:
    out = codec_bench.run_all()
    return out, [(f"codecs: {name}, tag reports/s", f"{c['reports_per_s']:,.0f}", ">= 200,000")
                 for name, c in out.items()]


def _drain() -> tuple[dict, list[tuple[str, str, str]]]:
    d = drain_bench.run(100_000)
    return d, [("drain: events/s per back end (2 back ends, 100,000 events)",
                f"{d['drain_events_per_s_per_backend']:,}", ""),
               ("drain: bare paho QoS 1, same window, events/s per broker", f"{d['bare_paho_events_per_s_per_broker']:,}",
                ""),
               ("drain / bare paho", f"{d['ratio']:.2f}", ">= 0.9")]


def _store() -> tuple[dict, list[tuple[str, str, str]]]:
    s = store_bench.run()
    return s, [("reads made durable per s, group commit vs one fsync per row",
                f"{s['reads_per_s']:,} vs {s['single_row_fsync_per_s']:,}", ""),
               ("start: to READY with a 1,000,000-event backlog", f"{s['start_to_ready_s']} s", "< 2 s"),
               ("memory: peak RSS draining a 1,000,000-event backlog", f"{s['peak_rss_mb_while_draining']} MB",
                "< 80 MB")]


def _snapshot() -> tuple[dict, list[tuple[str, str, str]]]:
    c = cache_bench.run()
    return c, [(f"snapshot: full fleet in {c['parts']} parts, {c['records']:,} records", f"{c['snapshot_load_s']} s "
                f"({c['records_per_s']:,}/s)", "< 30 s"),
               ("snapshot: read -> committed p99, during the load vs idle",
                f"{c['read_to_commit_p99_ms_loading']} vs {c['read_to_commit_p99_ms_idle']} ms", "< 250 ms"),
               ("link: a passage against that cache, p50 / p99", f"{c['link_p50_ms']} / {c['link_p99_ms']} ms",
                "p99 < 2 ms")]


def _fleet() -> tuple[dict, list[tuple[str, str, str]]]:
    from tests.bench import fleet_bench  # needs pika and RabbitMQ: imported only when asked for

    n = int(os.environ.get("N") or 100)
    f = fleet_bench.run(n)  # also writes fleet-results.json
    if "lost" not in f:
        return f, [("fleet", f.get("status", "not run"), "make fleet")]
    return f, [(f"fleet: {n} lanes, events lost / duplicates", f"{f['lost']} / {f['duplicates']}", "0 lost"),
               ("fleet: passage closed -> received p50 / p99", f"{f['latency_ms_p50']} / {f['latency_ms_p99']} ms", ""),
               ("fleet: limited by", f["limited_by"], "")]


FIGURES: dict[str, Callable[[], tuple[dict, list]]] = {
    "codecs": _codecs, "drain": _drain, "store": _store, "snapshot": _snapshot, "fleet": _fleet,
}
# Run only when named (ONLY=fleet, or `make fleet`): ~8 minutes and a RabbitMQ cluster of its own.
ON_REQUEST = ("fleet",)
# Named in DESIGN part 4 and not built yet (issue 13): listed, never invented.
NOT_BUILT = ("line_rate", "idle", "latency", "footprint")
ALIASES = {"start": "store", "memory": "store", "link": "snapshot"}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> int:
    asked = [n.strip() for n in os.environ.get("ONLY", "").split(",") if n.strip()]
    known = set(FIGURES) | set(NOT_BUILT) | set(ALIASES)
    unknown = [n for n in asked if n not in known]
    if unknown:
        print(f"make bench: unknown figure(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    names = list(dict.fromkeys(ALIASES.get(n, n) for n in asked)) or list(FIGURES) + list(NOT_BUILT)
    if not asked:  # the whole bench stays under 15 minutes: fleet is its own run
        names = [n for n in names if n not in ON_REQUEST]
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit(),
                     "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
                     "figures": {}}
    rows: list[tuple[str, str, str]] = []
    print("laneagent benchmarks (figures, not pass/fail; DESIGN part 4 has the bars)\n", flush=True)
    if not asked:
        for name in ON_REQUEST:
            results["figures"][name] = {"status": "on request: make fleet, or make bench ONLY=fleet"}
            rows.append((name, "not run here: make fleet (or ONLY=fleet)", "see DESIGN part 4"))
    for name in names:
        if name in NOT_BUILT:
            results["figures"][name] = {"status": "not built yet (issue 13)"}
            rows.append((f"{name}", "not measured yet", "see DESIGN part 4"))
            continue
        print(f"{name} ...", flush=True)
        started = time.perf_counter()
        figures, lines = FIGURES[name]()
        figures["bench_seconds"] = round(time.perf_counter() - started, 1)
        results["figures"][name] = figures
        rows += lines
        print(f"  {figures}", flush=True)
    with open("bench-results.json", "w") as f:
        json.dump(results, f, indent=2)
    print("\n| figure | value | bar |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nwritten: bench-results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
