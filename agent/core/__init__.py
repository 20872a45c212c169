"""The core: the single writer thread (group commit, passages -> events, the cache feed, marks)."""

from agent.core.loop import LaneCore

__all__ = ["LaneCore"]
