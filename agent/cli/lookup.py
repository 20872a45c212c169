"""`laneagent lookup EPC`: what the cache knows about a tag, and the trip it belongs to."""

from __future__ import annotations

import argparse
import time

from agent.cli.common import open_lane, print_json
from agent.readers.report import epc_uri
from agent.store.cache import CacheView


def register(subparsers) -> None:
    p = subparsers.add_parser("lookup", help="what the cache knows about a tag",
                              description="Show the records that name an EPC, their trips and any lookouts.",
                              epilog="example: laneagent lookup E2801160600002054C4B1A7F --json",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("epc", help="the tag's EPC in hex (spaces allowed)")
    p.set_defaults(func=run)


def lookup(cache: CacheView, epc: str, now_ms: int, eta_window_h: float) -> dict:
    window_ms = eta_window_h * 3600_000
    records = []
    for source, kind, rec in cache.tagged(epc):
        if kind == "conveyance":
            trips = cache.trips_of_conveyance(source, rec["id"])
        else:
            trips = cache.trips_of_member(source, kind, rec["id"])
        lookouts = cache.lookouts(kind, rec["id"], now_ms)
        records.append({
            "source": source, "kind": kind, "record": rec,
            "trips": [{**t, "in_eta_window": t.get("eta_ms") is not None and abs(t["eta_ms"] - now_ms) <= window_ms}
                      for t in trips],
            "lookouts": [{"source": s, **lk} for s, lk in lookouts],
        })
    # the carrier records (any source) the truck or its trips name: what trust looks at (DESIGN 2.7)
    codes = sorted({c for r in records for c in [r["record"].get("carrier")] + [t.get("carrier") for t in r["trips"]]
                    if isinstance(c, str)})
    carriers = [{"source": s, **rec} for code in codes for s, rec in cache.records("carrier", code)]
    return {"epc": epc, "epc_uri": epc_uri(epc), "records": records, "carriers": carriers,
            "epc_lookouts": [{"source": s, **lk} for s, lk in cache.lookouts("epc", epc, now_ms)]}


def run(args) -> int:
    epc = args.epc.replace(" ", "").upper()
    opened = open_lane(args, "lookup")
    if opened is None:
        return 2
    cfg, store = opened
    with store:
        doc = lookup(store.cache, epc, int(time.time() * 1000), cfg.lane.eta_window_h)
    if args.json:
        print_json(doc)
        return 0 if doc["records"] or doc["epc_lookouts"] else 1
    if not doc["records"]:
        print(f"{epc}: no cache record names this tag (it would be reported as unknown_tag)")
    for r in doc["records"]:
        rec = r["record"]
        print(f"{epc}: {r['kind']} {rec['id']} (source {r['source']})"
              + (f", status {rec['status']}" if rec.get("status") else ""))
        for t in r["trips"]:
            print(f"  trip {t['id']} carrier {t.get('carrier')} eta_ms {t.get('eta_ms')}"
                  f"{'' if t['in_eta_window'] else '  (outside the ETA window)'}")
        for lk in r["lookouts"]:
            print(f"  LOOKOUT {lk['id']} from {lk['source']}: {lk.get('reason')} (severity {lk.get('severity')})")
    for c in doc["carriers"]:
        print(f"  carrier {c['id']} (source {c['source']}): {c.get('name') or '-'}, programs "
              f"{', '.join(c.get('programs') or []) or 'none'}")
    for lk in doc["epc_lookouts"]:
        print(f"  LOOKOUT on the EPC itself {lk['id']} from {lk['source']}: {lk.get('reason')}")
    return 0 if doc["records"] or doc["epc_lookouts"] else 1
