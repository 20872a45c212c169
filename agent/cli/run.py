"""`laneagent run`: the daemon in the foreground, as systemd starts it."""

from __future__ import annotations

import argparse
import sys

from agent import logsetup
from agent.errors import ConfigError, StoreError
from agent.readers.registry import load_config


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the daemon in the foreground",
                              description="Run the lane agent in the foreground (systemd runs it this way).",
                              epilog="example: laneagent run --config /etc/laneagent/agent.toml",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        # Exit 2 before anything is opened: a broken config never touches the database.
        print(f"laneagent: refusing to start, the configuration has {len(e.problems)} problem(s):", file=sys.stderr)
        for problem in e.problems:
            print(f"{e.path}: {problem}", file=sys.stderr)
        return 2
    from agent.preflight import problems

    found = problems(cfg)
    if found:
        print(f"laneagent: refusing to start, {len(found)} problem(s) with files the configuration names:",
              file=sys.stderr)
        for problem in found:
            print(f"{cfg.path}: {problem}", file=sys.stderr)
        return 2
    logsetup.configure(args.log_level)
    from agent.app import Daemon  # after the config check: importing opens nothing, but keeps start-up lean

    try:
        daemon = Daemon(cfg)
    except StoreError as e:
        print(f"laneagent: cannot open the store: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # a verify_key, certificate or password file that cannot be used
        print(f"laneagent: refusing to start: {e}", file=sys.stderr)
        return 2
    return daemon.run()
