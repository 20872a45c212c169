"""`laneagent cache import FILE`: load cache messages (2.6) from a CBOR or JSON file.

For offline set-up and benchmarks. The file holds one cache message or an array of
them. Each is checked as the downlink would be and applied idempotently; a running
daemon's writes wait for ours (SQLite's lock), they are never interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import typing

import cbor2

from agent.cli.common import load_config, print_json
from agent.cli.progress import Progress
from agent.errors import DownlinkRejected, StoreError
from agent.store.cache import validate_cache_message
from agent.store.writer import StoreWriter

Iterator = typing.Iterator


def register(subparsers) -> None:
    p = subparsers.add_parser("cache", help="cache maintenance (import)",
                              description="Cache maintenance.",
                              epilog="example: laneagent cache import cache-CA.cbor",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    imp = sub.add_parser("import", help="load cache messages from a CBOR or JSON file",
                         description=__doc__, epilog="example: laneagent cache import --config lane.toml cache-US.json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", help="a .json or CBOR file: one cache message, an array, or (CBOR) messages back to back")
    imp.set_defaults(func=run_import)


def iter_messages(path: str, read: list[float] | None = None) -> Iterator:
    """JSON (one message or an array), or CBOR: one message, an array, or messages back to
    back (streamed: a million-record cache never sits in memory whole). `read`, when given,
    holds the share of the file read so far (0..1) as each message is handed out."""
    read = read if read is not None else [0.0]
    with open(path, "rb") as f:
        if path.endswith(".json") or f.read(1) in (b"{", b"["):
            f.seek(0)
            try:
                doc = json.load(f)
            except ValueError as e:
                raise DownlinkRejected("malformed", f"{path}: not valid JSON: {e}") from e
            items = doc if isinstance(doc, list) else [doc]
            for i, item in enumerate(items):
                read[0] = (i + 1) / len(items)
                yield item
            return
        f.seek(0)
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            at = f.tell()
            try:
                doc = cbor2.load(f)
            except (ValueError, cbor2.CBORDecodeError) as e:
                raise DownlinkRejected("malformed", f"{path}: not valid CBOR at byte {at}: {e}") from e
            items = doc if isinstance(doc, (list, tuple)) else [doc]
            for i, item in enumerate(items):
                read[0] = (at + (f.tell() - at) * (i + 1) / len(items)) / max(size, 1)
                yield item


def run_import(args) -> int:
    cfg = load_config(args)
    if cfg is None:
        return 2
    if not os.path.exists(args.file):
        print(f"laneagent cache import: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        writer = StoreWriter(cfg.store.path)
    except StoreError as e:
        print(f"laneagent cache import: {e}", file=sys.stderr)
        return 2
    results: list[dict] = []
    started = time.monotonic()
    code = 0
    progress, read, records = Progress("cache import", "records", json_out=args.json), [0.0], 0
    try:
        # One transaction per message, as the downlink applies them: a bad message
        # further on leaves the earlier ones applied and changes nothing itself.
        for msg in iter_messages(args.file, read):
            msg = validate_cache_message(msg)
            with writer.transaction():
                r = writer.apply_cache(msg, int(time.time() * 1000))
            results.append({"source": r.source, "seq": r.seq, "outcome": r.outcome, "records": r.records})
            records += r.records
            progress.update(records, read[0])
    except DownlinkRejected as e:
        progress.done()
        print(f"laneagent cache import: {args.file}: message {len(results) + 1}: {e} "
              f"({len(results)} message(s) before it were applied; it and the rest were not)", file=sys.stderr)
        code = 3
    finally:
        progress.done()
        writer.close()
    if args.json:
        print_json({"file": args.file, "messages": results, "seconds": round(time.monotonic() - started, 3)})
    elif len(results) > 20:
        applied = [r for r in results if r["outcome"] == "applied"]
        print(f"{len(applied)} of {len(results)} messages applied, {sum(r['records'] for r in applied):,} records, "
              f"in {time.monotonic() - started:.1f} s")
    else:
        for r in results:
            print(f"{r['source']} seq {r['seq']}: {r['outcome']}"
                  + (f", {r['records']} records" if r["outcome"] == "applied" else
                     " (already applied)" if r["outcome"] == "duplicate" else " (an earlier seq is missing)"))
    if code:
        return code
    return 0 if all(r["outcome"] != "gap" for r in results) else 1
