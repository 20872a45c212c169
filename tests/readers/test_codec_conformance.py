"""The same damage gives the same errors, and the valid frame at once, in every dialect.

DESIGN part 1: the byte-level resync is written once (agent/readers/framing.py) so that
the binary dialects cannot drift apart again. Each case below damages a frame the same
way in all four dialects, follows it with a valid tag frame, and checks the error code,
its offset, that the valid frame comes out without waiting for more bytes or for the
idle flush, and that bytes fed one at a time give the very same items.

Alien is text: the same damage is mapped onto its lines (a line cut short, copies that
disagree, an endless line, a line cut off by the end) and its codes differ where text has
no length field or checksum to blame: a cut-off line and a line whose two copies
disagree are `bad_syntax` (binary: `bad_length`, `bad_checksum`). That difference is
spelled out in ALIEN_CODES, not hidden. A line cut off and glued to the next one (no line
end of its own) is noise in front of that line, skipped silently like leading garbage.
"""

from __future__ import annotations

import pytest

from agent.readers import alien, chafon, r2000
from agent.readers import thingmagic as tm
from agent.readers.report import DecodeError, TagReport

# The damaged frame is long, the valid one after it short: a reader that reset mid-frame and
# began again, so the cut-off frame's length byte still reaches past the valid frame's end
# however the bytes arrive (framing.py: then it is `bad_length` in every chunking).
EPC = bytes(range(0x10, 0x10 + 62))  # 31 words, the longest Gen2 EPC
OTHER = bytes.fromhex("E2801160")
GARBAGE = bytes((1, 2, 3, 4))  # no start byte, no plausible length byte, no line end

BINARY_CODES = {"cut_off": "bad_length", "bad_checksum": "bad_checksum", "oversized": "bad_length",
                "truncated": "truncated"}
ALIEN_CODES = {**BINARY_CODES, "cut_off": "bad_syntax", "bad_checksum": "bad_syntax"}


class Binary:
    def __init__(self, name, decode, tag, spec):
        self.name, self.decode, self.tag, self.spec = name, decode, tag, spec
        self.codes, self.lead = BINARY_CODES, GARBAGE

    def cut_off(self, frame: bytes) -> bytes:
        return frame[:len(frame) // 2]

    def bad_checksum(self, frame: bytes) -> bytes:
        return frame[:-1] + bytes((frame[-1] ^ 0x5A,))

    def oversized(self, frame: bytes) -> bytes:  # the largest length byte the dialect allows
        at = self.spec.length_at
        return frame[:at] + bytes((self.spec.max_len,)) + frame[at + 1:]

    def truncated(self, frame: bytes) -> bytes:
        return frame[:-2]


class Text:
    name, decode, codes = "alien", staticmethod(alien.decode), ALIEN_CODES
    lead = GARBAGE + b"\r\n"  # garbage on a line of its own: glued to a line it would move the error's offset

    @staticmethod
    def tag(epc: bytes) -> bytes:
        return alien.encode_custom_line(alien.DRIVER_FORMAT, epc.hex().upper(), 2, -48.0, 3).encode() + b"\r\n"

    def cut_off(self, line: bytes) -> bytes:  # bytes lost mid-line, its line end kept
        return line[:20] + b"\r\n"

    def bad_checksum(self, line: bytes) -> bytes:  # one copy of the fields changed: the link's only check
        return line.replace(b",3|", b",4|")

    def oversized(self, line: bytes) -> bytes:
        return b"x" * (alien.MAX_LINE + 1) + b"\r\n"

    def truncated(self, line: bytes) -> bytes:
        return line[:30]


DIALECTS = [
    Binary("thingmagic", tm.decode, lambda epc: tm.encode_tag_frame(epc), tm.MODULE_FRAMES),
    Binary("r2000", r2000.decode, lambda epc: r2000.encode_tag(epc, antenna=2), r2000.READER_FRAMES),
    Binary("chafon", chafon.decode, lambda epc: chafon.encode_inventory([(epc, -50)], antenna=2),
           chafon.READER_FRAMES),
    Text(),
]
DAMAGE = ("cut_off", "bad_checksum", "oversized")


def seen(items) -> list:
    """What the conformance is about: tag EPCs and errors (replies, round ends, messages aside)."""
    return [i.epc if type(i) is TagReport else i for i in items if type(i) in (TagReport, DecodeError)]


def byte_by_byte(decode, stream: bytes) -> tuple[list, bytes]:
    """Feed one byte per call, errors' offsets made absolute as `laneagent decode` does."""
    got, rest, base = [], b"", 0
    for byte in stream:
        buffer = rest + bytes((byte,))
        items, rest = decode(buffer)
        got += [DecodeError(i.code, base + i.offset) if type(i) is DecodeError else i for i in items]
        base += len(buffer) - len(rest)
    return got, rest


@pytest.mark.parametrize("d", DIALECTS, ids=lambda d: d.name)
def test_leading_garbage_is_skipped_silently(d):
    items, rest = d.decode(GARBAGE + d.tag(EPC))
    assert seen(items) == [EPC.hex().upper()] and rest == b""


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("d", DIALECTS, ids=lambda d: d.name)
def test_damaged_frame_then_a_valid_one(d, damage):
    damaged = getattr(d, damage)(d.tag(EPC))
    stream = d.lead + damaged + d.tag(OTHER)
    expected = [DecodeError(d.codes[damage], len(d.lead)), OTHER.hex().upper()]
    items, rest = d.decode(stream)  # not final: the valid frame must not wait for more bytes
    assert seen(items) == expected and rest == b""
    assert seen(d.decode(stream, final=True)[0]) == expected
    one_by_one, rest = byte_by_byte(d.decode, stream)
    assert seen(one_by_one) == expected and rest in (b"", b"\n")  # alien: the LF after the CR that ended it


@pytest.mark.parametrize("d", DIALECTS, ids=lambda d: d.name)
def test_frame_cut_off_by_the_end_waits_then_is_truncated(d):
    cut = d.truncated(d.tag(EPC))
    assert d.decode(d.lead + cut) == ([], cut)  # more may come
    items, rest = d.decode(d.lead + cut, final=True)
    assert seen(items) == [DecodeError(d.codes["truncated"], len(d.lead))] and rest == b""


@pytest.mark.parametrize("d", DIALECTS, ids=lambda d: d.name)
def test_every_damage_in_one_stream_bytes_one_at_a_time(d):
    frames = [d.lead]
    for damage in DAMAGE:
        frames += [getattr(d, damage)(d.tag(EPC)), d.tag(OTHER)]
    stream = b"".join(frames)
    whole, _ = d.decode(stream)
    assert [getattr(i, "code", i) for i in seen(whole)] == [
        x for damage in DAMAGE for x in (d.codes[damage], OTHER.hex().upper())]
    assert seen(byte_by_byte(d.decode, stream)[0]) == seen(whole)


def test_binary_dialects_share_one_table_of_codes():
    assert all(d.codes is BINARY_CODES for d in DIALECTS if d.name != "alien")
    assert {k for k in BINARY_CODES if ALIEN_CODES[k] != BINARY_CODES[k]} == {"cut_off", "bad_checksum"}
