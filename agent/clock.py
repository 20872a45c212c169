"""Watching the wall clock against the monotonic one.

Windows and timeouts run on the monotonic clock; timestamps come from the wall clock.
An NTP step or an RTC reset to 1970 (dead CMOS battery) shows as the two clocks
disagreeing: `ClockWatch.observe` reports such a jump so the daemon can say so in
`status` and on `B/health`. Nothing is reordered by it: `seq` comes from the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

JUMP_S = 2.0
SANE_AFTER_MS = 1_577_836_800_000  # 2020-01-01: a wall clock before this has been reset


@dataclass
class ClockWatch:
    jumps: int = 0
    last_jump_s: float | None = None
    last_jump_at_ms: int | None = None
    _ref: tuple[float, float] | None = field(default=None, repr=False)

    def observe(self, wall: float | None = None, mono: float | None = None) -> float | None:
        """Compare with the last observation; returns the jump in seconds when there was one."""
        wall = time.time() if wall is None else wall
        mono = time.monotonic() if mono is None else mono
        jump = None
        if self._ref is not None:
            drift = (wall - self._ref[0]) - (mono - self._ref[1])
            if abs(drift) > JUMP_S:
                jump = drift
                self.jumps += 1
                self.last_jump_s = round(drift, 3)
                self.last_jump_at_ms = int(wall * 1000)
        self._ref = (wall, mono)
        return jump

    @staticmethod
    def sane(wall: float | None = None) -> bool:
        return (time.time() if wall is None else wall) * 1000 >= SANE_AFTER_MS

    def figures(self) -> dict:
        return {"wall_ms": int(time.time() * 1000), "sane": self.sane(), "jumps": self.jumps,
                "last_jump_s": self.last_jump_s, "last_jump_at_ms": self.last_jump_at_ms}
