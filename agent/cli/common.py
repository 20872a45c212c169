"""Small things every command needs: the config with a clear error, output helpers."""

from __future__ import annotations

import json
import os
import sys

from agent import config as config_mod
from agent.errors import ConfigError, StoreError
from agent.store.reader import StoreReader


def load_config(args) -> config_mod.Config | None:
    """The config, or None after printing every problem (the caller exits 2)."""
    try:
        from agent.readers.registry import load_config  # the dialects' rules check [[readers]]; lazy: serial etc.
        return load_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(f"{e.path}: {problem}", file=sys.stderr)
        return None


def open_lane(args, command: str) -> tuple[config_mod.Config, StoreReader] | None:
    """The config and a reader of its store, or None after saying what is wrong (the
    caller exits 2). The reader is a context manager: `with store:` closes it."""
    cfg = load_config(args)
    if cfg is None:
        return None
    try:
        return cfg, StoreReader(cfg.store.path)
    except StoreError as e:
        print(f"laneagent {command}: {e}", file=sys.stderr)
        return None


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class Paint:
    """ANSI colours only when stdout is a terminal and NO_COLOR is unset."""

    def __init__(self, stream=sys.stdout):
        self.on = stream.isatty() and not os.environ.get("NO_COLOR")

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def warn(self, text: str) -> str:
        return self._wrap("33", text)

    def bad(self, text: str) -> str:
        return self._wrap("31;1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)
