"""The `laneagent` command: parses the common options and hands over to one command module.

Each command lives in its own module with `register(subparsers)`; `--config` and
`--json` are accepted before or after the command name (DESIGN 2.1).
"""

from __future__ import annotations

import argparse
import sys

from agent import __version__
from agent.cli import cache_cmd, decode, diag, doctor, lookup, queue_cmd, reader_cmd, run, status, tail, verify

COMMANDS = (run, status, doctor, tail, queue_cmd, decode, lookup, cache_cmd, verify, reader_cmd, diag)


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    # On sub-commands the defaults are suppressed so that an option given before the
    # command name is not overwritten by the sub-parser's default.
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--config", metavar="PATH", default=default(None),
                        help="config file (default: $LANEAGENT_CONFIG, else /etc/laneagent/agent.toml)")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laneagent", description="The booth agent of a commercial-truck lane.",
        epilog="example: laneagent status --config /etc/laneagent/agent.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"laneagent {__version__}")
    _common(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        before = set(subparsers.choices)
        module.register(subparsers)
        for name in set(subparsers.choices) - before:
            _add_common_recursively(subparsers.choices[name])
    return parser


def _add_common_recursively(parser: argparse.ArgumentParser) -> None:
    _common(parser, top=False)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_common_recursively(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
