"""What other threads put in the core's inbox, besides the links' handoff messages.

The core thread owns the store writer, the passages, the cache feed and its counters;
other threads never touch them, they send one of these (DESIGN part 1: state has one
owner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from agent.handoff import CacheMessage, CommandMessage, Delivered, DownlinkRefused
from agent.readers.report import TagReport


class ReadItem(NamedTuple):
    reader: str
    report: TagReport
    mono: float
    wall_ms: int


@dataclass(frozen=True)
class AlertOut:
    """An alert to store and owe to these back ends (alarms from the app)."""

    alert: dict
    backends: tuple[str, ...]


@dataclass(frozen=True)
class SetRandomRate:
    rate: float
    tier: str = "standard"  # "standard" or "trusted" (DESIGN 2.7)


@dataclass(frozen=True)
class AskResync:
    """A back end's `resync` command: ask it for a snapshot of `source`."""

    backend: str
    source: str


@dataclass(frozen=True)
class Wake:
    """Nothing to do: makes the loop turn (at stop)."""


def kind_of(item: object) -> str:
    """A short name for counters and alarms ("read", "delivered", "cache", ...)."""
    return {ReadItem: "read", Delivered: "delivered", CacheMessage: "cache", CommandMessage: "command",
            DownlinkRefused: "refusal", AlertOut: "alert", SetRandomRate: "rate", AskResync: "resync"}.get(
        type(item), type(item).__name__)
