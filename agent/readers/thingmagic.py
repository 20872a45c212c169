"""ThingMagic / Jadak Mercury serial protocol codec (M5e, M6e, Micro, Nano, M7E): bytes <-> frames.

Pure and table-driven: no I/O, no logging. `decode(buffer)` splits module-to-host bytes
into `TagReport`s, `Reply`s (every other frame: command replies, keep-alives) and
`DecodeError`s through the shared resync loop (`agent.readers.framing`: a frame starts
with `FF` + a LEN of at most 0xF8) and returns the bytes of an unfinished frame for the
next call; `decode_host` does the same for host-to-module
commands. `build_*` make host commands, `encode_*` make module replies (the simulator's).
Wire facts: shared/protocols/README.md section 1. Decisions where the notes are silent:
the antenna is the RX port (low nibble of the antenna byte; monostatic modules report
the same port twice, and RX is the port that heard the tag); a tag CRC is accepted over
PC+XPC+EPC (Gen2 PacketCRC) or PC+EPC (StoredCRC); a streamed 0x22 frame whose response
type is not 1 (tag) is a `Reply`; a record asking for metadata bits above 0x0800 is
`bad_syntax`; `antenna` is 0 only when the frame carried no antenna metadata.
"""

from __future__ import annotations

import struct
from binascii import crc_hqx
from dataclasses import asdict, dataclass
from enum import IntEnum

from agent.readers.framing import FrameSpec, split
from agent.readers.report import DecodeError, TagReport

DIALECT = "thingmagic"
MAX_LEN = 0xF8  # a larger LEN byte after FF is data, not a frame start
HOST_OVERHEAD, MODULE_OVERHEAD = 5, 7  # FF LEN OP [STATUS(2)] ... CRC(2)


Opcode = IntEnum("Opcode", {
    "GET_VERSION": 0x03, "BOOT_FIRMWARE": 0x04, "SET_BAUD_RATE": 0x06, "READ_SINGLE": 0x21,
    "READ_MULTIPLE": 0x22, "GET_TAG_BUFFER": 0x29, "CLEAR_TAG_BUFFER": 0x2A, "MULTI_PROTOCOL_TAG_OP": 0x2F,
    "GET_ANTENNA_PORT": 0x61, "GET_READ_POWER": 0x62, "GET_PROTOCOL": 0x63, "GET_REGION": 0x67,
    "GET_POWER_MODE": 0x68, "SET_ANTENNA_PORT": 0x91, "SET_READ_POWER": 0x92, "SET_PROTOCOL": 0x93,
    "SET_REGION": 0x97, "SET_POWER_MODE": 0x98,
})
# Status words; NO_TAGS_FOUND with no data is also the keep-alive while streaming.
Status = IntEnum("Status", {
    "OK": 0x0000, "WRONG_NUMBER_OF_DATA": 0x0100, "INVALID_OPCODE": 0x0101, "UNIMPLEMENTED_OPCODE": 0x0102,
    "POWER_TOO_HIGH": 0x0103, "INVALID_FREQUENCY": 0x0104, "INVALID_PARAMETER": 0x0105, "POWER_TOO_LOW": 0x0106,
    "UNIMPLEMENTED_FEATURE": 0x0109, "INVALID_BAUD_RATE": 0x010A, "INVALID_REGION": 0x010B,
    "BL_INVALID_IMAGE_CRC": 0x0200, "BL_INVALID_APP_END_ADDR": 0x0201, "NO_TAGS_FOUND": 0x0400,
    "NO_PROTOCOL_DEFINED": 0x0401, "INVALID_PROTOCOL": 0x0402, "TAG_BUFFER_FULL": 0x0501,
    "SYSTEM_UNKNOWN_ERROR": 0x7F00, "ASSERT_FAILED": 0x7F01,
})
# Region codes, named as the config's `region` names them.
Region = IntEnum("Region", {"NA": 1, "EU": 2, "KR": 3, "IN": 4, "JP": 5, "PRC": 6, "EU3": 8, "AU": 11, "NZ": 12,
                            "NA2": 13, "NA3": 14, "OPEN": 0xFF})

PROTOCOL_GEN2 = 0x05
PROTOCOL_NAMES = {3: "ISO18000-6B", 5: "GEN2", 6: "UCODE", 7: "IPX64", 8: "IPX256"}
MODELS = {0x00: "M5e", 0x01: "M5e Compact", 0x02: "M5e-I", 0x03: "M4e", 0x18: "M6e", 0x19: "M6e PRC",
          0x20: "Micro", 0x30: "Nano", 0x38: "M7E Pico"}

# METADATAFLAGS bits, ascending = their order in a tag record.
META_COUNT, META_RSSI, META_ANTENNA, META_FREQUENCY = 0x0001, 0x0002, 0x0004, 0x0008
META_TIMESTAMP, META_PHASE, META_PROTOCOL, META_DATA = 0x0010, 0x0020, 0x0040, 0x0080
META_GPIO, META_GEN2_Q, META_GEN2_LF, META_GEN2_TARGET = 0x0100, 0x0200, 0x0400, 0x0800
META_KNOWN = 0x0FFF
META_REPORT = 0x003F  # what TagReport can carry: count, RSSI, antenna, frequency, timestamp, phase
SEARCH_STREAMING = 0x0008 | 0x0010 | 0x0003  # tag streaming, large population, configured antenna list
OPTION_METADATA = 0x10


def _name(enum, value: int, unknown: str) -> str:
    try:
        return enum(value).name
    except ValueError:
        return unknown.format(value)


def status_name(status: int) -> str:
    return _name(Status, status, "STATUS_0x{:04X}")


def opcode_name(opcode: int) -> str:
    return _name(Opcode, opcode, "OPCODE_0x{:02X}").lower()


def region_name(code: int) -> str:
    return _name(Region, code, "REGION_0x{:02X}")


# --- CRC ---------------------------------------------------------------------------------
_NIBBLE_TABLE = tuple(((n << 12) ^ (n << 5) ^ n) & 0xFFFF for n in range(16))  # n * 0x1021 in GF(2)


def crc16_reference(body: bytes) -> int:
    """The SDK's nibble-wise CRC over LEN..end of DATA: init 0xFFFF, poly 0x1021, no augmentation."""
    crc = 0xFFFF
    for byte in body:
        crc = (((crc << 4) | (byte >> 4)) ^ _NIBBLE_TABLE[crc >> 12]) & 0xFFFF
        crc = (((crc << 4) | (byte & 0x0F)) ^ _NIBBLE_TABLE[crc >> 12]) & 0xFFFF
    return crc


def crc16(body: bytes) -> int:
    """`crc16_reference` by binascii's C table: shifting bytes in unaugmented equals the direct
    CRC (seed 0x1D0F) of all but the last two bytes, XORed with those two. len(body) >= 2."""
    return crc_hqx(body[:-2], 0x1D0F) ^ (body[-2] << 8 | body[-1])


def tag_crc(pc_and_epc: bytes) -> int:
    """CRC-16/GENIBUS, the CRC a Gen2 tag backscatters after its PC and EPC."""
    return crc_hqx(pc_and_epc, 0xFFFF) ^ 0xFFFF


# --- items that are not tag reports ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    """A module-to-host frame that is not a tag report: a command reply or a keep-alive."""

    opcode: int
    status: int
    data: bytes

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def is_keepalive(self) -> bool:
        return self.status == Status.NO_TAGS_FOUND and not self.data

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "opcode": f"0x{self.opcode:02X}", "command": opcode_name(self.opcode),
               "status": f"0x{self.status:04X}", "status_name": self.status_name, "data": self.data.hex().upper()}
        if self.opcode in (Opcode.GET_VERSION, Opcode.BOOT_FIRMWARE) and self.ok and len(self.data) >= 20:
            out["version"] = parse_version(self.data).to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Command:
    """A host-to-module frame, as `decode_host` finds it."""

    opcode: int
    data: bytes

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "direction": "host", "opcode": f"0x{self.opcode:02X}",
               "command": opcode_name(self.opcode), "data": self.data.hex().upper()}
        out.update(describe_command(self))
        return out


@dataclass(frozen=True, slots=True)
class VersionInfo:
    bootloader: str
    hardware: str
    firmware_date: str
    firmware_version: str
    protocols: tuple[str, ...]
    model: str

    def to_dict(self) -> dict:
        return {**asdict(self), "protocols": list(self.protocols)}


def _dotted(raw: bytes) -> str:
    return ".".join(f"{b:02X}" for b in raw)


def parse_version(data: bytes) -> VersionInfo:
    """The 20-byte version block that answers 0x03 and 0x04. Raises ValueError if short."""
    if len(data) < 20:
        raise ValueError(f"version block has {len(data)} bytes, expected 20")
    date = data[8:12].hex()  # BCD, e.g. 20 14 10 07
    mask = int.from_bytes(data[16:20], "big")
    protocols = tuple(PROTOCOL_NAMES.get(bit + 1, f"protocol_{bit + 1}") for bit in range(32) if mask >> bit & 1)
    return VersionInfo(_dotted(data[0:4]), _dotted(data[4:8]), f"{date[0:4]}-{date[4:6]}-{date[6:8]}",
                       _dotted(data[12:16]), protocols, MODELS.get(data[4], f"unknown 0x{data[4]:02X}"))


def describe_command(cmd: Command) -> dict:
    """Named parameters of the host commands laneagent sends; {} for the others."""
    op, data = cmd.opcode, cmd.data
    try:
        if op == Opcode.SET_REGION:
            return {"region": region_name(data[0])}
        if op == Opcode.SET_PROTOCOL:
            return {"protocol": PROTOCOL_NAMES.get(int.from_bytes(data[0:2], "big"), data[0:2].hex())}
        if op == Opcode.SET_READ_POWER:
            return {"read_power_cdbm": int.from_bytes(data[0:2], "big", signed=True)}
        if op == Opcode.SET_ANTENNA_PORT and len(data) == 2:
            return {"tx_port": data[0], "rx_port": data[1]}
        if op == Opcode.SET_ANTENNA_PORT and data[0] == 2:  # option 2: a list of TX/RX pairs
            return {"antennas": [data[i + 1] for i in range(1, len(data) - 1, 2)]}
        if op == Opcode.MULTI_PROTOCOL_TAG_OP:
            if data[2] == 2:
                return {"action": "stop_reading"}
            start = parse_start_reading(data)
            return {"action": "start_reading", "metadata_flags": f"0x{start.metadata_flags:04X}",
                    "search_flags": f"0x{start.search_flags:04X}", "protocol": PROTOCOL_NAMES.get(start.protocol)}
    except (IndexError, ValueError):
        return {"malformed": True}
    return {}


@dataclass(frozen=True, slots=True)
class StartReading:
    option: int
    search_flags: int
    timeout_ms: int
    metadata_flags: int
    protocol: int


def parse_start_reading(data: bytes) -> StartReading:
    """The embedded 0x22 command of a 0x2F start: `22 OPTION SEARCHFLAGS TIMEOUT [METADATAFLAGS]`."""
    if len(data) < 14 or data[2] != 1 or data[3] != Opcode.READ_MULTIPLE or data[8] != Opcode.READ_MULTIPLE:
        raise ValueError("not a 0x2F start-reading command wrapping 0x22")
    option = data[9]
    flags = int.from_bytes(data[14:16], "big") if option & OPTION_METADATA else 0
    if option & OPTION_METADATA and len(data) < 16:
        raise ValueError("metadata option set but no METADATAFLAGS")
    return StartReading(option, int.from_bytes(data[10:12], "big"), int.from_bytes(data[12:14], "big"), flags, data[6])


# --- host commands -----------------------------------------------------------------------
def build_command(opcode: int, data: bytes = b"") -> bytes:
    """`FF LEN OP DATA CRC` for the module."""
    body = bytes((len(data), opcode)) + data
    return b"\xff" + body + crc16(body).to_bytes(2, "big")


def build_boot_firmware() -> bytes:
    return build_command(Opcode.BOOT_FIRMWARE)


def build_get_version() -> bytes:
    return build_command(Opcode.GET_VERSION)


def build_set_region(region: int | str) -> bytes:
    code = Region[region] if isinstance(region, str) else region
    return build_command(Opcode.SET_REGION, bytes((code,)))


def build_set_protocol(protocol: int = PROTOCOL_GEN2) -> bytes:
    return build_command(Opcode.SET_PROTOCOL, protocol.to_bytes(2, "big"))


def build_set_antenna_ports(ports) -> bytes:
    """Antenna search list (option 2): monostatic TX/RX pairs."""
    return build_command(Opcode.SET_ANTENNA_PORT, bytes([2] + [p for port in ports for p in (port, port)]))


def build_set_read_power(centi_dbm: int) -> bytes:
    return build_command(Opcode.SET_READ_POWER, centi_dbm.to_bytes(2, "big", signed=True))


def build_start_reading(metadata_flags: int = META_REPORT, search_flags: int = SEARCH_STREAMING,
                        timeout_ms: int = 1000) -> bytes:
    """0x2F (continuous) wrapping 0x22 with metadata; PLEN excludes the embedded opcode."""
    sub = struct.pack(">BBHHH", Opcode.READ_MULTIPLE, OPTION_METADATA, search_flags, timeout_ms, metadata_flags)
    head = struct.pack(">HBBHBB", 0, 1, Opcode.READ_MULTIPLE, 0, PROTOCOL_GEN2, len(sub) - 1)
    return build_command(Opcode.MULTI_PROTOCOL_TAG_OP, head + sub)


def build_stop_reading() -> bytes:
    return build_command(Opcode.MULTI_PROTOCOL_TAG_OP, b"\x00\x00\x02")


# --- module replies (the simulator's side) -----------------------------------------------
def encode_reply(opcode: int, status: int = 0, data: bytes = b"") -> bytes:
    """`FF LEN OP STATUS DATA CRC` for the host."""
    body = bytes((len(data), opcode)) + status.to_bytes(2, "big") + data
    return b"\xff" + body + crc16(body).to_bytes(2, "big")


def encode_keepalive(opcode: int = Opcode.READ_MULTIPLE) -> bytes:
    return encode_reply(opcode, Status.NO_TAGS_FOUND)


def encode_version_block(bootloader: bytes, hardware: bytes, firmware_date: bytes, firmware_version: bytes,
                         protocols: int = 1 << (PROTOCOL_GEN2 - 1)) -> bytes:
    return bootloader + hardware + firmware_date + firmware_version + protocols.to_bytes(4, "big")


def encode_tag_frame(epc: bytes, metadata_flags: int = META_REPORT, *, count: int = 1, rssi: int = -50,
                     antenna: int = 1, frequency_khz: int = 915250, timestamp_ms: int = 0, phase: int = 0,
                     protocol: int = PROTOCOL_GEN2, data: bytes = b"", gpio: int = 0, q: int = 0, lf: int = 0,
                     target: int = 0, pc: int | None = None, xpc: tuple[int, ...] = (),
                     search_flags: int = SEARCH_STREAMING) -> bytes:
    """One streamed tag as the module sends it, with only the metadata `metadata_flags` asks for."""
    if pc is None:
        pc = len(epc) // 2 << 11 | (0x0200 if xpc else 0)  # L: EPC words; XI: XPC follows
    out = bytearray(struct.pack(">BHHB", OPTION_METADATA, search_flags, metadata_flags, 1))
    fields = ((META_COUNT, ">B", count), (META_RSSI, ">b", rssi), (META_ANTENNA, ">B", (antenna & 15) * 17),
              (META_FREQUENCY, ">I", frequency_khz), (META_TIMESTAMP, ">I", timestamp_ms),
              (META_PHASE, ">H", phase), (META_PROTOCOL, ">B", protocol))
    for bit, fmt, value in fields:
        if metadata_flags & bit:
            out += struct.pack(fmt, value)[1:] if bit == META_FREQUENCY else struct.pack(fmt, value)
    if metadata_flags & META_DATA:
        out += struct.pack(">H", len(data) * 8) + data
    for bit, value in ((META_GPIO, gpio), (META_GEN2_Q, q), (META_GEN2_LF, lf), (META_GEN2_TARGET, target)):
        if metadata_flags & bit:
            out.append(value)
    words = struct.pack(f">H{len(xpc)}H", pc, *xpc) + epc
    out += struct.pack(">H", (len(words) + 2) * 8) + words + tag_crc(words).to_bytes(2, "big")
    return encode_reply(Opcode.READ_MULTIPLE, Status.OK, bytes(out))


# --- decoding ----------------------------------------------------------------------------
def _frame_crc_ok(buf: bytes, start: int, end: int) -> bool:
    wire = buf[end - 2] << 8 | buf[end - 1]
    return crc_hqx(buf[start + 1:end - 4], 0x1D0F) ^ (buf[end - 4] << 8 | buf[end - 3]) == wire


class _Layout:
    """Where each metadata field sits for one METADATAFLAGS value (built once per value)."""

    __slots__ = ("head", "slots", "data", "tail")

    def __init__(self, flags: int):
        fmt, slots = ">", {}
        for bit, code, name in ((META_COUNT, "B", "count"), (META_RSSI, "b", "rssi"), (META_ANTENNA, "B", "antenna"),
                                (META_FREQUENCY, "BH", "frequency"), (META_TIMESTAMP, "I", "timestamp"),
                                (META_PHASE, "H", "phase"), (META_PROTOCOL, "B", "protocol")):
            if flags & bit:
                slots[name] = len(fmt) - 1
                fmt += code
        self.head = struct.Struct(fmt)
        self.slots = tuple(slots.get(k, -1) for k in ("count", "rssi", "antenna", "frequency", "timestamp", "phase"))
        self.data = bool(flags & META_DATA)
        self.tail = bin(flags & (META_GPIO | META_GEN2_Q | META_GEN2_LF | META_GEN2_TARGET)).count("1")


_LAYOUTS: dict[int, _Layout] = {}
_ANTENNA = tuple((b & 0x0F) or 16 for b in range(256))  # RX port, 0 meaning 16
_NONE = (None,)


def _module_item(buf: bytes, start: int, end: int):
    d = buf[start:end - 2]  # FF LEN OP STATUS(2) DATA: every index below stays inside this frame
    opcode, status = d[2], d[3] << 8 | d[4]
    if opcode != Opcode.READ_MULTIPLE or status or len(d) < 11:
        return Reply(opcode, status, d[5:])
    if d[5] & OPTION_METADATA:
        flags, kind, i = d[8] << 8 | d[9], d[10], 11
    else:
        flags, kind, i = 0, d[8], 9
    if kind != 1:  # search summary or status stream, not a tag
        return Reply(opcode, status, d[5:])
    if flags & ~META_KNOWN:
        return DecodeError("bad_syntax", start)
    layout = _LAYOUTS.get(flags)
    if layout is None:
        layout = _LAYOUTS[flags] = _Layout(flags)
    try:
        v = layout.head.unpack_from(d, i) + _NONE
        i += layout.head.size
        if layout.data:
            i += 2 + ((d[i] << 8 | d[i + 1]) + 7 >> 3)
        i += layout.tail
        size = (d[i] << 8 | d[i + 1]) + 7 >> 3  # PC + XPC + EPC + tag CRC, given in bits
        first = i + 2
        epc = first + 2
        if d[first] & 0x02:  # PC bit 0x0200: an XPC word follows, and a second if its top bit is set
            epc += 4 if d[epc] & 0x80 else 2
    except (struct.error, IndexError):
        return DecodeError("bad_length", start)
    last = first + size - 2  # where the tag CRC sits
    if size < 4 or epc > last or last + 2 > len(d):
        return DecodeError("bad_length", start)
    crc = d[last] << 8 | d[last + 1]
    if crc_hqx(d[first:last], 0xFFFF) ^ 0xFFFF != crc and (
            epc == first + 2 or crc_hqx(d[first:first + 2] + d[epc:last], 0xFFFF) ^ 0xFFFF != crc):
        return DecodeError("bad_tag_crc", start)
    c, r, a, f, t, p = layout.slots
    return TagReport(DIALECT, d[epc:last].hex().upper(), _ANTENNA[v[a]] if a >= 0 else 0, v[r], v[c],
                     v[f] << 16 | v[f + 1] if f >= 0 else None, d[first:first + 2].hex().upper(), v[t], v[p])


def _host_item(buf: bytes, start: int, end: int) -> Command:
    return Command(buf[start + 2], buf[start + 3:end - 2])


# `FF LEN ...`: LEN counts the data only; candidates with a LEN above 0xF8 are data, not frames.
MODULE_FRAMES = FrameSpec(0xFF, 1, MODULE_OVERHEAD, 0, MAX_LEN, 2, _frame_crc_ok, _module_item)
HOST_FRAMES = FrameSpec(0xFF, 1, HOST_OVERHEAD, 0, MAX_LEN, 2, _frame_crc_ok, _host_item)


def decode(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Module-to-host bytes -> ([TagReport | Reply | DecodeError], rest to prepend next time).
    Resync and error rules: `agent.readers.framing`. `final=True`: no more bytes come."""
    return split(buffer, final, MODULE_FRAMES)


def decode_host(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Host-to-module bytes -> ([Command | DecodeError], rest), like `decode`."""
    return split(buffer, final, HOST_FRAMES)
