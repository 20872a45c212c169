"""The dialect registry: the one place that knows a reader dialect (rtl_433's `r_device`).

One `Dialect` entry per dialect, looked up by its config name, holds everything about it:
the codec (reader-to-host and host-to-reader decoders; `make_decoder` when `laneagent
decode --custom-format` can tune it), the session class, the read-only identification
query `laneagent reader probe` sends and how it recognises the answer (or a reader that
talks unasked), the antenna ports and regions it accepts, and so the checks of a
`[[readers]]` table naming it. The daemon calls `open_session`, every command loads the
config through `load_config` (agent.config knows no dialect: it takes these entries'
rules as data), `laneagent decode` calls `dialect`, `laneagent reader probe` walks
`DIALECTS` in `probe_order()`. Adding a dialect is one entry in `DIALECTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from agent import config
from agent.config import Config, ReaderConfig
from agent.errors import LaneAgentError, ReaderError
from agent.readers import alien, chafon, r2000
from agent.readers import thingmagic as tm
from agent.readers.alien_session import AlienSession
from agent.readers.chafon_session import ChafonSession
from agent.readers.r2000_session import R2000Session
from agent.readers.report import TagReport
from agent.readers.session import OnReport, OnState, ReaderSession, WrapTransport
from agent.readers.thingmagic_session import ThingMagicSession

Decoder = Callable[..., tuple[list, bytes]]  # (buffer, final=False) -> (items, rest)


@dataclass(frozen=True)
class Probe:
    """How `laneagent reader probe` asks a reader of this dialect who it is, changing nothing."""

    request: bytes  # a read-only identification query
    identify: Callable[[Any], tuple[str | None, str | None] | None]  # decoded item -> (model, firmware) or None
    unasked: Callable[[Any], bool]  # decoded item that proves the dialect without a question
    rank: int  # place in the probing order, lowest first
    model_query: bytes | None = None  # asked after `request` when its answer names no model
    model_of: Callable[[Any], str | None] | None = None  # decoded item -> model, for `model_query`


@dataclass(frozen=True)
class Dialect:
    name: str
    decode: Decoder  # reader-to-host bytes
    decode_host: Decoder  # host-to-reader bytes
    session: type[ReaderSession]
    probe: Probe
    ports: int  # antenna ports 1..ports
    regions: tuple[str, ...] = ()  # values of `region` the session sets; () = the reader keeps its own
    text: bool = False  # `laneagent decode` reads raw text on stdin
    make_decoder: Callable[[str], Decoder] | None = None  # a decoder for another tag line format

    def check_reader(self, table: dict) -> list[tuple[str, str]]:
        """Problems of a `[[readers]]` table naming this dialect, as (key, message)."""
        problems = []
        bad = [a for a in table.get("antennas", ()) if a > self.ports]
        if bad:
            problems.append(("antennas", f"{list(bad)}: a {self.name} reader has ports 1-{self.ports}"))
        region = table.get("region")
        if region is not None and not self.regions:
            problems.append(("region", f"a {self.name} reader keeps the region set with the vendor's tool; "
                                       "laneagent does not set it: remove the key"))
        elif region is not None and region not in self.regions:
            problems.append(("region", f"{region!r} is not one of {', '.join(self.regions)}"))
        return problems

    @property
    def rule(self) -> config.DialectRule:
        return config.DialectRule(self.name, self.check_reader)


# --- identification (probe) --------------------------------------------------------------
def _tm_identify(item):
    if type(item) is tm.Reply and item.opcode == tm.Opcode.GET_VERSION and item.ok and len(item.data) >= 20:
        info = tm.parse_version(item.data)
        return info.model, info.firmware_version
    return None


def _r2000_identify(item):
    if type(item) is r2000.Reply and item.command == r2000.Cmd.GET_FIRMWARE_VERSION and len(item.data) == 2:
        return "R2000", r2000.firmware_version(item)
    return None


def _chafon_identify(item):
    if type(item) is chafon.Reply and item.command == chafon.Cmd.GET_READER_INFO and item.ok:
        try:
            info = chafon.parse_reader_info(item)
        except ValueError:
            return None
        return info.model, info.firmware
    return None


def _alien_identify(item):
    if type(item) is alien.Message and item.kind == "value" and item.name.lower().endswith("readerversion"):
        return None, item.value
    return None


def _alien_model(item) -> str | None:
    """`ReaderType = Alien RFID Tag Reader, Model: ALR-9900 (...)` -> 'ALR-9900'."""
    if not (type(item) is alien.Message and item.kind == "value" and item.name.lower().endswith("readertype")
            and item.value):
        return None
    value = item.value
    return (value.split("Model:", 1)[1].split("(")[0].strip() if "Model:" in value else value) or None


# Probing ranks: the binary queries first, alien last (its blank line ends any half line
# the binary queries left in an Alien reader's input).
DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect("thingmagic", tm.decode, tm.decode_host, ThingMagicSession,
            Probe(tm.build_get_version(), _tm_identify,
                  lambda i: type(i) is TagReport or (type(i) is tm.Reply and i.opcode == tm.Opcode.READ_MULTIPLE), 0),
            ports=16, regions=tuple(tm.Region.__members__)),
    Dialect("r2000", r2000.decode, r2000.decode_host, R2000Session,
            Probe(r2000.build_get_firmware_version(), _r2000_identify,
                  lambda i: type(i) in (TagReport, r2000.RoundEnd), 1),
            ports=4),
    Dialect("alien", alien.decode, alien.decode_host, AlienSession,
            Probe(b"\r\n" + alien.build_get("ReaderVersion"), _alien_identify,
                  lambda i: type(i) is TagReport or (type(i) is alien.Message and i.kind in (
                      "prompt", "notify_begin", "notify_end")), 3,
                  alien.build_get("ReaderType"), _alien_model),
            ports=8, text=True, make_decoder=alien.make_decoder),
    Dialect("chafon", chafon.decode, chafon.decode_host, ChafonSession,
            Probe(chafon.build_get_reader_info(), _chafon_identify, lambda i: type(i) is TagReport, 2), ports=4),
)}


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


def probe_order() -> tuple[str, ...]:
    return tuple(sorted(DIALECTS, key=lambda name: DIALECTS[name].probe.rank))


def rules() -> tuple[config.DialectRule, ...]:
    """The config's view of every dialect: name and reader-table check."""
    return tuple(d.rule for d in DIALECTS.values())


def load_config(path: str | None = None) -> Config:
    """The configuration file, validated with every dialect's rules (ConfigError lists every problem)."""
    return config.load(path, dialects=rules())


def open_session(cfg: ReaderConfig, on_report: OnReport, on_state: OnState, *,
                 wrap_transport: WrapTransport | None = None, **options) -> ReaderSession:
    """A session for the reader `cfg` describes, not yet started. `wrap_transport` wraps the
    serial transport (the daemon passes a traffic recorder for `laneagent diag`); `options`
    tune the session (backoff, timeouts; tests shorten them)."""
    try:
        spec = dialect(cfg.dialect)
    except UnknownDialect as e:
        raise ReaderError(cfg.name, str(e)) from None
    return spec.session(cfg, on_report, on_state, wrap_transport=wrap_transport, **options)


def decode(dialect_name: str, data: bytes, from_host: bool = False) -> list:
    """Decode a complete capture: TagReports (or host commands), replies and DecodeErrors."""
    spec = dialect(dialect_name)
    items, _ = (spec.decode_host if from_host else spec.decode)(data, final=True)
    return items
