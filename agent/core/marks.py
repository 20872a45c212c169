"""Delivery marks, held briefly so that they commit in fewer, larger transactions.

A mark only records that a back end has an item; losing one (a crash) means the item is
offered again under the same id (at-least-once, DESIGN 3.4), never a loss. So a mark
waits up to MARK_HOLD_S for a commit that happens anyway (a read, an event) or for the
marks that follow it: the two back ends' PUBACKs of one event commit together, and a
drain's stream of PUBACKs commits once a second instead of every group commit. Each
keeps the wall time it arrived at, so `delivered_ms` (the latency figures) does not move.
"""

from __future__ import annotations

from agent.core.guard import Pending

MARK_HOLD_S = 1.0


class HeldMarks:
    def __init__(self):
        self._held: list[tuple[Pending, int]] = []  # (the Delivered item, wall ms it arrived)
        self._since: float | None = None  # monotonic time of the oldest held mark

    def hold(self, pending: Pending, wall_ms: int, mono: float) -> None:
        if not self._held:
            self._since = mono
        self._held.append((pending, wall_ms))

    def due(self, mono: float) -> bool:
        return bool(self._held) and mono - self._since >= MARK_HOLD_S

    def deadline(self) -> float | None:
        """When the oldest held mark must be written, for the core's sleep."""
        return None if not self._held else self._since + MARK_HOLD_S

    def take(self) -> list[tuple[Pending, int]]:
        taken, self._held, self._since = self._held, [], None
        return taken

    def restore(self, marks: list[tuple[Pending, int]], mono: float) -> None:
        """Marks whose transaction failed: held again, due at once."""
        if marks:
            self._held = marks + self._held
            self._since = mono - MARK_HOLD_S
