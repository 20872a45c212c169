"""The dialect registry: one descriptor per reader dialect, looked up by its config name.

A descriptor names the dialect's codec (reader-to-host and host-to-reader decoders),
its session class and whether it speaks text (`laneagent decode` then reads raw text).
The daemon calls `open_session`, `laneagent decode` calls `decode`/`dialect`, `laneagent
reader probe` walks `DIALECTS`. Adding a dialect is one entry in `DIALECTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from agent.config import ReaderConfig
from agent.errors import LaneAgentError, ReaderError
from agent.readers import alien, chafon, r2000, thingmagic
from agent.readers.alien_session import AlienSession
from agent.readers.chafon_session import ChafonSession
from agent.readers.r2000_session import R2000Session
from agent.readers.session import OnReport, OnState, ReaderSession
from agent.readers.thingmagic_session import ThingMagicSession

Decoder = Callable[..., tuple[list, bytes]]  # (buffer, final=False) -> (items, rest)


@dataclass(frozen=True)
class Dialect:
    name: str
    decode: Decoder  # reader-to-host bytes
    decode_host: Decoder  # host-to-reader bytes
    session: type[ReaderSession]
    text: bool = False


DIALECTS: dict[str, Dialect] = {
    "thingmagic": Dialect("thingmagic", thingmagic.decode, thingmagic.decode_host, ThingMagicSession),
    "r2000": Dialect("r2000", r2000.decode, r2000.decode_host, R2000Session),
    "alien": Dialect("alien", alien.decode, alien.decode_host, AlienSession, text=True),
    "chafon": Dialect("chafon", chafon.decode, chafon.decode_host, ChafonSession),
}


class UnknownDialect(LaneAgentError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown reader dialect {name!r} (available: {', '.join(names())})")


def names() -> tuple[str, ...]:
    return tuple(DIALECTS)


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise UnknownDialect(name) from None


def open_session(cfg: ReaderConfig, on_report: OnReport, on_state: OnState, **options) -> ReaderSession:
    """A session for the reader `cfg` describes, not yet started. `options` tune the
    session (backoff, timeouts; tests shorten them)."""
    try:
        spec = dialect(cfg.dialect)
    except UnknownDialect as e:
        raise ReaderError(cfg.name, str(e)) from None
    return spec.session(cfg, on_report, on_state, **options)


def decode(dialect_name: str, data: bytes, from_host: bool = False) -> list:
    """Decode a complete capture: TagReports (or host commands), replies and DecodeErrors."""
    spec = dialect(dialect_name)
    items, _ = (spec.decode_host if from_host else spec.decode)(data, final=True)
    return items
