"""`laneagent verify`: check the stored event hash chain (DESIGN 2.5) and report the first break.

Recomputes every section digest and every hash from the stored full events, checks
that each `prev_hash` is the previous event's `hash` and that no `seq` is missing,
and that the chain head in the lane state is the last event's hash. Events purged by
retention leave the chain starting later; that is reported, not an error.
"""

from __future__ import annotations

import argparse
from typing import Callable

from agent.cli.common import open_lane, print_json
from agent.cli.progress import Progress
from agent.lane.event import GENESIS, IDENTITY_KEYS, chain_hash, section_digests
from agent.store.reader import StoreReader


def register(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check the event hash chain",
                              description=__doc__, epilog="example: laneagent verify --json",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def verify(store: StoreReader, progress: Callable[[int, float | None], None] = lambda checked, share: None) -> dict:
    """`progress(checked, share of the chain)` is called as the check goes (the CLI's progress line)."""
    first_break = None
    checked = 0
    prev_seq, prev_hash, first_seq = None, None, None
    last_stored = store.last_event_seq()
    for seq, stored_hash, event in store.chain_events():
        problem = None
        progress(checked, (seq - first_seq) / max(last_stored - first_seq + 1, 1) if first_seq else 0.0)
        if first_seq is None:
            first_seq = seq
            if seq == 1 and event["prev_hash"] != GENESIS:
                problem = "the first event's prev_hash is not 64 zeros"
        elif seq != prev_seq + 1:
            problem = f"seq {prev_seq + 1}..{seq - 1} missing"
        elif event["prev_hash"] != prev_hash:
            problem = "prev_hash does not match the previous event's hash"
        if problem is None and event["digests"] != section_digests(event):
            problem = "a section digest does not match its section"
        if problem is None and chain_hash(event["prev_hash"], {k: event[k] for k in IDENTITY_KEYS},
                                          event["digests"]) != event["hash"]:
            problem = "hash does not match the event"
        if problem is None and stored_hash != event["hash"]:
            problem = "the indexed hash differs from the event's"
        if problem:
            first_break = {"seq": seq, "problem": problem}
            break
        checked += 1
        prev_seq, prev_hash = seq, event["hash"]
    last_seq, head = store.chain_head()
    next_seq = last_seq + 1
    if first_break is None and prev_seq is not None:
        if next_seq != prev_seq + 1 or head != prev_hash:
            first_break = {"seq": prev_seq, "problem": f"lane state (next seq {next_seq}, head {head[:12]}...) "
                                                       "does not match the last stored event: rollback or truncation"}
    return {"ok": first_break is None, "checked": checked, "first_seq": first_seq, "last_seq": prev_seq,
            "purged_before": first_seq if first_seq and first_seq > 1 else None, "first_break": first_break}


def run(args) -> int:
    opened = open_lane(args, "verify")
    if opened is None:
        return 2
    _, store = opened
    progress = Progress("verify", "events", json_out=args.json)
    with store:
        try:
            doc = verify(store, progress.update)
        finally:
            progress.done()
    if args.json:
        print_json(doc)
    elif doc["ok"]:
        span = f"seq {doc['first_seq']}..{doc['last_seq']}" if doc["checked"] else "no events yet"
        print(f"chain intact: {doc['checked']} events checked ({span})"
              + (f"; events before seq {doc['purged_before']} were purged by retention" if doc["purged_before"] else ""))
    else:
        b = doc["first_break"]
        print(f"CHAIN BROKEN at seq {b['seq']}: {b['problem']} ({doc['checked']} events before it are intact)")
    return 0 if doc["ok"] else 1
