"""Find which dialect and baud rate a reader speaks, and its model and firmware, changing nothing.

The port is opened once (exclusively, so a port the daemon holds is refused, not shared)
and its speed changed in place, to spare readers the DTR toggling of repeated opens. At
each baud rate, most common first, the probe first listens (a ThingMagic module left
streaming and an Alien reader in autonomous mode speak unasked; their frames name the
dialect), then sends each dialect's identification query (from its registry entry) and
waits for its answer: ThingMagic `get version` only (never `boot firmware`: a module in its bootloader stays
there), R2000 `get firmware version`, Chafon `get reader information`, Alien a blank
line (ends any half line our binary queries left) then `get ReaderVersion` and `get
ReaderType`. All of them are read-only. Between queries it waits for the reply timeout,
longer than the inter-byte timeout reader firmware uses to drop half-received frames, so
one dialect's bytes do not swallow the next query; each round of queries is repeated
`attempts` times. Only a reply that passes its dialect's checksum and names the query
counts, so garbage at a wrong speed cannot pass as a reader.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import serial

from agent.readers import registry

log = logging.getLogger(__name__)

BAUDS = (115200, 57600, 9600, 38400, 230400, 460800, 921600)  # the usual rates, most common first
ORDER = registry.probe_order()  # binary queries first, alien's blank line last


@dataclass
class Found:
    dialect: str
    baudrate: int
    model: str | None
    firmware: str | None
    detail: str = ""

    def toml(self, url: str, name: str = "booth") -> str:
        return "\n".join(['[[readers]]', f'name = "{name}"            # any unique name: alarms say reader_down:{name}',
                          f'dialect = "{self.dialect}"', f'url = "{url}"', f"baudrate = {self.baudrate}",
                          "antennas = [1]            # the ports with an antenna connected",
                          "silence_timeout_s = 10"]) + "\n"


@dataclass
class ProbeReport:
    url: str
    found: Found | None
    tried: list[str] = field(default_factory=list)  # "115200 thingmagic", ... in order

    def to_dict(self) -> dict:
        out: dict = {"url": self.url, "found": self.found is not None, "tried": self.tried}
        if self.found:
            f = self.found
            out.update(dialect=f.dialect, baudrate=f.baudrate, model=f.model, firmware=f.firmware, detail=f.detail,
                       toml=f.toml(self.url))
        return out


@dataclass(frozen=True)
class Query:
    dialect: str
    request: bytes
    decode: Callable
    identify: Callable  # item -> (model, firmware) or None
    unasked: Callable  # item -> True if it proves the dialect without a question
    model_query: bytes | None = None  # asked next when the answer names no model
    model_of: Callable | None = None  # item -> model or None


# Each dialect's query and identification live in its registry entry; this is their view here.
QUERIES = {d.name: Query(d.name, d.probe.request, d.decode, d.probe.identify, d.probe.unasked, d.probe.model_query,
                         d.probe.model_of)
           for d in registry.DIALECTS.values()}


class PortBusy(Exception):
    """The port cannot be opened (missing, no permission, or held by another program)."""


def _open(url: str, baudrate: int) -> serial.SerialBase:
    try:
        port = serial.serial_for_url(url, do_not_open=True, baudrate=baudrate, timeout=0.02, write_timeout=1.0)
        if isinstance(port, serial.Serial):
            port.exclusive = True
        port.open()
        return port
    except (serial.SerialException, OSError, ValueError) as e:
        held = "lock" in str(e).lower()  # pyserial's flock refusal: someone holds it
        raise PortBusy(f"cannot open {url}: {e}" + (" (held by another program: is laneagent running?)"
                                                    if held else "")) from None


def _collect(port, query: Query, seconds: float, want: Callable) -> object:
    """Read for up to `seconds`, decoding as `query.dialect`; the first result `want` gives."""
    deadline, rest = time.monotonic() + seconds, b""
    while time.monotonic() < deadline:
        data = port.read(4096)
        if not data:
            continue
        items, rest = query.decode(rest + data)
        for item in items:
            result = want(item)
            if result:
                return result
    return None


def _ask_model(port, query: Query) -> str | None:
    """The dialect's second, read-only question, for readers whose first answer names no model."""
    port.reset_input_buffer()
    port.write(query.model_query)
    return _collect(port, query, 1.0, query.model_of)


def _unasked(port, dialects, seconds: float) -> str | None:
    """Listen without sending: which dialect, if any, is talking by itself."""
    raw, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        raw += port.read(4096)
    for name in dialects:
        items, _ = QUERIES[name].decode(raw, True)
        if sum(1 for i in items if QUERIES[name].unasked(i)) >= 2:  # two frames: not a fluke of noise
            return name
    return None


def probe(url: str, bauds=BAUDS, dialects=ORDER, *, listen_s: float = 0.3, reply_timeout_s: float = 0.3,
          attempts: int = 2) -> ProbeReport:
    """Try `dialects` at `bauds` until one answers. Raises PortBusy if the port cannot be opened."""
    report = ProbeReport(url, None)
    port = _open(url, bauds[0])
    try:
        for baud in bauds:
            port.baudrate = baud
            time.sleep(0.02)  # let a USB adapter settle at the new speed
            port.reset_input_buffer()
            talking = _unasked(port, dialects, listen_s)
            for attempt in range(attempts):
                for name in dialects:
                    query = QUERIES[name]
                    report.tried.append(f"{baud} {name}")
                    port.reset_input_buffer()
                    port.write(query.request)
                    answer = _collect(port, query, reply_timeout_s, query.identify)
                    if answer:
                        model, firmware = answer
                        if model is None and query.model_query is not None:
                            model = _ask_model(port, query)
                        report.found = Found(name, baud, model, firmware)
                        log.info("probe %s: %s at %d baud", url, name, baud)
                        return report
            if talking:  # it talks but will not answer: say what it is, ask nothing more
                detail = ("reading continuously; its model is not asked, since stopping it would change its state"
                          if talking == "thingmagic" else "sending tags by itself (autonomous mode)")
                report.found = Found(talking, baud, None, None, detail)
                return report
        return report
    finally:
        port.close()
