"""`laneagent tail`: follow crossings live: one line per passage, one per delivery to a back end.

Reads the database through a read-only connection, polling for events newer than the
last one shown, then watching their delivery rows until each back end has them. EPCs
are masked to their last four digits and no names are shown: the screen may be seen
by the driver at the window. `--kind` picks back ends by what the crossing is to them
(entry for the country entered, exit for the one left). Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from agent.cli.common import load_config
from agent.config import FINDING_CODES
from agent.diagnostics.privacy import mask_epc
from agent.errors import StoreError
from agent.store.reader import StoreReader

MAX_WATCHED = 10_000  # pending deliveries followed at once; a drained backlog is not replayed line by line

EPILOG = """examples:
  laneagent tail                                # every passage and delivery from now on
  laneagent tail --last 20 --refer              # the last 20 referred crossings, then follow
  laneagent tail --backend cbp --json | jq .    # what the US back end gets, as JSON lines
  laneagent tail --kind entry --finding lookout_hit
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("tail", help="follow passages and their deliveries live",
                              description="Follow crossings live: one line per passage, one per delivery to a "
                                          "back end. EPCs are masked, names never shown. Ctrl-C ends it.",
                              epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", metavar="NAME", help="only deliveries to this back end (its config name)")
    p.add_argument("--kind", choices=("entry", "exit"), help="only back ends that get the crossing as this kind")
    p.add_argument("--finding", metavar="CODE", choices=FINDING_CODES,
                   help=f"only passages with this finding ({', '.join(FINDING_CODES)})")
    p.add_argument("--refer", action="store_true", help="only passages referred to secondary inspection")
    p.add_argument("--tier", choices=("trusted", "standard"), help="only crossings of this tier (DESIGN 2.7)")
    p.add_argument("--last", type=int, default=5, metavar="N", help="first show the last N passages (default 5)")
    p.add_argument("--interval", type=float, default=0.25, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _clock(ms: int | None) -> str:
    if not ms:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


class Follower:
    """The state of one tail: what was shown, which deliveries are still awaited."""

    def __init__(self, cfg, store: StoreReader, backends: dict[str, str], args):
        self.cfg, self.store, self.backends, self.args = cfg, store, backends, args
        self.last_seq = 0
        self.watched: dict[tuple[str, int], int] = {}  # (back end, seq) -> event created_ms

    def start(self) -> None:
        top = self.store.last_event_seq()
        self.last_seq = max(0, top - self.args.last) if self.args.last > 0 else top
        self.poll()

    def poll(self) -> None:
        for seq, created_ms, event in self.store.events_after(self.last_seq, 500):
            self.last_seq = seq
            if self._wanted(event):
                self._show_passage(event, created_ms)
        self._show_deliveries()

    def _wanted(self, event: dict) -> bool:
        codes = {f.get("code") for f in event.get("findings") or []}
        if self.args.finding and self.args.finding not in codes:
            return False
        if self.args.refer and not (event.get("referral") or {}).get("refer"):
            return False
        if getattr(self.args, "tier", None) and (event.get("referral") or {}).get("tier", "standard") != self.args.tier:
            return False
        return True

    def _show_passage(self, event: dict, created_ms: int) -> None:
        seq = event["seq"]
        owed = [d["backend"] for d in self.store.deliveries(seq) if d["backend"] in self.backends]
        if not owed:
            return
        tags = [{"role": t.get("role"), "epc": mask_epc(t.get("epc")), "reads": t.get("count")}
                for t in event.get("tags") or []]
        referral = event.get("referral") or {}
        doc = {"type": "passage", "seq": seq, "event_id": event["event_id"], "started_ms": event["started_ms"],
               "ended_ms": event["ended_ms"], "committed_ms": created_ms, "tags": tags,
               "trip": (event.get("trip") or {}).get("id"), "conveyance": (event.get("conveyance") or {}).get("id"),
               "findings": [f.get("code") for f in event.get("findings") or []],
               "refer": bool(referral.get("refer")), "reasons": referral.get("reasons") or [],
               "tier": referral.get("tier", "standard"), "to": owed}
        fast = next((f.get("detail") for f in event.get("findings") or [] if f.get("code") == "not_fast_eligible"),
                    None)
        if fast is not None:
            doc["not_fast_eligible"] = fast
        if self.args.json:
            _emit(json.dumps(doc))
        else:
            duration = (event["ended_ms"] - event["started_ms"]) / 1000
            tag_text = ", ".join(f"{t['role']} {t['epc']}" for t in tags) or "no tags"
            refer = f"  REFER ({', '.join(doc['reasons'])})" if doc["refer"] else ""
            findings = f"  findings: {', '.join(doc['findings'])}" if doc["findings"] else "  clean"
            not_fast = f"  NOT FAST ({_not_fast_text(fast)})" if fast is not None else ""
            _emit(f"{_clock(event['ended_ms'])}  #{seq:<6} passage {duration:4.1f} s  {doc['tier']:<8}  {tag_text}  "
                  f"trip {doc['trip'] or '-'}{findings}{not_fast}{refer}")
        for backend in owed:
            if len(self.watched) >= MAX_WATCHED:
                self.watched.pop(next(iter(self.watched)))
            self.watched[(backend, seq)] = created_ms

    def _show_deliveries(self) -> None:
        if not self.watched:
            return
        first = min(seq for _, seq in self.watched)
        done = []
        for backend in {b for b, _ in self.watched}:
            done += [(backend, seq, at, attempts) for seq, at, attempts in self.store.delivered_since(backend, first)
                     if (backend, seq) in self.watched]
        for backend, seq, at, attempts in sorted(done, key=lambda d: (d[2], d[1], d[0])):
            created_ms = self.watched.pop((backend, seq))
            country = next(b.country for b in self.cfg.backends if b.name == backend)
            doc = {"type": "delivery", "seq": seq, "backend": backend, "country": country,
                   "kind": self.backends[backend], "delivered_ms": at, "after_ms": at - created_ms,
                   "attempts": attempts}
            if self.args.json:
                _emit(json.dumps(doc))
            else:
                _emit(f"{_clock(at)}  #{seq:<6} -> {backend} ({country}, {doc['kind']}) delivered "
                      f"{doc['after_ms']} ms after commit")


def _not_fast_text(detail: dict) -> str:
    """Why a truck has no business in a FAST lane, by record ids (never names)."""
    parts = [] if detail.get("trip") else ["no trip"]
    if detail.get("drivers"):
        parts.append("drivers " + ", ".join(detail["drivers"]))
    if detail.get("carrier"):
        parts.append(f"carrier {detail['carrier']}")
    if detail.get("shipments"):
        parts.append("shipments " + ", ".join(detail["shipments"]))
    return "; ".join(parts) or "no driver card"


def _emit(line: str) -> None:
    print(line, flush=True)  # a pipe (| grep) sees each line as it happens


def run(args) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    kinds = {b.name: "entry" if b.country == cfg.lane.entering else "exit" for b in cfg.backends}
    chosen = {n: k for n, k in kinds.items() if (not args.backend or n == args.backend)
              and (not args.kind or k == args.kind)}
    if args.backend and args.backend not in kinds:
        print(f"laneagent tail: no back end {args.backend!r} in {cfg.path} (configured: {', '.join(kinds)})",
              file=sys.stderr)
        return 2
    if not chosen:
        print(f"laneagent tail: no back end in {cfg.path} gets crossings as {args.kind}", file=sys.stderr)
        return 2
    try:
        store = StoreReader(cfg.store.path)
    except StoreError as e:
        print(f"laneagent tail: {e}", file=sys.stderr)
        return 2
    follower = Follower(cfg, store, chosen, args)
    try:
        follower.start()
        while True:
            time.sleep(args.interval)
            follower.poll()
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one leaves a tail: not an error
    finally:
        store.close()
