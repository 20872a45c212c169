"""`make bench [ONLY=name,name]`: the figures of DESIGN part 4, by name, printed with their bars
and written to bench-results.json (with the machine, the commit and each baseline).

Each figure is measured beside a baseline in the same run (the machine is noisy, so
ratios count more than absolute numbers). Nothing here is asserted. `fleet` runs only
when named (`make fleet`, or ONLY=fleet): it needs a RabbitMQ cluster and about 13 minutes.
`footprint` runs beside `line_rate` when both are asked for (BESIDE): the whole bench then
takes about 14 minutes on two cores.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

from tests.bench import (cache_bench, codec_bench, drain_bench, footprint_bench, idle_bench, latency_bench,
                          line_rate_bench, store_bench)


def _codecs() -> tuple[dict, list[tuple[str, str, str]]]:
    out = codec_bench.run_all()
    rows = []
    for name, c in out.items():
        base = next(k for k in c if k.startswith("baseline_"))  # the simple splitter, same buffer, same run
        unit = base[len("baseline_"):-len("_per_s")].replace("_", " ")
        rows.append((f"codecs: {name}, tag reports/s (4 KiB reads) beside the splitter baseline, {unit}/s",
                     f"{c['reports_per_s']:,.0f} ({c['chunked_reports_per_s']:,.0f}) vs {c[base]:,.0f}"
                     f" = {c['ratio_to_baseline']:.3f}", ">= 200,000"))
    return out, rows


def _drain() -> tuple[dict, list[tuple[str, str, str]]]:
    d = drain_bench.run(100_000)
    rows = [("drain: events/s per back end (2 back ends, 100,000 events)",
             f"{d['drain_events_per_s_per_backend']:,}", ""),
            ("drain: bare paho QoS 1, same window, events/s per broker", f"{d['bare_paho_events_per_s_per_broker']:,}",
             ""),
            ("drain / bare paho (each round, the order alternating)",
             f"{d['ratio']:.2f} ({', '.join(f'{r:.2f}' for r in d['round_ratios'])})", ">= 0.9"),
            ("drain: CPU s per 1,000 events, ours vs bare paho",
             f"{d['cpu_s_per_1000_events']} vs {d['bare_paho_cpu_s_per_1000_events']}", "")]
    ours, bridge = d["outage"]["laneagent"], d["outage"]["bridge"]
    for key, what in (("events_per_s_per_backend", "events/s per back end"),
                      ("broker_back_to_last_received_s", "s from broker back to last event received"),
                      ("cpu_s_per_1000_events", "CPU s per 1,000 events")):
        rows.append((f"drain after an outage ({ours['events']:,}): {what}, ours vs mosquitto bridge",
                     f"{ours.get(key, 'n/a')} vs {bridge.get(key, 'n/a')}", ""))
    if "events_per_s_per_backend" in ours:
        rows.append(("drain after an outage: the daemon / the bare paho rate above (broker back -> last received, "
                     "reconnect included)", f"{ours['events_per_s_per_backend'] / d['bare_paho_events_per_s_per_broker']:.2f}",
                     ""))
    kill = d["kill_9"]
    rows.append((f"kill -9 with the back ends down ({kill['laneagent']['events']:,} events): lost, ours vs bridge "
                 "(autosave 1800 s / 1 s)", f"{kill['laneagent']['lost']} vs {kill['bridge_autosave_1800s']['lost']} / "
                 f"{kill['bridge_autosave_1s']['lost']}", "0"))
    return d, rows


def _idle() -> tuple[dict, list[tuple[str, str, str]]]:
    i = idle_bench.run()
    return i, [("idle: CPU % of one core (2 readers, 2 back ends, no tag)", f"{i['cpu_percent_of_one_core']}", "<= 2%"),
               ("idle: wake-ups per second (voluntary context switches)", f"{i['wakeups_per_s']}", ""),
               ("idle: bytes written per second (the unit's layout: status file on tmpfs)",
                f"{i['written_bytes_per_s']:,.0f}", "<= 512")]


def _store() -> tuple[dict, list[tuple[str, str, str]]]:
    s = store_bench.run()
    return s, [("reads made durable per s, group commit vs one fsync per row",
                f"{s['reads_per_s']:,} vs {s['single_row_fsync_per_s']:,}", ""),
               (f"start: to READY, {s['start_backlog_events']:,}-event backlog + {s['start_cache_records']:,}-record "
                "cache, warm / cold disk (cold: page cache dropped, as after a power cut)",
                f"{s['start_to_ready_s_warm']} / {s['start_to_ready_s_cold'] or 'not measured (needs root)'} s", "< 2 s"),
               ("start: to READY with a 1,000,000-event backlog (warm)", f"{s['start_to_ready_s_1m_backlog']} s", ""),
               ("memory: peak RSS draining a 1,000,000-event backlog", f"{s['peak_rss_mb_while_draining']} MB",
                "< 80 MB")]


def _snapshot() -> tuple[dict, list[tuple[str, str, str]]]:
    c = cache_bench.run(**cache_bench.scale())
    return c, [(f"snapshot: full fleet in {c['parts']} parts, {c['records']:,} records", f"{c['snapshot_load_s']} s "
                f"({c['records_per_s']:,}/s)", "< 30 s"),
               ("snapshot: read -> committed p99, during the load vs idle",
                f"{c['read_to_commit_p99_ms_loading']} vs {c['read_to_commit_p99_ms_idle']} ms", "< 250 ms"),
               ("snapshot: PUBACKs marked during the load (of those handed in); PUBACK -> marked p99, "
                "loading vs idle", f"{c['pubacks_marked_during_load']:,} of {c['pubacks_handed_in_loading']:,}; "
                f"{c['puback_to_marked_p99_ms_loading']} vs {c['puback_to_marked_p99_ms_idle']} ms", "keep flowing"),
               ("snapshot: peak RSS", f"{c['max_rss_mb']} MB", ""),
               ("link: a passage against that cache, p50 / p99", f"{c['link_p50_ms']} / {c['link_p99_ms']} ms",
                "p99 < 2 ms")]


def _latency() -> tuple[dict, list[tuple[str, str, str]]]:
    lat = latency_bench.run()
    rows = []
    for name, f in lat["segments"].items():
        value = f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']} ms (n={f['n']})" if f["n"] else "no samples"
        rows.append((f"latency: {name.replace('_', ' ')}, p50 / p99 / max", value, "p99 < 50 ms"))
    rtt = lat["baseline_broker_round_trip"]
    rows.append(("latency baseline: bare paho QoS 1 publish -> subscriber, p50 / p99 / max",
                 f"{rtt['p50_ms']} / {rtt['p99_ms']} / {rtt['max_ms']} ms", ""))
    return lat, rows


def _line_rate() -> tuple[dict, list[tuple[str, str, str]]]:
    lr = line_rate_bench.run()
    rss = lr["rss_mb_every_10s"]
    return lr, [
        (f"line_rate: {lr['dialect']} at {lr['baud']:,} baud for {lr['seconds']:.0f} s, reports in vs journaled "
         f"({lr['reports_per_s']:,}/s, {lr['line_use']:.0%} of the line)",
         f"{lr['reports_in']:,} vs {lr['reports_journaled']:,} (lost {lr['lost']}, pty dropped "
         f"{lr['pty_bytes_dropped']} B)", "0 lost"),
        ("line_rate: daemon CPU, % of one core (codec alone on the same frames)",
         f"{lr['cpu_pct_one_core']} % ({lr['baseline_codec_alone_cpu_pct']} %)", "<= 25 %"),
        ("line_rate: daemon RSS every 10 s, first / max / last", f"{rss[0]} / {max(rss)} / {rss[-1]} MB", "flat"),
    ]


def _footprint(f: dict | None = None) -> tuple[dict, list[tuple[str, str, str]]]:
    f = f or footprint_bench.run()
    disk, live = f["on_disk"], f["live_lane"]
    return f, [(f"footprint: on disk per event owed to 2 back ends ({disk['events']:,} events)",
                f"{disk['bytes_on_disk_per_event'] / 1024:.1f} KB (payloads {disk['payload_bytes_per_event'] / 1024:.1f} KB)",
                "<= 4 KB"),
               (f"footprint: written per event, live lane ({live['events']} passages of ~{live['reads_per_event']:.0f} "
                "reads, WAL + checkpoints + stop)", f"{live['bytes_written_per_event'] / 1024:.1f} KB", "<= 40 KB"),
               ("footprint: WAL left after a clean stop", f"{live['wal_bytes_after_stop']} bytes", "")]


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
    "codecs": _codecs, "drain": _drain, "store": _store, "snapshot": _snapshot, "latency": _latency,
    "line_rate": _line_rate, "footprint": _footprint, "idle": _idle, "fleet": _fleet,
}
# Run only when named (ONLY=fleet, or `make fleet`): ~8 minutes and a RabbitMQ cluster of its own.
ON_REQUEST = ("fleet",)
ALIASES = {"start": "store", "memory": "store", "link": "snapshot"}
# footprint counts its own daemon's bytes, not time: it runs beside the 5-minute line_rate, in
# a process of its own (whose CPU figure is its own daemon's too), so the whole bench stays
# under 15 minutes. Asked for alone, each runs alone.
BESIDE = {"line_rate": ("footprint", "tests.bench.footprint_bench", _footprint)}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> int:
    asked = [n.strip() for n in os.environ.get("ONLY", "").split(",") if n.strip()]
    known = set(FIGURES) | set(ALIASES)
    unknown = [n for n in asked if n not in known]
    if unknown:
        print(f"make bench: unknown figure(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    names = list(dict.fromkeys(ALIASES.get(n, n) for n in asked)) or list(FIGURES)
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
    beside = {name: BESIDE[name] for name in names if name in BESIDE and BESIDE[name][0] in names}
    names = [n for n in names if n not in {b[0] for b in beside.values()}]
    for name in names:
        other = beside.get(name)
        if other is not None:
            print(f"{name} ... (and {other[0]} beside it)", flush=True)
            proc = subprocess.Popen([sys.executable, "-m", other[1]], stdout=subprocess.PIPE, text=True)
        else:
            print(f"{name} ...", flush=True)
        started = time.perf_counter()
        figures, lines = FIGURES[name]()
        figures["bench_seconds"] = round(time.perf_counter() - started, 1)
        results["figures"][name] = figures
        rows += lines
        print(f"  {figures}", flush=True)
        if other is not None:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                print(f"{other[0]} failed (exit {proc.returncode})", file=sys.stderr)
                continue
            figures, lines = other[2](json.loads(out))
            figures["ran_beside"] = name
            figures["bench_seconds"] = round(time.perf_counter() - started, 1)
            results["figures"][other[0]] = figures
            rows += lines
            print(f"  {other[0]}: {figures}", flush=True)
    with open("bench-results.json", "w") as f:
        json.dump(results, f, indent=2)
    print("\n| figure | value | bar |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nwritten: bench-results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
