"""What a link tells the rest of the daemon about itself, safe to read from any thread.

The link thread is the only writer; the status writer, the health publisher and the
watchdog read from their own threads. Every figure sits behind one lock and is read as
a copy, so no reader ever iterates a collection the link thread is changing (issue 10:
"deque mutated during iteration" while draining a backlog). The drain rate comes from
per-second PUBACK counts in a fixed ring, not from a list of times read from outside.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

RATE_WINDOW_S = 10


class LinkFigures:
    def __init__(self, backend: str):
        self._backend = backend
        self._lock = threading.Lock()
        self._connected = False
        self._last_error: str | None = None
        self._last_puback_ms: int | None = None
        self._connects = 0
        self._published = 0
        self._acked = 0
        self._inflight = 0
        self._node: str | None = None  # the broker node connected to
        self._unreachable: list[str] = []  # nodes whose last try failed or that were lost
        self._progress_mono = time.monotonic()
        # PUBACKs per whole second of the monotonic clock, over the last RATE_WINDOW_S seconds.
        self._ack_second = [0] * RATE_WINDOW_S
        self._ack_count = [0] * RATE_WINDOW_S

    # --- written by the link thread ------------------------------------------------------------
    def error(self, text: str, *, quiet: bool = False) -> None:
        """Make `text` the last error; logged once per change unless `quiet` (said elsewhere)."""
        with self._lock:
            changed, self._last_error = text != self._last_error, text
        if changed and not quiet:
            log.warning("back end %s: %s", self._backend, text)

    def connection(self, up: bool) -> None:
        with self._lock:
            self._connected = up
            self._connects += up

    def nodes(self, in_use: str | None, unreachable: list[str]) -> None:
        with self._lock:
            self._node, self._unreachable = in_use, list(unreachable)

    def published(self) -> None:
        with self._lock:
            self._published += 1

    def acked(self, count: int) -> None:
        """`count` PUBACKs, just now (the drain reports those of one turn together)."""
        now = time.monotonic()
        second = int(now)
        slot = second % RATE_WINDOW_S
        with self._lock:
            self._acked += count
            self._last_puback_ms = int(time.time() * 1000)
            if self._ack_second[slot] != second:
                self._ack_second[slot], self._ack_count[slot] = second, 0
            self._ack_count[slot] += count

    def turn(self, inflight: int) -> None:
        """One turn of the link's loop: it is alive, and this many items are in flight."""
        with self._lock:
            self._progress_mono = time.monotonic()
            self._inflight = inflight

    # --- read from any thread --------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def last_error(self) -> str | None:
        with self._lock:
            return self._last_error

    @property
    def progress_mono(self) -> float:
        with self._lock:
            return self._progress_mono

    def drain_rate(self) -> float:
        """PUBACKs per second over the last RATE_WINDOW_S whole seconds, the current one included."""
        with self._lock:
            return self._rate(int(time.monotonic()))

    def _rate(self, second: int) -> float:
        recent = sum(n for s, n in zip(self._ack_second, self._ack_count) if second - s < RATE_WINDOW_S)
        return round(recent / RATE_WINDOW_S, 1)

    def snapshot(self) -> dict:
        """The figures of `BackendLink.snapshot`, all taken at one instant."""
        with self._lock:
            return {"connected": self._connected, "last_puback_ms": self._last_puback_ms,
                    "last_error": self._last_error, "published": self._published, "acked": self._acked,
                    "inflight": self._inflight, "drain_rate": self._rate(int(time.monotonic())),
                    "connects": self._connects, "node": self._node, "unreachable": list(self._unreachable)}
