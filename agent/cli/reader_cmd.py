"""`laneagent reader probe --url URL`: which dialect, baud rate, model and firmware a reader has.

A technician fitting a reader runs this before writing the config: it tries each dialect's
read-only identification query at the usual baud rates (agent/readers/probe.py says which
queries and why they change nothing on the reader) and prints what answered and the
`[[readers]]` block to paste into agent.toml; `--json` prints the same as one object. The
port is opened exclusively, so a port the running daemon holds is refused, never shared.
Exit 0 when a reader answered, 1 when none did, 2 when the port cannot be opened.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import print_json
from agent.readers import probe as probing

EXIT_FOUND, EXIT_NOTHING, EXIT_PORT = 0, 1, 2

EPILOG = """examples:
  laneagent reader probe --url /dev/ttyUSB0
  laneagent reader probe --url /dev/serial/by-id/usb-FTDI_FT232R-if00-port0 --json
  laneagent reader probe --url socket://10.0.0.7:4001 --baud 115200 --dialect r2000
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("reader", help="reader tools (probe)", description="Reader tools.",
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="reader_command", metavar="SUBCOMMAND")
    p = commands.add_parser("probe", help="find a reader's dialect, baud rate, model and firmware",
                            description=__doc__.split("\n\n")[1], epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the port: /dev/ttyUSB0, a by-id link, socket://host:port, ...")
    p.add_argument("--baud", type=int, action="append", metavar="N",
                   help=f"only this baud rate (repeatable; default: {', '.join(map(str, probing.BAUDS))})")
    p.add_argument("--dialect", action="append", choices=probing.ORDER, help="only this dialect (repeatable)")
    p.add_argument("--reply-timeout", type=float, default=0.3, metavar="S", help="wait this long for each answer")
    p.set_defaults(func=run_probe)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])
    return parser


def run_probe(args: argparse.Namespace) -> int:
    bauds = tuple(args.baud) if args.baud else probing.BAUDS
    dialects = tuple(d for d in probing.ORDER if not args.dialect or d in args.dialect)
    try:
        report = probing.probe(args.url, bauds, dialects, reply_timeout_s=args.reply_timeout)
    except probing.PortBusy as e:
        if args.json:
            print_json({"url": args.url, "found": False, "error": str(e)})
        else:
            print(f"laneagent reader probe: {e}", file=sys.stderr)
        return EXIT_PORT
    if args.json:
        print_json(report.to_dict())
        return EXIT_FOUND if report.found else EXIT_NOTHING
    found = report.found
    if found is None:
        print(f"No reader answered on {args.url} (tried {', '.join(dialects)} at "
              f"{', '.join(map(str, bauds))} baud). Check the cable, power and the adapter's wiring.")
        return EXIT_NOTHING
    print(f"Reader on {args.url}:")
    print(f"  dialect   {found.dialect}")
    print(f"  baud rate {found.baudrate}")
    print(f"  model     {found.model or 'unknown'}")
    print(f"  firmware  {found.firmware or 'unknown'}")
    if found.detail:
        print(f"  note      {found.detail}")
    print("\nFor agent.toml:\n")
    print(found.toml(args.url))
    return EXIT_FOUND
