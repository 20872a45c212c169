"""Chafon UHFReader18 / UHFReader288 family codec (CF-RU5102 and relatives): bytes <-> frames.

Pure and table-driven: no I/O, no logging. A frame is `LEN ADR CMD [STATUS] DATA CRC_LO CRC_HI`,
LEN counting the bytes after itself; replies carry STATUS, commands do not. The CRC is
CRC-16/MCRF4XX, computed here at C speed as binascii's CRC-CCITT over bit-reversed bytes
(the reflected CRC of the data is the mirror image of the straight CRC of the mirrored data,
and init 0xFFFF is its own mirror), so a whole frame, CRC included, leaves remainder 0.
There is no start byte: every byte is a candidate LEN, and the shared resync loop
(`agent.readers.framing`) does the rest. A candidate whose header names a command, a status
it answers and a length that status allows is "plausible" (commands: a known command): only
plausible candidates that fail are counted as errors (others are line noise, skipped
silently), only they are waited for when unfinished, and only they count as a frame found
inside a cut-off one; a valid CRC is accepted whatever the header says. Inventory replies (cmd 0x01) become one `TagReport` per record followed by
one `Reply` carrying the round status. Wire facts: shared/protocols/README.md section 4.
Real readers beyond the notes (captures published with open-source drivers): UHFReader18
firmware answers `STATUS NUM {EPCLEN EPC}` without ANT and RSSI (reported as antenna 1, its
only port); UHFReader288-class firmware ends an empty round with status 0x01 and NUM 0
rather than 0xFB. A record layout is accepted only when the records fill the frame exactly.
Decision: RSSI is the R2000 raw value these readers are built on, dBm = raw - 129 (a
bench capture reads 0x6B = -22 dBm; as -dBm it would be far below any reader's sensitivity).
"""

from __future__ import annotations

from binascii import crc_hqx
from dataclasses import dataclass
from enum import IntEnum

from agent.readers.framing import FrameSpec, split
from agent.readers.report import DecodeError, TagReport, enum_name

DIALECT = "chafon"
BROADCAST = 0xFF
MIN_REPLY_LEN = 5  # ADR CMD STATUS CRC(2)
MIN_COMMAND_LEN = 4  # ADR CMD CRC(2)
MAX_EPC = 62  # bytes: a Gen2 EPC has at most 31 words


class Cmd(IntEnum):
    INVENTORY = 0x01
    READ_DATA = 0x02
    WRITE_DATA = 0x03
    WRITE_EPC = 0x04
    KILL = 0x05
    LOCK = 0x06
    BLOCK_ERASE = 0x07
    INVENTORY_SINGLE = 0x0F
    GET_READER_INFO = 0x21
    SET_REGION = 0x22
    SET_ADDRESS = 0x24
    SET_SCAN_TIME = 0x25
    SET_BAUD_RATE = 0x28
    SET_POWER = 0x2F
    ACOUSTO_OPTIC = 0x33


class Status(IntEnum):
    SUCCESS = 0x00
    INVENTORY_COMPLETE = 0x01
    INVENTORY_TIMEOUT = 0x02
    MORE_DATA = 0x03
    BUFFER_FULL = 0x04
    COMMAND_FAILED = 0xF9
    OPERATION_FAILED = 0xFA
    NO_TAG = 0xFB
    TAG_ERROR = 0xFC
    LENGTH_ERROR = 0xFD
    ILLEGAL_COMMAND = 0xFE
    PARAMETER_ERROR = 0xFF


KNOWN_CMDS = frozenset(int(c) for c in Cmd)
KNOWN_STATUS = frozenset(int(s) for s in Status)
TAG_STATUS = frozenset((Status.INVENTORY_COMPLETE, Status.INVENTORY_TIMEOUT, Status.MORE_DATA, Status.BUFFER_FULL))
MODELS = {0x09: "UHFReader18", 0x0C: "UHFReader288M", 0x0F: "UHFReader86", 0x10: "UHFReader86", 0x20: "UHFReader288MP"}
ANTENNA_BITS = {1: 1, 2: 2, 4: 3, 8: 4}
BANDS = {1: "China2", 2: "US", 3: "Korea", 4: "EU", 6: "Ukraine", 7: "Peru", 8: "China1", 9: "EU3", 10: "Taiwan",
         12: "US3"}

_REV = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def command_name(cmd: int) -> str:
    return enum_name(Cmd, cmd, "CMD_0x{:02X}").lower()


def status_name(status: int) -> str:
    return enum_name(Status, status, "STATUS_0x{:02X}")


def crc16(body: bytes) -> int:
    """CRC-16/MCRF4XX (reflected poly 0x8408, init 0xFFFF, no final XOR); sent low byte first."""
    crc = crc_hqx(bytes(body).translate(_REV), 0xFFFF)
    return _REV[crc >> 8] | _REV[crc & 0xFF] << 8


def _crc_ok(buf: bytes, start: int, end: int) -> bool:
    return not crc_hqx(buf[start:end].translate(_REV), 0xFFFF)


def antenna_port(mask: int) -> int:
    """ANT bit mask -> 1-based port (0x01 -> 1 ... 0x08 -> 4); the lowest bit if several; 0 if none."""
    port = ANTENNA_BITS.get(mask)
    if port is None:
        port = (mask & -mask).bit_length() if mask else 0
    return port


# --- frames other than tag reports --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    """A reader-to-host frame. Inventory replies keep only their round status here (their
    records became TagReports); `round_done` says whether the reader will send more."""

    address: int
    command: int
    status: int
    data: bytes

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def round_done(self) -> bool:
        return self.command == Cmd.INVENTORY and self.status != Status.MORE_DATA

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "address": self.address, "command": command_name(self.command),
               "cmd": f"0x{self.command:02X}", "status": f"0x{self.status:02X}", "status_name": self.status_name,
               "data": self.data.hex().upper()}
        if self.command == Cmd.GET_READER_INFO and self.ok:
            try:
                out["info"] = parse_reader_info(self).to_dict()
            except ValueError:
                pass
        return out


@dataclass(frozen=True, slots=True)
class Command:
    """A host-to-reader frame, as `decode_host` finds it."""

    address: int
    command: int
    data: bytes

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "direction": "host", "address": self.address,
               "command": command_name(self.command), "cmd": f"0x{self.command:02X}", "data": self.data.hex().upper()}
        if self.command == Cmd.INVENTORY and len(self.data) >= 5:
            out.update(q=self.data[0] & 0x0F, session=self.data[1], antenna=(self.data[-2] & 0x7F) + 1,
                       scan_time_ms=self.data[-1] * 100)
        return out


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    firmware: str
    model: str
    type_code: int
    protocols: tuple[str, ...]
    band: str
    power_dbm: int
    scan_time_ms: int

    def to_dict(self) -> dict:
        return {"firmware": self.firmware, "model": self.model, "type": f"0x{self.type_code:02X}",
                "protocols": list(self.protocols), "band": self.band, "power_dbm": self.power_dbm,
                "scan_time_ms": self.scan_time_ms}


def parse_reader_info(reply: Reply) -> ReaderInfo:
    """Reply to 0x21: VERSION(2) TYPE PROTOCOLS DMAXFRE DMINFRE POWER SCANTIME [288: ANT ...]."""
    d = reply.data
    if reply.command != Cmd.GET_READER_INFO or len(d) < 8:
        raise ValueError(f"not a reader information reply: {d.hex()}")
    protocols = tuple(name for bit, name in ((1, "ISO18000-6B"), (2, "EPC Gen2")) if d[3] & bit)
    band = (d[4] & 0xC0) >> 4 | (d[5] & 0xC0) >> 6
    return ReaderInfo(f"{d[0]}.{d[1]:02d}", MODELS.get(d[2], f"Chafon type 0x{d[2]:02X}"), d[2], protocols,
                      BANDS.get(band, f"band {band}"), d[6], d[7] * 100)


# --- host commands ------------------------------------------------------------------------
def build_command(cmd: int, data: bytes = b"", address: int = BROADCAST) -> bytes:
    body = bytes((len(data) + 4, address, cmd)) + data
    return body + crc16(body).to_bytes(2, "little")


def build_get_reader_info(address: int = BROADCAST) -> bytes:
    return build_command(Cmd.GET_READER_INFO, b"", address)


def build_inventory(port: int | None = None, *, q: int = 4, session: int = 0, scan_time_100ms: int = 0x0A,
                    address: int = BROADCAST) -> bytes:
    """Answer-mode inventory. `port` None: the bare UHFReader18 form; else the UHFReader288 form
    `Q SESSION MASK(0) ANT(0x80 | index) SCANTIME` for that 1-based port."""
    if port is None:
        return build_command(Cmd.INVENTORY, b"", address)
    if not 1 <= port <= 4:
        raise ValueError(f"Chafon antenna ports are 1-4, not {port}")
    return build_command(Cmd.INVENTORY, bytes((q, session, 0, 0x80 | port - 1, scan_time_100ms)), address)


# --- reader frames (the simulator's side) -------------------------------------------------
def encode_reply(cmd: int, status: int = Status.SUCCESS, data: bytes = b"", address: int = 0) -> bytes:
    body = bytes((len(data) + 5, address, cmd, status)) + data
    return body + crc16(body).to_bytes(2, "little")


def encode_inventory(records, status: int = Status.INVENTORY_COMPLETE, antenna: int | None = 1,
                     address: int = 0) -> bytes:
    """One inventory reply frame. `records`: (epc bytes, rssi dBm) pairs. `antenna` None: the
    UHFReader18 layout (no ANT, no RSSI)."""
    if antenna is None:
        data = bytes((len(records),)) + b"".join(bytes((len(e),)) + e for e, _ in records)
    else:
        data = bytes((1 << antenna - 1, len(records))) + b"".join(
            bytes((len(e),)) + e + bytes((max(0, min(255, r + 129)),)) for e, r in records)
    return encode_reply(Cmd.INVENTORY, status, data, address)


def encode_reader_info(type_code: int = 0x0C, version: tuple[int, int] = (2, 26), power_dbm: int = 30,
                       scan_time_100ms: int = 10, address: int = 0) -> bytes:
    data = bytes((*version, type_code, 0x02, 0x4E, 0x00, power_dbm, scan_time_100ms))
    if type_code != 0x09:
        data += bytes((0x01, 0x00, 0x00, 0x00))  # antenna configuration, buzzer, reserved, check
    return encode_reply(Cmd.GET_READER_INFO, Status.SUCCESS, data, address)


# --- decoding -----------------------------------------------------------------------------
def _reports(d: bytes, i: int, count: int, port: int | None) -> list | None:
    """One TagReport per record if `count` records fill d[i:] exactly, else None. `port` None:
    the UHFReader18 layout (no RSSI; its one port)."""
    out, n, tail = [], len(d), 0 if port is None else 1
    append = out.append
    for _ in range(count):
        if i >= n:
            return None
        size = d[i]
        j = i + 1 + size
        if not size or size > MAX_EPC or j + tail > n:
            return None
        epc = d[i + 1:j].hex().upper()
        append(TagReport(DIALECT, epc, 1) if port is None else TagReport(DIALECT, epc, port, d[j] - 129))
        i = j + tail
    return out if i == n else None


def _reader_item(buf: bytes, start: int, end: int):
    address, cmd, status = buf[start + 1], buf[start + 2], buf[start + 3]
    d = buf[start + 4:end - 2]
    if cmd == Cmd.INVENTORY and status in TAG_STATUS and d:
        out = None
        if len(d) >= 2:
            out = _reports(d, 2, d[1], ANTENNA_BITS.get(d[0]) or antenna_port(d[0]))
        if out is None:
            out = _reports(d, 1, d[0], None)  # UHFReader18: no ANT, no RSSI
            if out is None:
                return DecodeError("bad_length", start)
        out.append(Reply(address, cmd, status, b""))
        return out
    return Reply(address, cmd, status, d)


def _host_item(buf: bytes, start: int, end: int) -> Command:
    return Command(buf[start + 1], buf[start + 2], buf[start + 3:end - 2])


def _reply_plausible(buf: bytes, pos: int) -> bool:
    """A header a reader of this family could send: known command, a status that command
    answers, a length that status allows. Loose enough for every frame the notes describe,
    tight enough that random bytes rarely pass (about 1 position in 2,000)."""
    length, cmd, status = buf[pos], buf[pos + 2], buf[pos + 3]
    if cmd not in KNOWN_CMDS or status not in KNOWN_STATUS:
        return False
    if status >= Status.COMMAND_FAILED:  # errors and "no tag": no data, or an antenna byte or two
        return length <= 7
    if cmd == Cmd.INVENTORY:
        return status in TAG_STATUS and length >= 6
    if cmd == Cmd.GET_READER_INFO:
        return status == Status.SUCCESS and 0x0D <= length <= 0x20
    if cmd == Cmd.READ_DATA:
        return status == Status.SUCCESS
    return status == Status.SUCCESS and length <= 7  # writes and settings answer with the status alone


def _command_plausible(buf: bytes, pos: int) -> bool:
    return buf[pos + 2] in KNOWN_CMDS


# `LEN ADR CMD [STATUS] DATA CRC(2)`: no start byte, LEN counts the bytes after itself.
READER_FRAMES = FrameSpec(None, 0, 1, MIN_REPLY_LEN, 0xFF, 4, _crc_ok, _reader_item, _reply_plausible,
                          _reply_plausible)
HOST_FRAMES = FrameSpec(None, 0, 1, MIN_COMMAND_LEN, 0xFF, 3, _crc_ok, _host_item, _command_plausible,
                        _command_plausible)


def decode(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Reader-to-host bytes -> ([TagReport | Reply | DecodeError], rest to prepend next time).
    Resync and error rules: `agent.readers.framing`. `final=True`: no more bytes come."""
    return split(buffer, final, READER_FRAMES)


def decode_host(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Host-to-reader bytes -> ([Command | DecodeError], rest), like `decode`."""
    return split(buffer, final, HOST_FRAMES)
