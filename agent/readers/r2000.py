"""Impinj R2000 / Indy `0xA0` protocol codec (Invelion YR, Rodinbell, white-label readers): bytes <-> frames.

Pure and table-driven: no I/O, no logging. A frame is `A0 LEN ADDR CMD DATA CKS`, LEN counting
the bytes after itself, CKS the two's complement of the 8-bit sum of everything before it, so
a whole frame sums to 0 mod 256. `decode(buffer)` turns reader-to-host bytes into
`TagReport`s (real-time inventory 0x89/0x8A/0x8B and inventory-buffer 0x90/0x91 frames),
`RoundEnd`s, `InventoryError`s, `Reply`s (everything else) and `DecodeError`s through the
shared resync loop (`agent.readers.framing`, start byte `A0`); `decode_host` does the same
for host commands. An 8-bit checksum passes one random candidate in 256, so a frame found
inside an unfinished one (which makes that one `bad_length` at once) must also answer a
known command. Wire facts: shared/protocols/README.md section 2.
Real readers beyond the notes (as open-source drivers handle them): an inventory error may
come as `ANT CODE` (two data bytes: "antenna missing" names the port) as well as the notes'
one-byte `CODE`. Decisions, unverified on hardware: a 0x8B tag frame may carry two phase
bytes after RSSI (newer firmware's phase option); RSSI bit 7 is read as the antenna-group
flag of 8-port variants (ports 5-8), since a raw RSSI never exceeds 0x7F; a tag frame whose
length disagrees with its PC word, or whose PC announces no EPC, is `bad_length`.
"""

from __future__ import annotations

from binascii import crc_hqx
from dataclasses import dataclass
from enum import IntEnum

from agent.readers.framing import FrameSpec, split
from agent.readers.report import DecodeError, TagReport, enum_name

DIALECT = "r2000"
HEAD = 0xA0
BROADCAST = 0xFF
MIN_LEN = 3  # ADDR CMD CKS


class Cmd(IntEnum):
    RESET = 0x70
    SET_BAUD_RATE = 0x71
    GET_FIRMWARE_VERSION = 0x72
    SET_WORK_ANTENNA = 0x74
    GET_WORK_ANTENNA = 0x75
    SET_OUTPUT_POWER = 0x76
    GET_OUTPUT_POWER = 0x77
    SET_REGION = 0x78
    GET_REGION = 0x79
    INVENTORY = 0x80
    READ = 0x81
    REAL_TIME_INVENTORY = 0x89
    FAST_SWITCH_ANT_INVENTORY = 0x8A
    SESSION_TARGET_INVENTORY = 0x8B
    GET_INVENTORY_BUFFER = 0x90
    GET_AND_RESET_INVENTORY_BUFFER = 0x91
    GET_INVENTORY_BUFFER_TAG_COUNT = 0x92
    RESET_INVENTORY_BUFFER = 0x93


class Result(IntEnum):
    SUCCESS = 0x10
    FAIL = 0x11
    ANTENNA_MISSING = 0x22
    NO_TAG = 0x36
    BUFFER_EMPTY = 0x38
    INVALID_PARAMETER = 0x41


INVENTORY_CMDS = frozenset((Cmd.REAL_TIME_INVENTORY, Cmd.FAST_SWITCH_ANT_INVENTORY, Cmd.SESSION_TARGET_INVENTORY))
BUFFER_CMDS = frozenset((Cmd.GET_INVENTORY_BUFFER, Cmd.GET_AND_RESET_INVENTORY_BUFFER))
ROUND_END_LEN = 0x0A
BAUD_CODES = {3: 38400, 4: 115200}


def command_name(cmd: int) -> str:
    return enum_name(Cmd, cmd, "CMD_0x{:02X}").lower()


def result_name(code: int) -> str:
    return enum_name(Result, code, "RESULT_0x{:02X}")


def checksum(body: bytes) -> int:
    """CKS: two's complement of the 8-bit sum of `A0 LEN ADDR CMD DATA`."""
    return -sum(body) & 0xFF


def frequency_khz(index: int) -> int:
    """Frequency index (FREQANT bits 7..2): 865 + 0.5 i MHz below 7, else 902 + 0.5 (i - 7) MHz."""
    return 865000 + 500 * index if index < 7 else 902000 + 500 * (index - 7)


_FREQ = tuple(frequency_khz(i) for i in range(64))


def tag_crc(pc_and_epc: bytes) -> int:
    return crc_hqx(pc_and_epc, 0xFFFF) ^ 0xFFFF  # CRC-16/GENIBUS, the tag's own


# --- frames other than tag reports --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    """A reader-to-host frame that is not a tag: command replies (a one-byte result code for
    set commands, data for get commands)."""

    address: int
    command: int
    data: bytes

    @property
    def code(self) -> int | None:
        return self.data[0] if len(self.data) == 1 else None

    @property
    def ok(self) -> bool:
        return self.code == Result.SUCCESS

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "address": self.address, "command": command_name(self.command),
               "cmd": f"0x{self.command:02X}", "data": self.data.hex().upper()}
        if self.code is not None:
            out["result"] = result_name(self.code)
        if self.command == Cmd.GET_FIRMWARE_VERSION and len(self.data) == 2:
            out["firmware"] = firmware_version(self)
        return out


@dataclass(frozen=True, slots=True)
class RoundEnd:
    """End of an inventory round: `A0 0A ADDR CMD ANT READRATE(2) TOTALREAD(4)` (0x89/0x8B) or
    `TOTALREAD(3) DURATION(4)` (0x8A)."""

    address: int
    command: int
    antenna: int | None  # 1-based; None for 0x8A
    read_rate: int | None
    total_reads: int
    duration_ms: int | None = None

    def to_dict(self) -> dict:
        return {"dialect": DIALECT, "address": self.address, "command": command_name(self.command),
                "round_end": True, "antenna": self.antenna, "read_rate": self.read_rate,
                "total_reads": self.total_reads, "duration_ms": self.duration_ms}


@dataclass(frozen=True, slots=True)
class InventoryError:
    """An inventory command that failed: `CODE`, or `ANT CODE` (antenna missing)."""

    address: int
    command: int
    code: int
    antenna: int | None = None  # 1-based, when the reader named it

    def to_dict(self) -> dict:
        return {"dialect": DIALECT, "address": self.address, "command": command_name(self.command),
                "result": result_name(self.code), "code": f"0x{self.code:02X}", "antenna": self.antenna}


@dataclass(frozen=True, slots=True)
class Command:
    """A host-to-reader frame, as `decode_host` finds it."""

    address: int
    command: int
    data: bytes

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "direction": "host", "address": self.address,
               "command": command_name(self.command), "cmd": f"0x{self.command:02X}", "data": self.data.hex().upper()}
        if self.command == Cmd.SET_WORK_ANTENNA and len(self.data) == 1:
            out["antenna"] = self.data[0] + 1
        elif self.command in INVENTORY_CMDS and self.data:
            out["repeat"] = self.data[-1]
        elif self.command == Cmd.SET_OUTPUT_POWER:
            out["power_dbm"] = list(self.data)
        elif self.command == Cmd.SET_BAUD_RATE and len(self.data) == 1:
            out["baudrate"] = BAUD_CODES.get(self.data[0])
        return out


def firmware_version(reply: Reply) -> str:
    """'1.9' from the reply to 0x72 (data: major, minor). ValueError if it is not one."""
    if reply.command != Cmd.GET_FIRMWARE_VERSION or len(reply.data) != 2:
        raise ValueError(f"not a firmware version reply: {reply.data.hex()}")
    return f"{reply.data[0]}.{reply.data[1]}"


# --- host commands ------------------------------------------------------------------------
def build_command(cmd: int, data: bytes = b"", address: int = BROADCAST) -> bytes:
    body = bytes((HEAD, len(data) + 3, address, cmd)) + data
    return body + bytes((checksum(body),))


def build_get_firmware_version(address: int = BROADCAST) -> bytes:
    return build_command(Cmd.GET_FIRMWARE_VERSION, b"", address)


def build_set_work_antenna(port: int, address: int = BROADCAST) -> bytes:
    """`port` is 1-based (1-4), the wire carries 0-3."""
    if not 1 <= port <= 4:
        raise ValueError(f"R2000 antenna ports are 1-4, not {port}")
    return build_command(Cmd.SET_WORK_ANTENNA, bytes((port - 1,)), address)


def build_real_time_inventory(repeat: int = 1, address: int = BROADCAST) -> bytes:
    return build_command(Cmd.REAL_TIME_INVENTORY, bytes((repeat,)), address)


def build_get_output_power(address: int = BROADCAST) -> bytes:
    return build_command(Cmd.GET_OUTPUT_POWER, b"", address)


def build_set_output_power(dbm, address: int = BROADCAST) -> bytes:
    """One value for every port, or one per port (four-port firmware wants four)."""
    values = [dbm] if isinstance(dbm, int) else list(dbm)
    return build_command(Cmd.SET_OUTPUT_POWER, bytes(values), address)


# --- reader frames (the simulator's side) -------------------------------------------------
def encode_frame(cmd: int, data: bytes = b"", address: int = 1) -> bytes:
    return build_command(cmd, data, address)


def encode_result(cmd: int, code: int = Result.SUCCESS, address: int = 1) -> bytes:
    return encode_frame(cmd, bytes((code,)), address)


def encode_firmware_version(major: int, minor: int, address: int = 1) -> bytes:
    return encode_frame(Cmd.GET_FIRMWARE_VERSION, bytes((major, minor)), address)


def encode_tag(epc: bytes, antenna: int = 1, rssi: int = -50, freq_index: int = 7, *, pc: int | None = None,
               phase: int | None = None, cmd: int = Cmd.REAL_TIME_INVENTORY, address: int = 1) -> bytes:
    """One real-time inventory tag frame: FREQANT PC EPC RSSI [PHASE]. `antenna` 1-8, `rssi` dBm."""
    if pc is None:
        pc = len(epc) // 2 << 11
    raw = max(0, min(0x7F, rssi + 129)) | (0x80 if antenna > 4 else 0)
    data = bytes(((freq_index & 0x3F) << 2 | (antenna - 1) & 3,)) + pc.to_bytes(2, "big") + epc + bytes((raw,))
    if phase is not None:
        data += phase.to_bytes(2, "big")
    return encode_frame(cmd, data, address)


def encode_round_end(antenna: int, read_rate: int, total_reads: int, cmd: int = Cmd.REAL_TIME_INVENTORY,
                     address: int = 1) -> bytes:
    return encode_frame(cmd, bytes((antenna - 1,)) + read_rate.to_bytes(2, "big") + total_reads.to_bytes(4, "big"),
                        address)


def encode_inventory_error(code: int, cmd: int = Cmd.REAL_TIME_INVENTORY, antenna: int | None = None,
                           address: int = 1) -> bytes:
    data = bytes((code,)) if antenna is None else bytes((antenna - 1, code))
    return encode_frame(cmd, data, address)


def encode_buffer_tag(epc: bytes, antenna: int = 1, rssi: int = -50, freq_index: int = 7, *, count: int = 1,
                      remaining: int = 1, inventory_count: int = 1, address: int = 1,
                      cmd: int = Cmd.GET_AND_RESET_INVENTORY_BUFFER) -> bytes:
    """One inventory-buffer tag frame: COUNT(2) DATALEN PC EPC CRC(2) RSSI FREQANT INVCOUNT."""
    words = (len(epc) // 2 << 11).to_bytes(2, "big") + epc
    tag = words + tag_crc(words).to_bytes(2, "big")
    tail = bytes((max(0, min(0x7F, rssi + 129)), (freq_index & 0x3F) << 2 | (antenna - 1) & 3, inventory_count))
    return encode_frame(cmd, remaining.to_bytes(2, "big") + bytes((len(tag),)) + tag + tail, address)


# --- decoding -----------------------------------------------------------------------------
def _reader_item(buf: bytes, start: int, end: int):
    length, address, cmd = buf[start + 1], buf[start + 2], buf[start + 3]
    n = length - 3  # data bytes
    if cmd in INVENTORY_CMDS:
        if n >= 4 and length != ROUND_END_LEN:
            fa = buf[start + 4]
            epc_len = buf[start + 5] >> 3 << 1  # (PC >> 11) words
            extra = n - 4 - epc_len  # 0, or 2 phase bytes (0x8B only: elsewhere a sign of a damaged LEN)
            if not epc_len or (extra and (extra != 2 or cmd != Cmd.SESSION_TARGET_INVENTORY)):
                return DecodeError("bad_length", start)
            e = start + 7 + epc_len
            raw = buf[e]
            return TagReport(DIALECT, buf[start + 7:e].hex().upper(), (fa & 3) + (5 if raw & 0x80 else 1),
                             (raw & 0x7F) - 129, None, _FREQ[fa >> 2], buf[start + 5:start + 7].hex().upper(), None,
                             buf[e + 1] << 8 | buf[e + 2] if extra else None)
        if length == ROUND_END_LEN:
            d = buf[start + 4:end - 1]
            if cmd == Cmd.FAST_SWITCH_ANT_INVENTORY:
                return RoundEnd(address, cmd, None, None, int.from_bytes(d[0:3], "big"), int.from_bytes(d[3:7], "big"))
            return RoundEnd(address, cmd, d[0] + 1, int.from_bytes(d[1:3], "big"), int.from_bytes(d[3:7], "big"))
        if n == 1:
            return InventoryError(address, cmd, buf[start + 4])
        if n == 2:
            return InventoryError(address, cmd, buf[start + 5], buf[start + 4] + 1)
    elif cmd in BUFFER_CMDS and n > 1:
        return _buffer_tag(buf, start, end)
    return Reply(address, cmd, buf[start + 4:end - 1])


def _buffer_tag(buf: bytes, start: int, end: int):
    d = buf[start + 4:end - 1]  # COUNT(2) DATALEN PC EPC CRC(2) RSSI FREQANT INVCOUNT
    if len(d) < 10 or d[2] + 6 != len(d) or d[2] < 6:
        return DecodeError("bad_length", start)
    tag = d[3:3 + d[2]]
    epc_len = tag[0] >> 3 << 1
    if epc_len + 4 != len(tag) or not epc_len:
        return DecodeError("bad_length", start)
    if tag_crc(tag[:-2]) != int.from_bytes(tag[-2:], "big"):
        return DecodeError("bad_tag_crc", start)
    rssi, fa, count = d[-3], d[-2], d[-1]
    return TagReport(DIALECT, tag[2:-2].hex().upper(), (fa & 3) + (5 if rssi & 0x80 else 1), (rssi & 0x7F) - 129,
                     count, _FREQ[fa >> 2], tag[0:2].hex().upper())


def _host_item(buf: bytes, start: int, end: int) -> Command:
    return Command(buf[start + 2], buf[start + 3], buf[start + 4:end - 1])


def _checksum_ok(buf: bytes, start: int, end: int) -> bool:
    return not sum(buf[start:end]) & 0xFF  # CKS makes the whole frame sum to 0 mod 256


KNOWN_CMDS = frozenset(int(c) for c in Cmd)


def _known_command(buf: bytes, start: int) -> bool:
    """A frame found inside a cut-off one must answer a known command: an 8-bit checksum
    alone passes one random candidate in 256, too often inside a frame still arriving."""
    return buf[start + 3] in KNOWN_CMDS


# `A0 LEN ADDR CMD DATA CKS`: LEN counts the bytes after itself, at least ADDR CMD CKS.
READER_FRAMES = FrameSpec(HEAD, 1, 2, MIN_LEN, 0xFF, 2, _checksum_ok, _reader_item, inside=_known_command)
HOST_FRAMES = FrameSpec(HEAD, 1, 2, MIN_LEN, 0xFF, 2, _checksum_ok, _host_item, inside=_known_command)


def decode(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Reader-to-host bytes -> ([TagReport | RoundEnd | InventoryError | Reply | DecodeError], rest).
    Resync and error rules: `agent.readers.framing`. `final=True`: no more bytes come."""
    return split(buffer, final, READER_FRAMES)


def decode_host(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Host-to-reader bytes -> ([Command | DecodeError], rest), like `decode`."""
    return split(buffer, final, HOST_FRAMES)
