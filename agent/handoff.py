"""The plain messages that travel between the back-end links and the core.

A link (sync layer) never calls the core and the core never calls a link: each link is
given a `submit` function (the core's inbox) and puts these messages in it; the app
wires the two. The core answers through the link's own thread-safe methods
(`request_resync`, `send_command_result`, `wake`), which the app hands it as plain
callables. Every message is immutable, so it can cross threads without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

ItemRef = tuple[str, int]  # ("event", seq) or ("alert", alert row id): one outbox item


@dataclass(frozen=True)
class Delivered:
    """Items a back end has (PUBACK, or its own ack where `require_ack`): mark them."""

    backend: str
    items: tuple[ItemRef, ...]


@dataclass(frozen=True)
class CacheMessage:
    """A validated cache update (DESIGN 2.6) from one back end."""

    backend: str
    msg: dict
    signed: bool = False


@dataclass(frozen=True)
class CommandMessage:
    """A validated back-end command; the core checks its seq (replay guard) before it runs."""

    backend: str
    msg: dict


@dataclass(frozen=True)
class DownlinkRefused:
    """A downlink message the link refused (oversized, unsigned, malformed...): count it, alert."""

    backend: str
    reason: str
    message: str


Uplink = Union[Delivered, CacheMessage, CommandMessage, DownlinkRefused]
Submit = Callable[[Uplink], None]  # the core's inbox; safe from any thread
