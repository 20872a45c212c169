"""Command line of the demo: `python -m simulators.demo [--seconds 60] [--keep DIR]`.

SIGTERM and SIGHUP are turned into the same path as Ctrl-C, so the demo always judges
what arrived, stops every process it started and removes its run directory (unless
--keep) before it exits.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from simulators.demo.lane import DemoOptions, run

EXAMPLES = """examples:
  python -m simulators.demo                      # about a minute; exit 0 when all arrived and verified
  python -m simulators.demo --seconds 120 --keep /tmp/demo-run   # keep logs, config and database

It starts two mosquitto brokers (CA, US), both back-end simulators, the reader simulator
on a pseudo-terminal and the agent, then prints each crossing as each country gets it.
"""


def parse_args(argv: list[str] | None) -> DemoOptions:
    p = argparse.ArgumentParser(prog="python -m simulators.demo", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the truck traffic (default 60)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="run in DIR and keep it (logs, agent.toml, database)")
    p.add_argument("--seed", type=int, default=1, help="fleet and scenario seed (default 1)")
    p.add_argument("--trucks", type=int, default=40, help="crews in the cache (default 40)")
    p.add_argument("--lead-s", type=float, default=8.0, help="seconds before the first truck (default 8)")
    p.add_argument("--grace-s", type=float, default=20.0, help="wait this long after the last truck (default 20)")
    args = p.parse_args(argv)
    return DemoOptions(seconds=args.seconds, keep=args.keep, seed=args.seed, trucks=args.trucks,
                       lead_s=args.lead_s, grace_s=args.grace_s)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # also when started with SIGINT ignored (a background job of a script): `kill -INT` must work
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return run(options)
    except KeyboardInterrupt:  # before the lane was up: run() has already cleaned up
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
