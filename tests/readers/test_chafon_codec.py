"""Chafon codec against hand-written frames, round trips and arbitrary bytes.

The hex literals were laid out by hand, field by field, from shared/protocols/README.md
section 4 (the host frames are the notes' own examples); their CRCs are checked here by a
bit-wise CRC-16/MCRF4XX that shares nothing with the codec's table trick. Two layouts come
from real readers rather than the notes (captures published with open-source drivers):
UHFReader18 records without ANT and RSSI, and a 288 ending an empty round with status
0x01 and NUM 0 instead of 0xFB.
"""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.readers import chafon
from agent.readers.report import DecodeError, TagReport
from tests.helpers import decode_in_pieces


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def bitwise_mcrf4xx(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


GET_INFO = h("04 00 21 D9 6A")  # the notes' known answer
INV_BARE = h("04 00 01 DB 4B")
INV_BARE_BROADCAST = h("04 FF 01 1B B4")
INV_288 = h("09 00 01 04 00 00 80 0B AB CB")  # Q 4, session 0, no mask, antenna 1, scan time 1.1 s
# status 03 (more follow), ANT 04 (antenna 3), NUM 2: 12-byte EPC RSSI 4E, 8-byte EPC RSSI 5A
MORE_2 = h("1F 00 01 03 04 02 0C E2 80 11 60 60 00 02 05 4E 2C 1A 2B 4E 08 11 22 33 44 55 66 77 88 5A DE CD")
# status 01 (round complete), ANT 01, NUM 1: the GS1 example EPC, RSSI 50
DONE_1 = h("15 00 01 01 01 01 0C 30 74 25 7B F7 19 4E 40 00 00 1A 85 50 13 71")
EMPTY_288 = h("07 00 01 01 02 00 76 61")  # a real 288: round over, ANT 02, NUM 0
NO_TAG = h("05 00 01 FB F2 3D")  # the notes' no-tag status
TIMEOUT_1 = h("0D 00 01 02 08 01 04 DE AD BE EF 61 4C 35")  # status 02, ANT 08 (antenna 4), 4-byte EPC
FULL_1 = h("0D 00 01 04 01 01 04 0B AD CA FE 62 58 B9")  # status 04 (buffer full)
UHF18 = h("13 00 01 03 01 0C 30 74 25 7B F7 19 4E 40 00 00 1A 85 C7 12")  # STATUS NUM {EPCLEN EPC}: no ANT, RSSI
INFO = h("11 00 21 00 02 1A 0C 02 4E 00 1E 0A 01 00 00 00 5F FC")  # v2.26, type 0C, Gen2, EU band, 30 dBm
INFO18 = h("0D 00 21 00 03 0E 09 03 4E 00 1A 0A 7C DE")  # UHFReader18 v3.14: 8 data bytes
ERRORS = {0xF9: h("05 00 01 F9 E0 1E"), 0xFA: h("05 00 01 FA 7B 2C"), 0xFC: h("05 00 01 FC 4D 49"),
          0xFD: h("05 00 01 FD C4 58"), 0xFE: h("05 00 01 FE 5F 6A"), 0xFF: h("05 00 01 FF D6 7B")}
HAND_WRITTEN = [GET_INFO, INV_BARE, INV_BARE_BROADCAST, INV_288, MORE_2, DONE_1, EMPTY_288, NO_TAG, TIMEOUT_1, FULL_1,
                UHF18, INFO, INFO18, *ERRORS.values()]
READER_FRAMES = [MORE_2, DONE_1, EMPTY_288, NO_TAG, TIMEOUT_1, FULL_1, UHF18, INFO, INFO18, *ERRORS.values()]


@pytest.mark.parametrize("frame", HAND_WRITTEN)
def test_hand_written_frames_carry_correct_crcs(frame):
    assert frame[0] == len(frame) - 1
    assert bitwise_mcrf4xx(frame[:-2]) == int.from_bytes(frame[-2:], "little") == chafon.crc16(frame[:-2])


@given(st.binary(max_size=300))
def test_table_crc_equals_bitwise(data):
    assert chafon.crc16(data) == bitwise_mcrf4xx(data)


def test_multi_frame_round_with_antenna_masks():
    items, rest = chafon.decode(MORE_2 + DONE_1)
    assert rest == b""
    a, b, more, c, done = items
    assert a == TagReport("chafon", "E2801160600002054E2C1A2B", antenna=3, rssi=-51)
    assert (b.epc, b.antenna, b.rssi) == ("1122334455667788", 3, -39)
    assert more.status == chafon.Status.MORE_DATA and not more.round_done
    assert (c.epc, c.antenna, c.rssi) == ("3074257BF7194E4000001A85", 1, -49)
    assert c.to_dict()["epc_uri"] == "urn:epc:id:sgtin:0614141.812345.6789"
    assert done.round_done and done.status_name == "INVENTORY_COMPLETE"


@pytest.mark.parametrize("frame,status,antenna", [(TIMEOUT_1, 0x02, 4), (FULL_1, 0x04, 1)])
def test_other_round_statuses_carry_tags(frame, status, antenna):
    tag, reply = chafon.decode(frame)[0]
    assert tag.antenna == antenna and len(tag.epc) == 8 and reply.status == status and reply.round_done


def test_empty_rounds_both_shapes():
    (real,), _ = chafon.decode(EMPTY_288)  # reader wins: status 01 with NUM 0
    assert real.round_done and real.status == chafon.Status.INVENTORY_COMPLETE
    (notes,), _ = chafon.decode(NO_TAG)
    assert notes.round_done and notes.status_name == "NO_TAG"


def test_uhfreader18_records_have_no_antenna_or_rssi():
    tag, reply = chafon.decode(UHF18)[0]  # reader wins: the notes' layout has ANT and RSSI
    assert tag == TagReport("chafon", "3074257BF7194E4000001A85", antenna=1) and reply.status == 3


@pytest.mark.parametrize("status,name", [(0xF9, "COMMAND_FAILED"), (0xFA, "OPERATION_FAILED"), (0xFC, "TAG_ERROR"),
                                         (0xFD, "LENGTH_ERROR"), (0xFE, "ILLEGAL_COMMAND"), (0xFF, "PARAMETER_ERROR")])
def test_every_error_status(status, name):
    (reply,), _ = chafon.decode(ERRORS[status])
    assert reply.status == status and reply.status_name == name and reply.round_done and not reply.ok


def test_reader_information():
    (reply,), _ = chafon.decode(INFO)
    info = chafon.parse_reader_info(reply)
    assert (info.firmware, info.model, info.power_dbm, info.scan_time_ms, info.band) == (
        "2.26", "UHFReader288M", 30, 1000, "EU")
    assert info.protocols == ("EPC Gen2",) and reply.to_dict()["info"]["type"] == "0x0C"
    (reply18,), _ = chafon.decode(INFO18)
    assert chafon.parse_reader_info(reply18).model == "UHFReader18"


def test_host_commands_match_hand_written_frames():
    assert chafon.build_get_reader_info(0) == GET_INFO
    assert chafon.build_inventory(None, address=0) == INV_BARE
    assert chafon.build_inventory(None) == INV_BARE_BROADCAST
    assert chafon.build_inventory(1, q=4, session=0, scan_time_100ms=0x0B, address=0) == INV_288
    items, _ = chafon.decode_host(INV_288 + GET_INFO)
    assert items[0].to_dict()["antenna"] == 1 and items[0].to_dict()["scan_time_ms"] == 1100
    assert items[1].command == chafon.Cmd.GET_READER_INFO


def test_resync_after_garbage_is_silent():
    stream = h("AA 55 C3 3C FF") + MORE_2 + h("42") + DONE_1 + h("06 66 99") + NO_TAG
    items, rest = chafon.decode(stream, final=True)
    assert [type(i).__name__ for i in items] == ["TagReport", "TagReport", "Reply", "TagReport", "Reply", "Reply"]
    assert rest == b""


def test_damaged_frame_is_one_error_then_resync():
    damaged = bytearray(MORE_2)
    damaged[12] ^= 0x20
    items, _ = chafon.decode(h("55") + bytes(damaged) + DONE_1)
    assert items[0] == DecodeError("bad_checksum", 1)
    assert [type(i).__name__ for i in items[1:]] == ["TagReport", "Reply"]


def test_crc_right_but_records_wrong_is_bad_length():
    body = h("0D 00 01 01 01 02 04 11 22 33 44 55")  # NUM 2 but one record
    frame = body + chafon.crc16(body).to_bytes(2, "little")
    assert chafon.decode(frame)[0] == [DecodeError("bad_length", 0)]


def test_unfinished_frame_waits_until_final_unless_a_frame_cuts_it_short():
    assert chafon.decode(MORE_2[:10]) == ([], MORE_2[:10])
    assert chafon.decode(MORE_2[:10], final=True) == ([DecodeError("truncated", 0)], b"")
    items, rest = chafon.decode(MORE_2[:10] + NO_TAG)  # a reader that reset mid-frame: reported at once
    assert items == [DecodeError("bad_length", 0), chafon.decode(NO_TAG)[0][0]] and rest == b""
    assert chafon.decode(MORE_2[:10] + NO_TAG, final=True) == (items, b"")


def test_split_byte_by_byte_equals_whole():
    stream = b"".join(READER_FRAMES)
    whole, _ = chafon.decode(stream)
    got, rest = [], b""
    for byte in stream:
        items, rest = chafon.decode(rest + bytes([byte]))
        got += items
    assert got == whole and rest == b""


# --- properties ----------------------------------------------------------------------------
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_never_raise(data, final):
    for decode in (chafon.decode, chafon.decode_host):
        items, rest = decode(data, final=final)
        assert data.endswith(rest) and (not final or rest == b"")
        assert all(isinstance(i, (TagReport, DecodeError, chafon.Reply, chafon.Command)) for i in items)


records = st.lists(st.tuples(st.integers(1, 31).flatmap(lambda w: st.binary(min_size=2 * w, max_size=2 * w)),
                             st.integers(-129, 126)), max_size=8)


@given(records, st.sampled_from([1, 2, 3, 4, None]), st.sampled_from([0x01, 0x02, 0x03, 0x04]), st.integers(0, 255))
def test_round_trip(recs, antenna, status, address):
    assume(sum(len(e) + 2 for e, _ in recs) + 7 <= 255)
    frame = chafon.encode_inventory(recs, status, antenna, address)
    items, rest = chafon.decode(frame)
    *tags, reply = items
    assert rest == b"" and reply.status == status and reply.address == address
    assert [t.epc for t in tags] == [e.hex().upper() for e, _ in recs]
    assert all(t.antenna == (antenna or 1) for t in tags)
    assert [t.rssi for t in tags] == [r if antenna else None for _, r in recs]


def ambiguous(garbage: bytes, stream: bytes) -> bool:
    """A candidate starting in the garbage, running into what follows, with a right CRC."""
    for i in range(len(garbage)):
        end = i + 1 + stream[i]
        if stream[i] >= 5 and len(garbage) < end <= len(stream) and bitwise_mcrf4xx(stream[i:end]) == 0:
            return True
    return False


@st.composite
def line_traffic(draw):
    parts, good = [], []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["garbage", "good", "damaged", "empty"]))
        recs = draw(st.lists(st.binary(min_size=2, max_size=14).map(lambda b: b[:len(b) // 2 * 2]), min_size=1,
                             max_size=4))
        if kind == "garbage":
            parts.append(draw(st.binary(max_size=40)))
        elif kind == "empty":
            parts.append(EMPTY_288)
        elif kind == "good":
            epcs = [b"\xe2\x80" + r for r in recs]
            parts.append(chafon.encode_inventory([(e, -50) for e in epcs], antenna=draw(st.integers(1, 4))))
            good += [e.hex().upper() for e in epcs]
        else:
            frame = bytearray(chafon.encode_inventory([(b"\xde\xad" + r, -50) for r in recs]))
            frame[draw(st.integers(0, len(frame) - 1))] ^= draw(st.integers(1, 255))
            parts.append(bytes(frame))
    return parts, good


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(line_traffic(), st.randoms(use_true_random=False))
def test_damage_never_yields_a_report_and_never_hides_a_good_frame(traffic, rnd):
    parts, good = traffic
    stream = b"".join(parts)
    pos = 0
    for part in parts:
        assume(not ambiguous(part, stream[pos:]))
        pos += len(part)
    whole, _ = chafon.decode(stream, final=True)
    reported = [i.epc for i in whole if type(i) is TagReport]
    assert not any(epc.startswith("DEAD") for epc in reported)
    assert reported == good
    got = decode_in_pieces(chafon.decode, stream, rnd)
    assert [i.epc for i in got if type(i) is TagReport] == good
