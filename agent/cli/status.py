"""`laneagent status`: one screen on the lane, from the daemon's status file and the database.

Reads only: the status file the daemon rewrites every second, and the database
through a read-only connection. Exit 0 healthy, 1 degraded, 2 cannot read state.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from agent.cli.common import Paint, load_config, print_json
from agent.errors import StoreError
from agent.lane.facilitation import WINDOW_MS, facilitation
from agent.statusfile import StatusFile, StatusUnavailable
from agent.store.reader import StoreReader


def register(subparsers) -> None:
    p = subparsers.add_parser("status", help="one screen: lane, readers, back ends, backlog, cache, alarms",
                              description="Show the lane's state. Exit 0 healthy, 1 degraded, 2 cannot read state.",
                              epilog="example: laneagent status --json | jq .backends",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def gather(cfg) -> dict:
    """Every fact status shows; raises StoreError when the database cannot be read."""
    now_ms = int(time.time() * 1000)
    with StoreReader(cfg.store.path) as store:
        last_seq, head = store.chain_head()
        backlog = {b.name: store.backlog(b.name, now_ms) for b in cfg.backends}
        cache = store.cache_sources()
        open_reads = store.open_reads()
        hour = facilitation(store.crossings_since(now_ms - WINDOW_MS))
    daemon = _daemon_state(cfg, now_ms)
    db_bytes = sum(os.path.getsize(p) for p in (cfg.store.path, cfg.store.path + "-wal") if os.path.exists(p))
    disk = shutil.disk_usage(os.path.dirname(os.path.abspath(cfg.store.path)))
    backends = []
    for b in cfg.backends:
        live = next((x for x in daemon.get("backends", []) if x["name"] == b.name), {})
        backends.append({"name": b.name, "country": b.country, "broker": f"{b.host}:{b.port}",
                         **live, **backlog[b.name]})
    doc = {
        "lane": {"port": cfg.lane.port_code, "lane": cfg.lane.lane_id, "entering": cfg.lane.entering,
                 "leaving": cfg.lane.leaving, "kind": cfg.lane.kind},
        "daemon": {k: daemon.get(k) for k in ("running", "pid", "version", "started_ms", "updated_ms", "problems")},
        "chain": {"last_seq": last_seq, "head_hash": head},
        "readers": daemon.get("readers") or [{"name": r.name, "dialect": r.dialect, "url": r.url, "state": "unknown"}
                                             for r in cfg.readers],
        "backends": backends,
        "cache": cache,
        "cache_feed": daemon.get("cache_feed") or {},
        "journal": {"open_reads": open_reads},
        "disk": {"database_bytes": db_bytes, "free_bytes": disk.free,
                 "backlog_bytes": sum(x["event_bytes"] + x["alert_bytes"] for x in backlog.values()),
                 "budget_bytes": int(cfg.store.max_queue_mb * 1024 * 1024)},
        "counters": daemon.get("counters", {}),
        "random_rate": daemon.get("random_rate", cfg.referral.random_rate),
        "random_rate_trusted": daemon.get("random_rate_trusted", cfg.referral.random_rate_trusted),
        "facilitation": hour,
        "clock": daemon.get("clock"),
        "alarms": daemon.get("alarms", []),
    }
    doc["healthy"] = _healthy(doc)
    return doc


def _daemon_state(cfg, now_ms: int) -> dict:
    try:
        state = StatusFile(cfg.status_path).read()
    except StatusUnavailable:
        return {"running": False}
    state["running"] = StatusFile.is_fresh(state, now_ms) and _pid_alive(state.get("pid"))
    if not state["running"]:
        state["problems"] = []
    return state


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False


def _healthy(doc: dict) -> bool:
    return (doc["daemon"]["running"] and not doc["daemon"].get("problems") and not doc["alarms"]
            and all(r.get("state") == "up" for r in doc["readers"])
            and all(b.get("connected") for b in doc["backends"]))


def _age(ms, now_ms) -> str:
    if not ms:
        return "never"
    s = (now_ms - ms) / 1000
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}min ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def nodes_line(backend: dict) -> str | None:
    """For a broker cluster (or a lost node): the node in use and the unreachable ones."""
    node, unreachable = backend.get("node"), backend.get("unreachable") or []
    if not unreachable and (not node or node == backend.get("broker")):
        return None  # one node, in use: the back end's line says it all
    return f"node in use {node or '-'}; unreachable: {', '.join(unreachable) or 'none'}"


def _cache_feed_lines(feed: dict, now_ms: int, paint: Paint) -> list[str]:
    """Snapshots being staged, the last swap, a dropped snapshot and resyncs asked for, per source."""
    lines = []
    for source, st in sorted((feed.get("staging") or {}).items()):
        lines.append(f"  {source:<4} snapshot in progress: part {st['parts_received']} of {st['parts']}, "
                     f"{st['records']} records staged, since {_age(st['since_ms'], now_ms)}")
    for source, sw in sorted((feed.get("last_swap") or {}).items()):
        lines.append(f"  {source:<4} last snapshot swapped in {_age(sw['at_ms'], now_ms)}: {sw['records']} records "
                     f"in {sw['parts']} part(s), {sw['seconds']} s")
    for source, d in sorted((feed.get("dropped") or {}).items()):
        lines.append(paint.warn(f"  {source:<4} snapshot dropped {_age(d['at_ms'], now_ms)} after {d['parts_received']} "
                                f"of {d['parts']} parts: {d['cause']}"))
    for source in feed.get("resync_pending") or []:
        lines.append(f"  {source:<4} resync requested, waiting for the back end")
    return lines


def _facilitation_lines(f: dict) -> list[str]:
    """The last hour: passages, time in the read field, trusted share, referrals by tier and reason."""
    if not f["passages"]:
        return ["last hour no passages"]
    field = f["field_time_s"]
    lines = [f"last hour {f['passages']} passages, in the read field median {field['median']:.1f} s, "
             f"p90 {field['p90']:.1f} s; trusted {f['trusted_share']:.0%}"]
    for tier, t in f["tiers"].items():
        reasons = ", ".join(f"{code} {n}" for code, n in t["reasons"].items()) or "-"
        lines.append(f"  {tier:<9} {t['passages']} passages, {t['referred']} referred ({reasons})")
    return lines


def render(doc: dict, paint: Paint) -> str:
    now_ms = int(time.time() * 1000)
    lane, d = doc["lane"], doc["daemon"]
    state = paint.good("healthy") if doc["healthy"] else paint.warn("DEGRADED")
    kind = "  FAST lane" if lane.get("kind") == "fast" else ""
    lines = [f"lane {lane['port']}/{lane['lane']}  {lane['leaving']} -> {lane['entering']}{kind}   {state}"]
    if d.get("running"):
        lines.append(f"daemon   pid {d['pid']}, laneagent {d['version']}, up since {_age(d['started_ms'], now_ms)}")
    else:
        lines.append(paint.bad("daemon   NOT RUNNING") + "   (start it: sudo systemctl start laneagent)")
    for problem in d.get("problems") or []:
        lines.append(paint.bad(f"         wedged: {problem}"))
    lines.append(f"chain    last seq {doc['chain']['last_seq']}, head {doc['chain']['head_hash'][:16]}...")
    lines.append("readers")
    for r in doc["readers"]:
        st = r.get("state", "unknown")
        shown = paint.good(st) if st == "up" else paint.bad(st)
        lines.append(f"  {r['name']:<10} {r.get('dialect', ''):<10} {r.get('url', ''):<24} {shown:<6} "
                     f"{r.get('model') or ''} {r.get('firmware') or ''}  last read {_age(r.get('last_report_wall_ms'), now_ms)}, "
                     f"reports {r.get('reports', 0)}, decode errors {r.get('decode_errors', 0)}"
                     + (f", last error: {r['last_error']}" if r.get("last_error") else ""))
    lines.append("back ends")
    for b in doc["backends"]:
        conn = paint.good("connected") if b.get("connected") else paint.bad("DISCONNECTED")
        lines.append(f"  {b['name']:<10} {b['country']}  {b['broker']:<22} {conn}  tls {'on' if b.get('tls') else 'off'}"
                     f"  last PUBACK {_age(b.get('last_puback_ms'), now_ms)}")
        if nodes := nodes_line(b):
            lines.append(f"  {'':<10}     {nodes}")
        lines.append(f"  {'':<10}     backlog {b['events']} events, {b['alerts']} alerts, oldest "
                     f"{b['oldest_event_age_s'] if b['oldest_event_age_s'] is not None else '-'} s, "
                     f"drain {b.get('drain_rate', 0)}/s" + (f", last error: {b['last_error']}" if b.get("last_error") else ""))
        for c in b.get("certificates") or []:
            if c["state"] != "ok":
                left = f"{c['days_left']:.0f} days left" if "days_left" in c else c.get("error", "")
                lines.append(paint.warn(f"  {'':<10}     tls.{c['file']} {c['state']}: {left}"))
    lines.append("cache")
    for c in doc["cache"] or [{"source": "-", "records": 0, "seq": "-", "updated_ms": None}]:
        lines.append(f"  {c['source']:<4} {c['records']} records, seq {c['seq']}, updated {_age(c['updated_ms'], now_ms)}")
    lines += _cache_feed_lines(doc.get("cache_feed") or {}, now_ms, paint)
    disk = doc["disk"]
    lines.append(f"disk     database {disk['database_bytes'] / 1e6:.1f} MB, backlog {disk['backlog_bytes'] / 1e6:.1f} "
                 f"of {disk['budget_bytes'] / 1e6:.0f} MB budget, {disk['free_bytes'] / 1e9:.1f} GB free")
    lines.append(f"referral random rate {doc['random_rate']} standard, {doc['random_rate_trusted']} trusted")
    lines += _facilitation_lines(doc["facilitation"])
    clock = doc.get("clock")
    if clock:
        jumps = (f", {clock['jumps']} jump(s), last {clock['last_jump_s']:+.1f} s {_age(clock['last_jump_at_ms'], now_ms)}"
                 if clock["jumps"] else ", no jumps")
        lines.append(f"clock    {'ok' if clock['sane'] else paint.bad('WRONG (before 2020)')}{jumps}")
    lines.append("alarms   " + ("none" if not doc["alarms"] else ""))
    for a in doc["alarms"]:
        lines.append(paint.bad(f"  {a['alarm']}") + f" since {_age(a['since_ms'], now_ms)}: {a['detail']}")
    return "\n".join(lines)


def run(args) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    try:
        doc = gather(cfg)
    except StoreError as e:
        if args.json:
            print_json({"error": str(e)})
        else:
            print(f"laneagent status: cannot read the lane's state: {e}", file=sys.stderr)
        return 2
    if args.json:
        print_json(doc)
    else:
        print(render(doc, Paint()))
    return 0 if doc["healthy"] else 1
