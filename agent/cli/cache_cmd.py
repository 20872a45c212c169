"""`laneagent cache import FILE`: load cache messages (2.6) from a CBOR or JSON file.

For offline set-up and benchmarks. The file holds one cache message or an array of
them. Each is checked as the downlink would be and applied idempotently; a running
daemon's writes wait for ours (SQLite's lock), they are never interleaved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cbor2

from agent.cli.common import load_config, print_json
from agent.errors import DownlinkRejected, StoreError
from agent.store.cache import validate_cache_message
from agent.store.writer import StoreWriter


def register(subparsers) -> None:
    p = subparsers.add_parser("cache", help="cache maintenance (import)",
                              description="Cache maintenance.",
                              epilog="example: laneagent cache import cache-CA.cbor",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    imp = sub.add_parser("import", help="load cache messages from a CBOR or JSON file",
                         description=__doc__, epilog="example: laneagent cache import --config lane.toml cache-US.json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", help="a .cbor or .json file holding one cache message or an array of them")
    imp.set_defaults(func=run_import)


def read_messages(path: str) -> list:
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = json.loads(data) if path.endswith(".json") or data[:1] in (b"{", b"[") else cbor2.loads(data)
    except (ValueError, cbor2.CBORDecodeError) as e:
        raise DownlinkRejected("malformed", f"{path}: neither valid JSON nor CBOR: {e}") from e
    return list(doc) if isinstance(doc, (list, tuple)) else [doc]


def run_import(args) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    try:
        messages = [validate_cache_message(m) for m in read_messages(args.file)]
    except FileNotFoundError:
        print(f"laneagent cache import: {args.file}: no such file", file=sys.stderr)
        return 2
    except DownlinkRejected as e:
        print(f"laneagent cache import: {args.file}: {e} (nothing was changed)", file=sys.stderr)
        return 3
    try:
        writer = StoreWriter(cfg.store.path)
    except StoreError as e:
        print(f"laneagent cache import: {e}", file=sys.stderr)
        return 2
    results = []
    started = time.monotonic()
    with writer.transaction():
        for msg in messages:
            r = writer.apply_cache(msg, int(time.time() * 1000))
            results.append({"source": r.source, "seq": r.seq, "outcome": r.outcome, "records": r.records})
    writer.close()
    if args.json:
        print_json({"file": args.file, "messages": results, "seconds": round(time.monotonic() - started, 3)})
    else:
        for r in results:
            print(f"{r['source']} seq {r['seq']}: {r['outcome']}"
                  + (f", {r['records']} records" if r["outcome"] == "applied" else
                     " (already applied)" if r["outcome"] == "duplicate" else " (an earlier seq is missing)"))
    return 0 if all(r["outcome"] != "gap" for r in results) else 1
