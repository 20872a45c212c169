"""What every dialect's codec produces: tag reports and counted decode errors.

A codec never raises or prints on bad input; it returns `DecodeError` values that the
session counts and `laneagent decode` prints (DESIGN 2.1, 2.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(slots=True)  # not frozen: the frozen constructor costs ~1 us of ~4 us per decoded report
class TagReport:
    """One tag seen once (or `count` times) by one antenna, as DESIGN 2.4 names it. Treat as immutable."""

    dialect: str
    epc: str  # upper-case hex, no PC, no CRC
    antenna: int  # 1-based
    rssi: int | None = None  # dBm
    count: int | None = None
    frequency_khz: int | None = None
    pc: str | None = None
    timestamp_ms: int | None = None
    phase: int | None = None

    def to_dict(self) -> dict:
        """The `decode` output object: required keys always, optional ones when known."""
        out: dict = {"dialect": self.dialect, "epc": self.epc, "antenna": self.antenna}
        for key in ("rssi", "count", "frequency_khz", "pc", "timestamp_ms", "phase"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        uri = epc_uri(self.epc)
        if uri:
            out["epc_uri"] = uri
        return out


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A frame rejected by its checksum, length or syntax check, or cut off at the end.

    `offset` is the position of the frame's first byte in the input given to `decode`.
    Bytes skipped while resynchronising are not errors.
    """

    code: str  # "bad_checksum", "bad_length", "bad_syntax", "truncated", "bad_tag_crc"
    offset: int

    def to_dict(self) -> dict:
        return {"error": self.code, "offset": self.offset}


@lru_cache(maxsize=4096)
def epc_uri(epc_hex: str) -> str | None:
    """GS1 pure-identity URI of an EPC, or None when it is not a GS1 encoding.

    epcpy covers the GS1 binary schemes (SGTIN, SSCC, SGLN, GRAI, GIAI, GID, ...). It
    raises on headers it does not know (for example the common E2... TID-style EPCs,
    and border cards that carry a bare reference number): those get no URI.
    """
    if len(epc_hex) < 24:
        return None
    try:
        from epcpy import hex_to_tag_encodable

        return hex_to_tag_encodable(epc_hex).epc_uri
    except Exception:  # epcpy raises several unrelated types on unknown input
        return None


def enum_name(enum, value: int, unknown: str) -> str:
    """A codec's name for a command or status byte, or `unknown` formatted with it."""
    try:
        return enum(value).name
    except ValueError:
        return unknown.format(value)
