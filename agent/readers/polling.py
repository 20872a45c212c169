"""Pacing a polled reader (R2000, Chafon, Alien): one inventory round at a time, antennas in turn.

The session sends a round's command and reads the reply as it lands; this says when the
next round may start.
"""

from __future__ import annotations

from typing import Callable

EMPTY_FIELD_PAUSE_S = 0.02


class PollCycle:
    """Paces a polling dialect: one round at a time, antennas in turn, a round that gets no
    end within `timeout_s` is given up (its frames were lost on the line) so polling goes on.
    With `tags_seen` (the session's running count of tag reports), a whole turn of the
    antennas that found no tag waits EMPTY_FIELD_PAUSE_S before the next round: replies are
    read as they land, and a reader that answers at once would otherwise be polled hundreds
    of times a second with nothing in the field (about 10 % of a core); a truck is then seen
    at most 20 ms later. Not thread-safe: used from the session thread only."""

    def __init__(self, antennas, timeout_s: float, pause_s: float = 0.0,
                 tags_seen: Callable[[], int] | None = None):
        self.antennas = tuple(antennas) or (1,)
        self.timeout_s = timeout_s
        self.pause_s = pause_s  # between rounds, so a reader that answers at once is not hammered
        self.tags_seen = tags_seen
        self._seen_at_start = 0
        self._empty_rounds = 0
        self.busy = False
        self.index = 0
        self.rounds = 0
        self.timeouts = 0
        self._sent_at = 0.0
        self._next_at = 0.0

    @property
    def antenna(self) -> int:
        return self.antennas[self.index]

    def due(self, now: float) -> bool:
        """True when the next round may start (the previous one ended or timed out)."""
        if self.busy and now - self._sent_at > self.timeout_s:
            self.busy = False
            self.timeouts += 1
            self.index = (self.index + 1) % len(self.antennas)
            self._next_at = now
        return not self.busy and now >= self._next_at

    def started(self, now: float) -> None:
        self.busy, self._sent_at = True, now
        if self.tags_seen is not None:
            self._seen_at_start = self.tags_seen()

    def finished(self, now: float, next_antenna: bool = True) -> None:
        if not self.busy:
            return
        self.busy = False
        self.rounds += 1
        if next_antenna:
            self.index = (self.index + 1) % len(self.antennas)
        pause = self.pause_s
        if self.tags_seen is not None:
            self._empty_rounds = self._empty_rounds + 1 if self.tags_seen() == self._seen_at_start else 0
            if self._empty_rounds >= len(self.antennas):
                pause = max(pause, EMPTY_FIELD_PAUSE_S)
        self._next_at = now + pause

    def reset(self) -> None:
        self.busy, self.index, self._next_at = False, 0, 0.0
