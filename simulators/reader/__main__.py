"""`python -m simulators.reader --dialect D --pty`: a simulated reader on a pseudo-terminal.

Prints the pty's device path as the first line on stdout (flushed), then runs until
SIGTERM or SIGINT; logs go to stderr. `--link PATH` keeps a stable symlink to the pty
(re-pointed by the next run and by a replug, like /dev/serial/by-id); `--scenario FILE`
says which tags pass when (see simulators/scenario.py; without it a demo truck passes
every 20 s). Misbehaviour, the same for every dialect: `--noise RATE`, `--corrupt RATE`,
`--split`, `--stall S [--stall-at T]`, `--reboot-at S`, `--unplug-at S --replug-after S`.
`--baudrate N`: answer only while the host has set N on the pty (a pty does not enforce
baud rates; this models a reader that does), garbage otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys

from simulators.reader.runner import MODELS, SimulatedReader, until_signalled
from simulators.scenario import ScenarioError, load_scenario

EXAMPLE = """examples:
  python -m simulators.reader --dialect thingmagic --pty --link /tmp/rfid-booth --scenario lane.json
  # then in agent.toml: [[readers]] url = "/tmp/rfid-booth"; the link survives simulator restarts
  python -m simulators.reader --dialect chafon --pty --link /tmp/rfid-gate --noise 0.05 --unplug-at 30
  python -m simulators.reader --dialect alien --pty --baudrate 57600   # for laneagent reader probe
"""
CHAFON_TYPES = {"uhfreader288m": 0x0C, "uhfreader18": 0x09}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.reader", description=__doc__.split("\n\n")[0],
                                     epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialect", required=True, choices=sorted(MODELS))
    parser.add_argument("--pty", action="store_true", required=True, help="serve on a pseudo-terminal")
    parser.add_argument("--scenario", metavar="FILE", help="scenario JSON (tags passing through the field)")
    parser.add_argument("--link", metavar="PATH", help="keep a symlink at PATH pointing to the pty")
    parser.add_argument("--seed", type=int, help="random seed (RSSI jitter, misbehaviour)")
    bad = parser.add_argument_group("misbehaviour")
    bad.add_argument("--noise", type=float, default=0.0, metavar="RATE", help="chance per frame of random bytes before it")
    bad.add_argument("--corrupt", type=float, default=0.0, metavar="RATE", help="chance per frame of one flipped bit")
    bad.add_argument("--split", action="store_true", help="write one byte at a time with random gaps")
    bad.add_argument("--stall", type=float, default=0.0, metavar="S", help="stop answering for S seconds")
    bad.add_argument("--stall-at", type=float, default=2.0, metavar="T", help="when the stall starts (default 2 s)")
    bad.add_argument("--reboot-at", type=float, metavar="S", help="power-cycle the reader S seconds after start")
    bad.add_argument("--unplug-at", type=float, metavar="S", help="unplug S seconds after start (the pty goes away)")
    bad.add_argument("--replug-after", type=float, default=1.0, metavar="S", help="plug back in S seconds later")
    bad.add_argument("--baudrate", type=int, metavar="N", help="answer only when the host uses this speed")
    model = parser.add_argument_group("model")
    model.add_argument("--boot-s", type=float, metavar="S", help="how long a (re)boot takes")
    model.add_argument("--reboot-silently", action="store_true", help="thingmagic: no boot announcement frame")
    model.add_argument("--keepalive-s", type=float, metavar="S", help="thingmagic: keep-alive interval, empty field")
    model.add_argument("--start-streaming", action="store_true", help="thingmagic: already streaming (agent restart)")
    model.add_argument("--start-autonomous", action="store_true", help="alien: autonomous mode, notifying on serial")
    model.add_argument("--model", choices=sorted(CHAFON_TYPES), help="chafon: which firmware family")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command to stderr")
    return parser.parse_args(argv)


def model_options(args: argparse.Namespace) -> dict:
    options: dict = {}
    if args.boot_s is not None:
        options["boot_s"] = args.boot_s
    if args.dialect == "thingmagic":
        options.update(keepalive_s=args.keepalive_s, announce_boot=not args.reboot_silently,
                       start_streaming=args.start_streaming)
    elif args.dialect == "alien" and args.start_autonomous:
        options["start_autonomous"] = True
    elif args.dialect == "chafon" and args.model:
        options["type_code"] = CHAFON_TYPES[args.model]
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s simulator %(levelname)s %(message)s")
    try:
        scenario = load_scenario(args.scenario) if args.scenario else None
    except ScenarioError as e:
        print(f"simulators.reader: {e}", file=sys.stderr)
        return 2
    done = until_signalled()
    sim = SimulatedReader(args.dialect, scenario, link=args.link, reboot_at=args.reboot_at, noise=args.noise,
                          corrupt=args.corrupt, split=args.split, stall_s=args.stall, stall_at=args.stall_at,
                          unplug_at=args.unplug_at, replug_after=args.replug_after, baudrate=args.baudrate,
                          seed=args.seed, **model_options(args))
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
