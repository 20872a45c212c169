"""ThingMagic codec against hand-written frames, round trips and arbitrary bytes.

The hex literals below were laid out by hand, field by field, from
shared/protocols/README.md section 1; their CRCs are checked here by bit-wise CRC
implementations that share nothing with the codec.
"""

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.readers import thingmagic as tm
from agent.readers.report import DecodeError, TagReport
from tests.helpers import decode_in_pieces


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def bitwise_frame_crc(body: bytes) -> int:
    """The notes' algorithm one bit at a time: shift each bit in, poly 0x1021, init 0xFFFF."""
    crc = 0xFFFF
    for byte in body:
        for i in range(7, -1, -1):
            top = crc & 0x8000
            crc = ((crc << 1) | (byte >> i & 1)) & 0xFFFF
            if top:
                crc ^= 0x1021
    return crc


def bitwise_genibus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


GET_VERSION = h("FF 00 03 1D 0C")  # the notes' known answer
M5E_VERSION = h("FF 14 03 00 00 07 10 23 00 01 00 00 03 20 14 10 07 01 07 02 09 00 00 00 10 5B D1")
KEEPALIVE = h("FF 00 22 04 00 84 E0")  # LEN 0, opcode 0x22, status 0x0400
REGION_REFUSED = h("FF 00 97 01 0B 76 95")  # set region -> 0x010B invalid region
# A streamed tag, METADATAFLAGS 0x003F: count 3, RSSI -48, antenna TX2/RX2, 915250 kHz,
# timestamp 1234 ms, phase 77; 128 bits = PC 3000 + 12-byte EPC + tag CRC FB 25.
TAG = h("FF 24 22 00 00"  # SOF LEN OP STATUS
        "10 00 1B 00 3F 01"  # OPTION SEARCHFLAGS METADATAFLAGS TAGCOUNT/type
        "03 D0 22 0D F7 32 00 00 04 D2 00 4D"  # count rssi antenna freq(3) timestamp(4) phase(2)
        "00 80 30 00 E2 80 11 60 60 00 02 05 4E 2C 1A 2B FB 25"  # bits, PC, EPC, tag CRC
        "F5 3A")
TAG_BAD_TAG_CRC = h("FF 24 22 00 00 10 00 1B 00 3F 01 03 D0 22 0D F7 32 00 00 04 D2 00 4D"
                    "00 80 30 00 E2 80 11 60 60 00 02 05 4E 2C 1A 2B FB 26 F5 39")
# Every metadata field (0x0FFF), antenna byte 00 (= port 16), a data field of 16 bits,
# PC 3200 (XPC follows), XPC1 8001 (top bit: XPC2 follows), XPC2 0001, the GS1 example EPC.
TAG_ALL_METADATA = h("FF 31 22 00 00 10 00 1B 0F FF 01"
                     "02 C4 00 0E 1D 70 00 01 E2 40 01 0E 05"  # count rssi ant freq ts phase protocol
                     "00 10 AB CD 03 04 02 01"  # data bits, data, gpio, Q, LF, target
                     "00 A0 32 00 80 01 00 01 30 74 25 7B F7 19 4E 40 00 00 1A 85 09 8D"
                     "1C 1B")
TAG_RSSI_ONLY = h("FF 15 22 00 00 10 00 1B 00 02 01 CE 00 60 20 00 11 22 33 44 55 66 77 88 4B 40 D3 56")
SPARKFUN_START = h("FF 10 2F 00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 01 FF DD 2B")  # metadata 0x01FF
STOP = h("FF 03 2F 00 00 02 5E 86")


@pytest.mark.parametrize("frame", [GET_VERSION, M5E_VERSION, KEEPALIVE, REGION_REFUSED, TAG, TAG_BAD_TAG_CRC,
                                   TAG_ALL_METADATA, TAG_RSSI_ONLY, SPARKFUN_START, STOP])
def test_hand_written_frames_carry_correct_crcs(frame):
    assert bitwise_frame_crc(frame[1:-2]) == int.from_bytes(frame[-2:], "big")
    assert tm.crc16(frame[1:-2]) == tm.crc16_reference(frame[1:-2]) == int.from_bytes(frame[-2:], "big")


def test_crc_known_answers():
    assert tm.crc16(b"\x00\x03") == tm.crc16_reference(b"\x00\x03") == 0x1D0C
    assert tm.tag_crc(b"123456789") == bitwise_genibus(b"123456789") == 0xD64E  # CRC-16/GENIBUS check value
    assert bitwise_genibus(TAG[25:39]) == 0xFB25


@given(st.binary(min_size=2, max_size=300))
def test_fast_crc_equals_the_nibble_table_reference(body):
    assert tm.crc16(body) == tm.crc16_reference(body) == bitwise_frame_crc(body)


def test_m5e_version_block():
    items, rest = tm.decode(M5E_VERSION)
    assert rest == b"" and len(items) == 1
    reply = items[0]
    assert (reply.opcode, reply.status, reply.ok) == (tm.Opcode.GET_VERSION, 0, True)
    info = tm.parse_version(reply.data)
    assert info.bootloader == "07.10.23.00"
    assert info.hardware == "01.00.00.03" and info.model == "M5e Compact"
    assert info.firmware_date == "2014-10-07" and info.firmware_version == "01.07.02.09"
    assert info.protocols == ("GEN2",)


def test_keepalive_and_error_status_are_named_replies():
    (keepalive,), _ = tm.decode(KEEPALIVE)
    assert keepalive.is_keepalive and keepalive.status_name == "NO_TAGS_FOUND"
    (refused,), _ = tm.decode(REGION_REFUSED)
    assert not refused.ok and refused.status == tm.Status.INVALID_REGION and refused.status_name == "INVALID_REGION"
    assert tm.status_name(0x1234) == "STATUS_0x1234"


def test_streamed_tag_frame():
    (report,), rest = tm.decode(TAG)
    assert rest == b""
    assert report == TagReport("thingmagic", "E2801160600002054E2C1A2B", antenna=2, rssi=-48, count=3,
                               frequency_khz=915250, pc="3000", timestamp_ms=1234, phase=77)


def test_every_metadata_field_xpc_words_and_antenna_16():
    (report,), _ = tm.decode(TAG_ALL_METADATA)
    assert report.epc == "3074257BF7194E4000001A85"
    assert (report.count, report.rssi, report.antenna, report.frequency_khz) == (2, -60, 16, 925040)
    assert (report.timestamp_ms, report.phase, report.pc) == (123456, 270, "3200")
    assert report.to_dict()["epc_uri"] == "urn:epc:id:sgtin:0614141.812345.6789"


def test_missing_antenna_metadata_reports_antenna_0():
    (report,), _ = tm.decode(TAG_RSSI_ONLY)
    assert (report.epc, report.antenna, report.rssi, report.count) == ("1122334455667788", 0, -50, None)


def test_tag_crc_failure_is_an_error_not_a_report():
    items, _ = tm.decode(TAG_BAD_TAG_CRC + KEEPALIVE)
    assert items[0] == DecodeError("bad_tag_crc", 0) and items[1].is_keepalive


def test_host_commands_match_hand_written_frames():
    assert tm.build_get_version() == GET_VERSION
    assert tm.build_boot_firmware() == h("FF 00 04 1D 0B")
    assert tm.build_set_region("NA2") == h("FF 01 97 0D 4B B0")
    assert tm.build_set_protocol() == h("FF 02 93 00 05 51 7D")
    assert tm.build_set_antenna_ports([1, 2]) == h("FF 05 91 02 01 01 02 02 2D C0")
    assert tm.build_set_read_power(3000) == h("FF 02 92 0B B8 4A E1")
    assert tm.build_start_reading(0x01FF, 0x001B) == SPARKFUN_START
    assert tm.build_start_reading() == h("FF 10 2F 00 00 01 22 00 00 05 07 22 10 00 1B 03 E8 00 3F DC EB")
    assert tm.build_stop_reading() == STOP


def test_decode_host_direction():
    items, rest = tm.decode_host(b"\x00\x13" + SPARKFUN_START + STOP + h("FF 01 97 0D"))
    assert rest == h("FF 01 97 0D")  # unfinished: wait for more
    start, stop = items
    assert start.to_dict()["action"] == "start_reading" and start.to_dict()["metadata_flags"] == "0x01FF"
    assert tm.parse_start_reading(start.data).search_flags == 0x001B
    assert stop.to_dict()["action"] == "stop_reading"
    assert tm.decode_host(h("FF 01 97 0D"), final=True)[0] == [DecodeError("truncated", 0)]


def test_garbage_before_and_between_frames_is_skipped_silently():
    stream = h("00 13 37 FF FF FF F9 42") + TAG + h("FF FA 00 01") + KEEPALIVE + h("55 AA") + TAG_RSSI_ONLY + h("FF")
    items, rest = tm.decode(stream)
    assert [type(i).__name__ for i in items] == ["TagReport", "Reply", "TagReport"]
    assert rest == h("FF")


def test_len_above_f8_is_not_a_frame_start():
    items, rest = tm.decode(h("FF F9") + KEEPALIVE)
    assert len(items) == 1 and items[0].is_keepalive and rest == b""


def test_frame_split_byte_by_byte():
    stream = TAG + KEEPALIVE + M5E_VERSION + TAG_ALL_METADATA
    whole, _ = tm.decode(stream)
    got, rest = [], b""
    for byte in stream:
        items, rest = tm.decode(rest + bytes([byte]))
        got += items
    assert got == whole and rest == b"" and len(whole) == 4


def test_corrupted_byte_is_one_error_then_resync():
    damaged = bytearray(TAG)
    damaged[20] ^= 0x40
    items, _ = tm.decode(h("01 02") + bytes(damaged) + KEEPALIVE + TAG_RSSI_ONLY)
    assert items[0] == DecodeError("bad_checksum", 2)
    assert items[1].is_keepalive and items[2].epc == "1122334455667788" and len(items) == 3


def test_truncated_at_the_end_and_cut_short_by_the_next_frame():
    assert tm.decode(TAG[:20]) == ([], TAG[:20])  # more may come
    assert tm.decode(b"\x00" + TAG[:20], final=True) == ([DecodeError("truncated", 1)], b"")
    items, rest = tm.decode(TAG[:20] + KEEPALIVE)  # a reader that reset mid-frame
    assert items[0] == DecodeError("bad_length", 0) and items[1].is_keepalive and rest == b""


@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_never_raise(data, final):
    for decode in (tm.decode, tm.decode_host):
        items, rest = decode(data, final=final)
        assert all(isinstance(i, (TagReport, tm.Reply, tm.Command, DecodeError)) for i in items)
        assert data.endswith(rest) and (not final or rest == b"")


epcs = st.integers(1, 12).flatmap(lambda words: st.binary(min_size=2 * words, max_size=2 * words))
metadata = st.integers(0, tm.META_KNOWN)


@given(epcs, metadata, st.integers(1, 255), st.integers(-128, -1), st.integers(1, 16), st.integers(0, 2**24 - 1),
       st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1), st.binary(max_size=8), st.booleans())
def test_round_trip(epc, flags, count, rssi, antenna, freq, stamp, phase, data, with_xpc):
    frame = tm.encode_tag_frame(epc, flags, count=count, rssi=rssi, antenna=antenna, frequency_khz=freq,
                                timestamp_ms=stamp, phase=phase, data=data, xpc=(0x8001, 0x0002) if with_xpc else ())
    (report,), rest = tm.decode(frame)
    assert rest == b"" and report.epc == epc.hex().upper()
    assert report.antenna == (antenna if flags & tm.META_ANTENNA else 0)
    assert report.rssi == (rssi if flags & tm.META_RSSI else None)
    assert report.count == (count if flags & tm.META_COUNT else None)
    assert report.frequency_khz == (freq if flags & tm.META_FREQUENCY else None)
    assert report.timestamp_ms == (stamp if flags & tm.META_TIMESTAMP else None)
    assert report.phase == (phase if flags & tm.META_PHASE else None)


def _rebuild(frame: bytearray) -> bytes:
    """Frame CRC recomputed (bit-wise) after the test changed something inside."""
    frame[-2:] = bitwise_frame_crc(bytes(frame[1:-2])).to_bytes(2, "big")
    return bytes(frame)


@st.composite
def line_traffic(draw):
    """Garbage, good tag frames (EPC E2...), frames damaged on the line or with a bad tag CRC (EPC DEAD...)."""
    parts, good, garbage = [], [], []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["garbage", "good", "damaged", "bad_tag_crc", "keepalive"]))
        tail = draw(st.binary(min_size=2, max_size=10))
        if kind == "garbage":
            garbage.append(draw(st.binary(max_size=40)))
            parts.append(garbage[-1])
        elif kind == "keepalive":
            parts.append(KEEPALIVE)
        elif kind == "good":
            epc = b"\xe2" + tail[:-1] if len(tail) % 2 == 0 else b"\xe2" + tail
            parts.append(tm.encode_tag_frame(epc, draw(metadata)))
            good.append(epc.hex().upper())
        else:
            epc = b"\xde\xad" + tail[: len(tail) // 2 * 2]
            frame = bytearray(tm.encode_tag_frame(epc, draw(metadata)))
            if kind == "damaged":  # not the FF: a stray FF just before would undo that damage
                at = draw(st.integers(1, len(frame) - 1))
                frame[at] ^= draw(st.integers(1, 255))
            else:
                frame[-4] ^= draw(st.integers(1, 255))  # tag CRC wrong, frame CRC made right again
                frame = bytearray(_rebuild(frame))
            parts.append(bytes(frame))
    return b"".join(parts), good, garbage


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(line_traffic(), st.randoms(use_true_random=False))
def test_damage_never_yields_a_report_and_never_hides_a_good_frame(traffic, rnd):
    stream, good, garbage = traffic
    for part in garbage:  # garbage that happens to hold a valid frame by itself is not what this tests
        assume(all(isinstance(i, DecodeError) for i in tm.decode(part, final=True)[0]))
    whole, _ = tm.decode(stream, final=True)
    reported = [i.epc for i in whole if isinstance(i, TagReport)]
    assert not any(epc.startswith("DEAD") for epc in reported)
    assert reported == good
    # the same bytes arriving in random pieces decode to the same reports
    got = decode_in_pieces(tm.decode, stream, rnd)
    assert [i.epc for i in got if isinstance(i, TagReport)] == good


def test_unknown_metadata_bits_are_a_syntax_error():
    frame = bytearray(TAG)
    frame[8] = 0x10  # METADATAFLAGS 0x103F -> 0x1000 is not in the notes
    items, _ = tm.decode(_rebuild(frame))
    assert items == [DecodeError("bad_syntax", 0)]


def test_error_offsets_count_from_the_buffer_start():
    rng = random.Random(7)
    garbage = bytes(rng.choice(range(0x00, 0xFF)) for _ in range(33))  # no FF inside
    items, _ = tm.decode(garbage + TAG[:-1] + b"\x00" + KEEPALIVE)
    assert items[0] == DecodeError("bad_checksum", 33) and items[1].is_keepalive
