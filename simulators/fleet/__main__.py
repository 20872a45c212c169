"""`python -m simulators.fleet`: write a lane's cache files and the matching reader scenario.

Normal mode writes, per source country, the DESIGN 2.6 snapshot message as CBOR and as a
JSON twin (`cache-CA.cbor`, `cache-CA.json`, ...), the reader simulator's
`scenario.json`, and `expectations.json` (what each pass must yield). `--big` streams a
port-sized cache for benchmarks into a CBOR sequence (RFC 8742) of cache messages,
`cache-CA.cbors`: a snapshot followed by upserts, each under the agent's message limit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cbor2

from simulators.fleet.bigcache import BigCacheShape, iter_big_cache, iter_cache_messages
from simulators.fleet.records import Fleet

EXAMPLES = """examples:
  python -m simulators.fleet --seed 7 --out-dir /tmp/lane
  python -m simulators.fleet --now-ms 1767225600000 --seed 7 --trucks 60 --seconds 90 --out-dir /tmp/lane
  python -m simulators.fleet --big --drivers 1000000 --trips 200000 --out-dir /tmp/bench
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulators.fleet", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, type=Path, help="where to write the files (created)")
    p.add_argument("--seed", type=int, default=1, help="same seed and --now-ms, same files (default 1)")
    p.add_argument("--now-ms", type=int, default=None, help="the traffic's 'now', ms since the epoch (default: now)")
    p.add_argument("--port-code", default="0901")
    p.add_argument("--entering", default="CA", help="country the trucks enter; it publishes the trips")
    p.add_argument("--leaving", default="US")
    p.add_argument("--trucks", type=int, default=40, help="crews in the cache (default 40)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the scenario (default 60)")
    big = p.add_argument_group("benchmark cache")
    big.add_argument("--big", action="store_true", help="stream a port-sized cache instead")
    big.add_argument("--drivers", type=int, default=1_000_000)
    big.add_argument("--trips", type=int, default=200_000)
    big.add_argument("--per-message", type=int, default=2_000, help="records per cache message")
    return p.parse_args(argv)


def write_lane(args: argparse.Namespace, now_ms: int) -> list[Path]:
    fleet = Fleet.generate(args.seed, now_ms, trucks=args.trucks, port_code=args.port_code,
                           entering=args.entering, leaving=args.leaving)
    written = []
    for source in fleet.sources:
        message = fleet.cache_message(source)
        cbor_path = args.out_dir / f"cache-{source}.cbor"
        cbor_path.write_bytes(cbor2.dumps(message))
        json_path = args.out_dir / f"cache-{source}.json"
        json_path.write_text(json.dumps(message, indent=1) + "\n")
        written += [cbor_path, json_path]
    scenario = fleet.scenario(seconds=args.seconds)
    written.append(scenario.write(args.out_dir / "scenario.json"))
    expectations = args.out_dir / "expectations.json"
    expectations.write_text(json.dumps({"seed": args.seed, "now_ms": now_ms, "port": args.port_code,
                                        "passes": scenario.expectations()}, indent=1) + "\n")
    written.append(expectations)
    return written


def write_big(args: argparse.Namespace, now_ms: int) -> list[Path]:
    shape = BigCacheShape(drivers=args.drivers, trips=args.trips)
    path = args.out_dir / f"cache-{args.entering}.cbors"
    records = iter_big_cache(args.seed, now_ms, shape, args.port_code, args.entering, args.leaving)
    with open(path, "wb") as out:
        for message in iter_cache_messages(records, args.entering, per_message=args.per_message):
            out.write(cbor2.dumps(message))
    return [path]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        written = write_big(args, now_ms) if args.big else write_lane(args, now_ms)
    except ValueError as e:
        print(f"fleet: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(f"{path}  {path.stat().st_size:,} bytes")
    print(f"seed {args.seed}, now_ms {now_ms}, {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
