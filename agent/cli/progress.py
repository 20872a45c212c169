"""A one-line progress report for the long commands (`cache import`, `verify`, `diag`).

Written on stderr, redrawn in place at most five times a second, and only when stderr
is a terminal and the command is not printing `--json`: a pipe, a log file or a
script sees nothing extra. Not rich or tqdm: this is all the booth needs (one line, a
percentage and a rate), in forty lines without a dependency or its import time.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

CLEAR = "\r\033[K"


class Progress:
    def __init__(self, what: str, unit: str = "records", json_out: bool = False, stream: TextIO | None = None,
                 every_s: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.on = not json_out and self.stream.isatty()
        self.what, self.unit, self.every_s = what, unit, every_s
        self.started = time.monotonic()
        self._next = 0.0
        self._shown = False

    def update(self, done: int, fraction: float | None = None, force: bool = False) -> None:
        """`done` units so far; `fraction` of the whole work (0..1) when known."""
        now = time.monotonic()
        if not self.on or (now < self._next and not force):
            return
        self._next = now + self.every_s
        rate = done / max(now - self.started, 1e-6)
        share = f"{min(fraction, 1.0) * 100:3.0f}%  " if fraction is not None else ""
        self._write(f"{self.what}: {share}{done:,} {self.unit}, {rate:,.0f} {self.unit}/s")

    def say(self, text: str) -> None:
        """What is being done now (a step without a count)."""
        if self.on:
            self._write(f"{self.what}: {text} ...")

    def done(self) -> None:
        """Erase the line, so the command's own result stands alone."""
        if self.on and self._shown:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._shown = False

    def _write(self, line: str) -> None:
        self.stream.write(CLEAR + line)
        self.stream.flush()
        self._shown = True
