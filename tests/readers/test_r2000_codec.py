"""R2000 (0xA0) codec against hand-written frames, round trips and arbitrary bytes.

The hex literals were laid out by hand, field by field, from shared/protocols/README.md
section 2 (the first ones are the notes' own session); their checksums are checked here
by a plain loop that shares nothing with the codec, and the tag CRC of buffer frames by a
bit-wise CRC-16/GENIBUS.
"""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.readers import r2000
from agent.readers.report import DecodeError, TagReport
from tests.helpers import decode_in_pieces


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def loop_checksum(body: bytes) -> int:
    total = 0
    for byte in body:
        total = (total + byte) % 256
    return (256 - total) % 256


def bitwise_genibus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


GET_FW = h("A0 03 01 72 EA")  # the notes' known answer
FW_1_9 = h("A0 05 01 72 01 09 DE")
SET_ANT_0 = h("A0 04 01 74 00 E7")
ANT_OK = h("A0 04 01 74 10 D7")
INVENTORY_1 = h("A0 04 01 89 01 D1")
# FREQANT 04 (index 1 = 865.5 MHz, antenna 0), PC 3000, 12-byte EPC, RSSI 45 (-60 dBm)
TAG = h("A0 13 01 89 04 30 00 E2 00 30 16 66 13 01 21 15 50 74 EF 45 BF")
# FREQANT 1E (index 7 = 902.0 MHz, antenna 2 -> port 3), PC 2000, 8-byte EPC, RSSI 5A (-39 dBm)
TAG_ANT3 = h("A0 0F 01 89 1E 20 00 11 22 33 44 55 66 77 88 5A CB")
# as TAG_ANT3 but RSSI DA: bit 7 set -> antenna 3 + 4 = 7 on an 8-port reader, RSSI 5A
TAG_ANT7 = h("A0 0F 01 89 1E 20 00 11 22 33 44 55 66 77 88 DA 4B")
# 0x8B with two phase bytes 01 2C after RSSI
TAG_PHASE = h("A0 11 01 8B 09 20 00 11 22 33 44 55 66 77 88 50 01 2C B9")
# end of round: ANT 1 (port 2), READRATE 0x0032, TOTALREAD 0x00000005
ROUND_END = h("A0 0A 01 89 01 00 32 00 00 00 05 94")
# 0x8A end: TOTALREAD(3) 000007, DURATION(4) 00 00 01 F4
FAST_END = h("A0 0A 01 8A 00 00 07 00 00 01 F4 CF")
ERR_ANT_MISSING = h("A0 04 01 89 22 B0")  # the notes' error frame
ERR_ANT_MISSING_REAL = h("A0 05 01 89 02 22 AD")  # real readers name the antenna: ANT 2 (port 3)
POWER_4 = h("A0 07 01 77 1E 1E 1E 1E 69")  # get output power, four ports at 30 dBm
# inventory buffer (0x91): COUNT 0001, DATALEN 10, PC 3000, EPC, tag CRC AA F9, RSSI 50, FREQANT 0D, INVCOUNT 03
BUFFER_TAG = h("A0 19 01 91 00 01 10 30 00 30 74 25 7B F7 19 4E 40 00 00 1A 85 AA F9 50 0D 03 F0")
HAND_WRITTEN = [GET_FW, FW_1_9, SET_ANT_0, ANT_OK, INVENTORY_1, TAG, TAG_ANT3, TAG_ANT7, TAG_PHASE, ROUND_END,
                FAST_END, ERR_ANT_MISSING, ERR_ANT_MISSING_REAL, POWER_4, BUFFER_TAG]


def _fix(frame: bytes) -> bytes:
    """The frame with its checksum recomputed after a test changed something inside."""
    return frame[:-1] + bytes((loop_checksum(frame[:-1]),))


@pytest.mark.parametrize("frame", HAND_WRITTEN)
def test_hand_written_frames_carry_correct_checksums(frame):
    assert frame[1] == len(frame) - 2
    assert loop_checksum(frame[:-1]) == frame[-1] == r2000.checksum(frame[:-1])


def test_the_notes_session():
    items, rest = r2000.decode(FW_1_9 + ANT_OK + TAG)
    assert rest == b""
    fw, ok, tag = items
    assert r2000.firmware_version(fw) == "1.9" and fw.address == 1
    assert ok.ok and ok.command == r2000.Cmd.SET_WORK_ANTENNA
    assert tag == TagReport("r2000", "E200301666130121155074EF", antenna=1, rssi=-60, frequency_khz=865500, pc="3000")


def test_antenna_frequency_and_8_port_flag():
    (a3,), _ = r2000.decode(TAG_ANT3)
    assert (a3.epc, a3.antenna, a3.rssi, a3.frequency_khz, a3.pc) == ("1122334455667788", 3, -39, 902000, "2000")
    (a7,), _ = r2000.decode(TAG_ANT7)  # decision: RSSI bit 7 is the 8-port antenna group
    assert (a7.antenna, a7.rssi) == (7, -39)


def test_phase_bytes_after_rssi():
    (tag,), _ = r2000.decode(TAG_PHASE)
    assert (tag.antenna, tag.frequency_khz, tag.rssi, tag.phase) == (2, 866000, -49, 300)


def test_end_of_round_frames():
    (end,), _ = r2000.decode(ROUND_END)
    assert end == r2000.RoundEnd(1, 0x89, 2, 50, 5)
    (fast,), _ = r2000.decode(FAST_END)
    assert (fast.total_reads, fast.duration_ms, fast.antenna) == (7, 500, None)


def test_inventory_errors_both_shapes():
    (notes,), _ = r2000.decode(ERR_ANT_MISSING)
    assert notes == r2000.InventoryError(1, 0x89, r2000.Result.ANTENNA_MISSING, None)
    (real,), _ = r2000.decode(ERR_ANT_MISSING_REAL)  # the reader wins over the notes: ANT CODE, two data bytes
    assert real == r2000.InventoryError(1, 0x89, 0x22, 3) and real.to_dict()["result"] == "ANTENNA_MISSING"


@pytest.mark.parametrize("code,name", [(0x10, "SUCCESS"), (0x11, "FAIL"), (0x22, "ANTENNA_MISSING"), (0x36, "NO_TAG"),
                                       (0x38, "BUFFER_EMPTY"), (0x41, "INVALID_PARAMETER"), (0x99, "RESULT_0x99")])
def test_every_result_code(code, name):
    frame = _fix(bytes((0xA0, 0x04, 0x01, 0x74, code, 0)))
    (reply,), _ = r2000.decode(frame)
    assert reply.code == code and reply.ok == (code == 0x10) and reply.to_dict()["result"] == name
    (error,), _ = r2000.decode(_fix(bytes((0xA0, 0x04, 0x01, 0x89, code, 0))))
    assert type(error) is r2000.InventoryError and error.code == code


def test_buffer_tag_with_its_crc_checked():
    assert bitwise_genibus(BUFFER_TAG[7:21]) == 0xAAF9
    (tag,), _ = r2000.decode(BUFFER_TAG)
    assert (tag.epc, tag.antenna, tag.rssi, tag.count, tag.frequency_khz) == ("3074257BF7194E4000001A85", 2, -49, 3,
                                                                              866500)
    assert tag.to_dict()["epc_uri"] == "urn:epc:id:sgtin:0614141.812345.6789"
    damaged = bytearray(BUFFER_TAG)
    damaged[21] ^= 0x01  # tag CRC wrong, frame checksum made right again
    assert r2000.decode(_fix(bytes(damaged)))[0] == [DecodeError("bad_tag_crc", 0)]


def test_host_commands_match_hand_written_frames():
    assert r2000.build_get_firmware_version(1) == GET_FW
    assert r2000.build_set_work_antenna(1, 1) == SET_ANT_0
    assert r2000.build_real_time_inventory(1, 1) == INVENTORY_1
    assert r2000.build_get_firmware_version() == h("A0 03 FF 72 EC")  # broadcast
    (cmd,), _ = r2000.decode_host(SET_ANT_0)
    assert cmd.to_dict()["antenna"] == 1 and cmd.to_dict()["command"] == "set_work_antenna"


def test_resync_after_garbage():
    # A0 01: too short to be a frame; A0 FF: a frame far too long, holding the TAG; A0 02: too short
    stream = h("00 A0 01 A0 FF 13") + TAG + h("12 34") + ROUND_END + h("A0 02 33") + FW_1_9
    for final in (False, True):  # the one resync rule: a frame cut short is reported at once, final or not
        items, rest = r2000.decode(stream, final=final)
        assert items[0] == DecodeError("bad_length", 3)  # cut short: a valid frame starts inside it
        assert [type(i).__name__ for i in items[1:]] == ["TagReport", "RoundEnd", "Reply"] and rest == b""


def test_a_stray_a0_right_before_a_frame():
    items, _ = r2000.decode(h("A0") + TAG + ROUND_END, final=True)  # A0 A0 ...: LEN 0xA0 runs past the end
    assert items[0] == DecodeError("bad_length", 0) and items[1].epc == "E200301666130121155074EF"
    assert type(items[2]) is r2000.RoundEnd and len(items) == 3


def test_checksum_error_then_the_next_frame():
    damaged = bytearray(TAG)
    damaged[10] ^= 0x08
    items, _ = r2000.decode(bytes(damaged) + TAG_ANT3)
    assert items[0] == DecodeError("bad_checksum", 0) and items[1].antenna == 3 and len(items) == 2


def test_length_that_disagrees_with_the_pc_word():
    frame = bytearray(TAG)
    frame[5] = 0x28  # PC 2800: 5 words, but the frame carries 6
    assert r2000.decode(_fix(bytes(frame)))[0] == [DecodeError("bad_length", 0)]
    longer = h("A0 11") + TAG_ANT3[2:-1] + h("01 2C 00")  # 0x89 two bytes too long: phase is 0x8B's
    assert r2000.decode(_fix(longer))[0] == [DecodeError("bad_length", 0)]
    (with_phase,), _ = r2000.decode(_fix(longer[:3] + b"\x8b" + longer[4:]))
    assert with_phase.phase == 300 and with_phase.antenna == 3


def test_unfinished_frame_waits_until_final_unless_a_frame_cuts_it_short():
    assert r2000.decode(TAG[:9]) == ([], TAG[:9])
    assert r2000.decode(TAG[:9], final=True) == ([DecodeError("truncated", 0)], b"")
    items, rest = r2000.decode(TAG[:5] + ROUND_END)  # cut short by a reset: reported at once, as in every dialect
    assert items == [DecodeError("bad_length", 0), r2000.RoundEnd(1, 0x89, 2, 50, 5)] and rest == b""
    assert r2000.decode(TAG[:5] + ROUND_END, final=True) == (items, b"")


def test_a_frame_inside_a_cut_off_one_must_answer_a_known_command():
    stray = _fix(h("A0 04 01 6F 10 00"))  # checksum right, but 0x6F is no command: garbage that summed to 0
    assert r2000.decode(TAG[:5] + stray) == ([], TAG[:5] + stray)  # so the TAG may still be arriving


def test_split_byte_by_byte_equals_whole():
    stream = b"".join(HAND_WRITTEN)
    whole, _ = r2000.decode(stream)
    got, rest = [], b""
    for byte in stream:
        items, rest = r2000.decode(rest + bytes([byte]))
        got += items
    assert got == whole and rest == b"" and len(whole) == len(HAND_WRITTEN)


# --- properties ----------------------------------------------------------------------------
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_never_raise(data, final):
    for decode in (r2000.decode, r2000.decode_host):
        items, rest = decode(data, final=final)
        assert data.endswith(rest) and (not final or rest == b"")
        for item in items:
            assert isinstance(item, (TagReport, DecodeError, r2000.Reply, r2000.RoundEnd, r2000.InventoryError,
                                     r2000.Command))


epcs = st.integers(1, 31).flatmap(lambda words: st.binary(min_size=2 * words, max_size=2 * words))


@given(epcs, st.integers(1, 8), st.integers(-129, -2), st.integers(0, 63), st.one_of(st.none(), st.integers(0, 65535)),
       st.integers(0, 254))
def test_round_trip(epc, antenna, rssi, freq_index, phase, address):
    cmd = r2000.Cmd.SESSION_TARGET_INVENTORY if phase is not None else r2000.Cmd.REAL_TIME_INVENTORY
    frame = r2000.encode_tag(epc, antenna, rssi, freq_index, phase=phase, cmd=cmd, address=address)
    (tag,), rest = r2000.decode(frame)
    assert rest == b"" and tag.epc == epc.hex().upper() and tag.antenna == antenna and tag.rssi == rssi
    assert tag.frequency_khz == r2000.frequency_khz(freq_index) and tag.phase == phase


def ambiguous(garbage: bytes, stream: bytes) -> bool:
    """Garbage whose last A0 candidates run into the following bytes and happen to sum to 0:
    an 8-bit checksum cannot tell those from a frame, so no decoder could."""
    for i, byte in enumerate(garbage):
        if byte == 0xA0 and i + 1 < len(stream):
            end = i + 2 + stream[i + 1]
            if stream[i + 1] >= 3 and end > len(garbage) and end <= len(stream) and sum(stream[i:end]) % 256 == 0:
                return True
    return False


@st.composite
def line_traffic(draw):
    """Garbage, good tag frames (EPC E2...), frames with one byte damaged (EPC DEAD...), round ends."""
    parts, good = [], []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["garbage", "good", "damaged", "end"]))
        epc = draw(epcs)
        if kind == "garbage":
            parts.append(draw(st.binary(max_size=40)))
        elif kind == "end":
            parts.append(ROUND_END)
        elif kind == "good":
            parts.append(r2000.encode_tag(b"\xe2" + epc[1:], draw(st.integers(1, 4))))
            good.append((b"\xe2" + epc[1:]).hex().upper())
        else:
            frame = bytearray(r2000.encode_tag(b"\xde\xad" + epc[2:] if len(epc) > 2 else b"\xde\xad", 1))
            at = draw(st.integers(1, len(frame) - 1))  # not the A0: a damaged head is just garbage
            frame[at] ^= draw(st.integers(1, 255))
            parts.append(bytes(frame))
    return parts, good


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(line_traffic(), st.randoms(use_true_random=False))
def test_damage_never_yields_a_report_and_never_hides_a_good_frame(traffic, rnd):
    parts, good = traffic
    stream = b"".join(parts)
    pos = 0
    for part in parts:  # rule out the checksum coincidences no 8-bit sum can see
        assume(not ambiguous(part, stream[pos:]))
        pos += len(part)
    whole, _ = r2000.decode(stream, final=True)
    reported = [i.epc for i in whole if type(i) is TagReport]
    assert not any(epc.startswith("DEAD") for epc in reported)
    assert reported == good
    got = decode_in_pieces(r2000.decode, stream, rnd)
    assert [i.epc for i in got if type(i) is TagReport] == good
