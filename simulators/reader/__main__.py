"""`python -m simulators.reader --dialect D --pty`: a simulated reader on a pseudo-terminal.

Prints the pty's device path as the first line on stdout (flushed), then runs until
SIGTERM or SIGINT; logs go to stderr. `--link PATH` keeps a stable symlink to the pty
(re-pointed by the next run, like /dev/serial/by-id); `--reboot-at S` power-cycles the
module S seconds after start; `--scenario FILE` says which tags pass when (see
simulators/scenario.py; without it a demo truck passes every 20 s).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from simulators.reader.runner import MODELS, SimulatedReader
from simulators.scenario import ScenarioError, load_scenario

EXAMPLE = """example:
  python -m simulators.reader --dialect thingmagic --pty --link /tmp/rfid-booth --scenario lane.json
  # then in agent.toml: [[readers]] url = "/tmp/rfid-booth"; the link survives simulator restarts
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.reader", description=__doc__.split("\n\n")[0],
                                     epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialect", required=True, choices=sorted(MODELS))
    parser.add_argument("--pty", action="store_true", required=True, help="serve on a pseudo-terminal")
    parser.add_argument("--scenario", metavar="FILE", help="scenario JSON (tags passing through the field)")
    parser.add_argument("--link", metavar="PATH", help="keep a symlink at PATH pointing to the pty")
    parser.add_argument("--reboot-at", type=float, metavar="S", help="power-cycle the module S seconds after start")
    parser.add_argument("--reboot-silently", action="store_true", help="reboot without the boot announcement frame")
    parser.add_argument("--keepalive-s", type=float, metavar="S", help="keep-alive interval while the field is empty")
    parser.add_argument("--start-streaming", action="store_true", help="start as if already streaming (agent restart)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s simulator %(levelname)s %(message)s")
    try:
        scenario = load_scenario(args.scenario) if args.scenario else None
    except ScenarioError as e:
        print(f"simulators.reader: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    sim = SimulatedReader(args.dialect, scenario, link=args.link, reboot_at=args.reboot_at,
                          keepalive_s=args.keepalive_s, announce_boot=not args.reboot_silently,
                          start_streaming=args.start_streaming)
    sim.start()
    try:
        print(sim.device, flush=True)
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
