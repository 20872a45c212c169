"""`laneagent queue`: the backlog per back end; one event and its deliveries; retry now.

`queue` and `queue show` only read. `queue retry` asks the running daemon (SIGUSR1)
to drop its reconnect back-off and offer every undelivered item again at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from agent.cli.common import load_config, open_lane, print_json
from agent.statusfile import StatusFile


def register(subparsers) -> None:
    p = subparsers.add_parser("queue", help="backlog per back end; show one event; retry",
                              description=__doc__,
                              epilog="examples:\n  laneagent queue --json\n  laneagent queue show 6f1c...\n"
                                     "  laneagent queue retry",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run_list)
    sub = p.add_subparsers(dest="queue_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="one event, in full, with its deliveries",
                          epilog="example: laneagent queue show 6f1c2f0e-...", description="Show one stored event.")
    show.add_argument("event_id")
    show.set_defaults(func=run_show)
    retry = sub.add_parser("retry", help="tell the daemon to reconnect and re-offer everything now",
                           epilog="example: laneagent queue retry", description="Retry delivery now.")
    retry.set_defaults(func=run_retry)


def _daemon(cfg) -> dict:
    return StatusFile(cfg.status_path).read_or({})


def run_list(args) -> int:
    opened = open_lane(args, "queue")
    if opened is None:
        return 2
    cfg, store = opened
    live = {b["name"]: b for b in _daemon(cfg).get("backends", [])}
    now_ms = int(time.time() * 1000)
    with store:
        rows = [{"backend": b.name, "country": b.country, **store.backlog(b.name, now_ms),
                 "drain_rate": live.get(b.name, {}).get("drain_rate"),
                 "last_error": live.get(b.name, {}).get("last_error")} for b in cfg.backends]
        gaps = store.gaps()
    if args.json:
        print_json({"backends": rows, "gaps": gaps})
        return 0
    print(f"{'back end':<10} {'events':>8} {'alerts':>7} {'MB':>8} {'oldest':>10} {'drain/s':>8}  last error")
    for r in rows:
        oldest = "-" if r["oldest_event_age_s"] is None else f"{r['oldest_event_age_s']:.0f}s"
        mb = (r["event_bytes"] + r["alert_bytes"]) / 1e6
        print(f"{r['backend']:<10} {r['events']:>8} {r['alerts']:>7} {mb:>8.2f} {oldest:>10} "
              f"{r['drain_rate'] if r['drain_rate'] is not None else '-':>8}  {r['last_error'] or ''}")
    print("gaps (reads the agent could not keep): " + ("none" if not gaps else ""))
    for g in gaps:
        print(f"  {g['count']} reads between {_ms(g['first_ms'])} and {_ms(g['last_ms'])}: {g['reason']}")
    return 0


def _ms(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def run_show(args) -> int:
    opened = open_lane(args, "queue show")
    if opened is None:
        return 2
    _, store = opened
    with store:
        found = store.event(args.event_id)
        if found is None:
            print(f"laneagent queue show: no event {args.event_id} (purged after retention_days, or mistyped)",
                  file=sys.stderr)
            return 1
        deliveries = store.deliveries(found["seq"])
    doc = {"event": found["event"], "created_ms": found["created_ms"], "deliveries": deliveries}
    print_json(doc)
    return 0


def run_retry(args) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    pid = _daemon(cfg).get("pid")
    if not pid:
        print("laneagent queue retry: the daemon is not running (start it: sudo systemctl start laneagent)",
              file=sys.stderr)
        return 1
    try:
        os.kill(int(pid), signal.SIGUSR1)
    except ProcessLookupError:
        print(f"laneagent queue retry: no daemon with pid {pid} (stale status file); is it running?", file=sys.stderr)
        return 1
    except PermissionError:
        print("laneagent queue retry: not allowed to signal the daemon; run it with sudo", file=sys.stderr)
        return 1
    print(f"asked the daemon (pid {pid}) to reconnect and re-offer every undelivered item now")
    return 0
