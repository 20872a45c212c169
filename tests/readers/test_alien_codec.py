"""Alien text codec against hand-written lines, round trips and arbitrary bytes.

The text literals follow shared/protocols/README.md section 3 and Alien's published
Reader Interface Guide examples; none comes from our encoder. There is no checksum on this
link: what stands in for one is DRIVER_FORMAT (every field twice), and the properties
below check that one flipped bit in such a line never becomes a read, and that junk glued
in front of a line never costs the read nor changes it.
"""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.readers import alien
from agent.readers.report import DecodeError, TagReport

END, NO_TAGS = alien.Message("end"), alien.Message("no_tags")
TEXT = b"Tag:E200 3411 B802 0115 1612 6544, Disc:2008/10/28 10:49:35, Last:2008/10/28 10:49:35, Count:1, Ant:0, Proto:2"
TEXT_MS = b"Tag:3074 257B F719 4E40 0000 1A85, Disc:2024/05/01 08:00:00.125, Last:2024/05/01 08:00:01.500, Count:7, Ant:3, Proto:2"
TEXT_OLD = b"Tag:1115 F268 81C3 C012 0000 1E45, CRC:2483, Disc:2003/01/21 09:00:51, Count:1, Ant:0"  # older model
TERSE = b"8000 8004 0000 003B,4,0"
DRIVER = b"E2801160600002054E2C1A2B,1,-48.5,3|E2801160600002054E2C1A2B,1,-48.5,3"
TAG_LIST_REPLY = DRIVER + b"\r\n" + TERSE + b"\r\n\x00"


def decode(data: bytes, final: bool = False):
    return alien.decode(data, final)


def test_text_line():
    (tag,), rest = decode(TEXT + b"\r\n")
    assert rest == b"" and tag == TagReport("alien", "E2003411B802011516126544", antenna=1, count=1)
    (ms,), _ = decode(TEXT_MS + b"\r\n")
    assert (ms.epc, ms.antenna, ms.count) == ("3074257BF7194E4000001A85", 4, 7)
    assert ms.to_dict()["epc_uri"] == "urn:epc:id:sgtin:0614141.812345.6789"


def test_text_line_of_an_older_reader_with_its_crc_field():
    (tag,), _ = decode(TEXT_OLD + b"\r\n")  # reader wins: CRC:xxxx is not in the notes; accepted, ignored
    assert (tag.epc, tag.antenna, tag.count) == ("1115F26881C3C0120000" "1E45", 1, 1)


def test_terse_line():
    (tag,), _ = decode(TERSE + b"\r\n")
    assert tag == TagReport("alien", "800080040000003B", antenna=1, count=4)


def test_driver_format_line():
    (tag,), _ = decode(DRIVER + b"\r\n")
    assert tag == TagReport("alien", "E2801160600002054E2C1A2B", antenna=2, rssi=-48, count=3)


@pytest.mark.parametrize("fmt,line,expected", [
    ("%k;${MSEC1};${MSEC2};%a;%m;%r", b"E2801160600002054E2C1A2B;1700000000000;1700000000250;2;-61.2;5",
     dict(antenna=3, rssi=-61, count=5, timestamp_ms=1700000000250)),
    ("Tag %k, read %r times from antenna %a", b"Tag 8000000000000808, read 3 times from antenna 0",
     dict(antenna=1, count=3)),
    ("Here is a tag %i", b"Here is a tag 102F ED3D 0303 0001", dict(antenna=0)),
    ("%k ${FREQ} ${PCWORD} ${TX}", b"E2801160600002054E2C1A2B 902.750 3000 1", dict(antenna=2, frequency_khz=902750,
                                                                                    pc="3000")),
])
def test_other_custom_formats(fmt, line, expected):
    (tag,), _ = alien.make_decoder(fmt)(line + b"\r\n")
    for key, value in expected.items():
        assert getattr(tag, key) == value, key


def test_custom_format_without_a_tag_id_is_refused():
    with pytest.raises(ValueError, match="no tag ID token"):
        alien.make_decoder("%a %r")


def test_replies_errors_prompts_and_the_end_of_a_reply():
    data = (b"TagListFormat = Custom\r\n\x00TagListAntennaCombine = OFF\r\n\x00"
            b"Error 1: Command not understood.\r\n\x00(No Tags)\r\n\x00")
    items, rest = decode(data)
    assert rest == b""
    assert items == [alien.Message("value", "TagListFormat", "Custom"), END,
                     alien.Message("value", "TagListAntennaCombine", "OFF"), END,  # the reader's spelling
                     alien.Message("error", "1", "Command not understood."), END, NO_TAGS, END]


def test_interactive_session_with_prompts_and_echo():
    data = b"Alien>get TagList\r\n" + TEXT + b"\r\n\x00\r\nAlien>"
    items, rest = decode(data)
    assert items == [alien.PROMPT_ALIEN, decode(TEXT + b"\n")[0][0], END, alien.PROMPT_ALIEN] and rest == b""


def test_boot_prompts():
    items, rest = decode(b"\r\nAlien Technology reader starting up\r\nBoot>\r\nBoot>")
    assert items == [alien.PROMPT_BOOT, alien.PROMPT_BOOT] and rest == b""


def test_auto_notification_message():
    data = (b"#Alien RFID Reader Auto Notification Message\r\n#ReaderName: Gate 3\r\n#Time: 2024/05/01 08:00:00\r\n"
            b"#Reason: TAGS ADDED\r\n" + TEXT + b"\r\n" + TEXT_MS + b"\r\n#End of Notification Message\r\n\x00")
    items, _ = decode(data)
    kinds = [i.kind if type(i) is alien.Message else "tag" for i in items]
    assert kinds == ["notify_begin", "notify_header", "notify_header", "notify_header", "tag", "tag", "notify_end",
                     "end"]
    assert items[1] == alien.Message("notify_header", "ReaderName", "Gate 3")


def test_line_endings_lf_only_and_split_anywhere():
    data = TAG_LIST_REPLY + TEXT + b"\n" + TERSE + b"\r"
    whole, rest = decode(data)
    assert rest == b"" and len(whole) == 5
    got, rest = [], b""
    for byte in data:
        items, rest = decode(rest + bytes([byte]))
        got += items
    assert got == whole


def test_damaged_lines_are_errors_not_reads():
    one_copy_changed = DRIVER.replace(b",3|", b",2|")
    items, _ = decode(b"Tag:E200 34X1 B802, Count:1, Ant:0\r\n" + one_copy_changed + b"\r\nE2801160600002\r\n")
    assert items == [DecodeError("bad_syntax", 0), DecodeError("bad_syntax", 36),
                     DecodeError("bad_syntax", 36 + len(DRIVER) + 2)]


def test_text_without_hex_is_skipped_silently():
    assert decode(b"Alien Technology reader starting up\r\nget TagList\r\n\x1b[2J garbage ~~\r\n") == ([], b"")


def test_unfinished_line_waits_then_is_truncated():
    assert decode(DRIVER[:30]) == ([], DRIVER[:30])
    assert decode(b"\x00" + DRIVER[:30], final=True) == ([END, DecodeError("truncated", 1)], b"")
    assert decode(b"blah", final=True) == ([], b"")  # not a tag line: nothing to report


def test_endless_line_is_bad_length():
    items, rest = decode(b"A" * (alien.MAX_LINE + 1))
    assert items == [DecodeError("bad_length", 0)] and rest == b""


def test_host_commands_with_and_without_the_prefix():
    data = b"\x01get TagList\r\nset TagListFormat = Custom\r\n\x01clear TagList\r\n\x01\r\n\x01set Anten"
    items, rest = alien.decode_host(data)
    assert rest == b"\x01set Anten"
    assert [(c.verb, c.name, c.value, c.quiet) for c in items] == [
        ("get", "TagList", None, True), ("set", "TagListFormat", "Custom", False), ("", "", None, True)]
    assert items[2].text == "clear TagList"
    assert alien.decode_host(rest, final=True)[0] == [DecodeError("truncated", 0)]
    assert alien.build_set("AutoMode", "On") == b"\x01set AutoMode = On\r\n"


def test_encoders_round_trip_through_the_decoder():
    line = alien.encode_custom_line(alien.DRIVER_FORMAT, "3074257BF7194E4000001A85", 4, -55.25, 12)
    (tag,), _ = decode(line.encode() + b"\r\n")
    assert (tag.epc, tag.antenna, tag.rssi, tag.count) == ("3074257BF7194E4000001A85", 4, -55, 12)
    for text in (alien.encode_text_line("E2801160600002054E2C1A2B", 2, 5), alien.encode_terse_line("E280116060000205", 3)):
        (tag,), _ = decode(text.encode() + b"\r\n")
        assert tag.epc.startswith("E280") and tag.antenna in (2, 3)


# --- properties ----------------------------------------------------------------------------
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_never_raise(data, final):
    items, rest = alien.decode(data, final)
    assert data.endswith(rest) and (not final or rest == b"")
    assert all(isinstance(i, (TagReport, DecodeError, alien.Message)) for i in items)
    items, rest = alien.decode_host(data, final)
    assert all(isinstance(i, (alien.HostCommand, DecodeError)) for i in items)


epc_hex = st.integers(2, 31).flatmap(lambda w: st.binary(min_size=2 * w, max_size=2 * w)).map(lambda b: b.hex().upper())
driver_lines = st.builds(lambda epc, ant, rssi, count: (epc, alien.encode_custom_line(
    alien.DRIVER_FORMAT, epc, ant, rssi / 10, count).encode()), epc_hex, st.integers(1, 4), st.integers(-990, -1),
    st.integers(1, 100000))


@given(driver_lines, st.data())
def test_one_flipped_bit_never_becomes_a_read(case, data):
    _, line = case
    at = data.draw(st.integers(0, len(line) - 1))
    damaged = bytearray(line)
    damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    items, _ = alien.decode(bytes(damaged) + b"\r\n", final=True)
    assert not [i for i in items if type(i) is TagReport]
    assert any(type(i) is DecodeError for i in items)  # and counted: an EPC of 2+ words keeps a hex run


junk = st.binary(max_size=40).map(lambda b: b.translate(None, b"\r\n\x00"))


@given(driver_lines, junk)
def test_junk_glued_in_front_costs_nothing(case, prefix):
    epc, line = case
    items, _ = alien.decode(prefix + line + b"\r\n")  # the junk may hold a prompt: that is real
    (tag,) = [i for i in items if type(i) is TagReport]
    assert tag == alien.decode(line + b"\r\n")[0][0] and tag.epc == epc


@given(st.binary(max_size=60), st.lists(driver_lines, min_size=1, max_size=5))
def test_garbage_never_hides_the_lines_after_it(garbage, cases):
    assume(not [i for i in alien.decode(garbage, final=True)[0] if type(i) is TagReport])
    stream = garbage + b"".join(line + b"\r\n" for _, line in cases)
    reported = [i.epc for i in alien.decode(stream, final=True)[0] if type(i) is TagReport]
    assert reported == [epc for epc, _ in cases]


mixed_stream = st.lists(st.one_of(
    driver_lines.map(lambda case: case[1]), st.sampled_from([TEXT, TERSE, b"(No Tags)", b"Alien>", b"Error 1: Oops."]),
    st.binary(max_size=30)), max_size=8).flatmap(lambda parts: st.tuples(
        st.just(parts), st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b"\r\n\x00", b" \r\n"]),
                                 min_size=len(parts), max_size=len(parts))))


@given(mixed_stream, st.data())
def test_whole_line_fast_path_decodes_exactly_as_the_line_by_line_path(case, data):
    parts, ends = case
    stream = bytearray(b"".join(p + e for p, e in zip(parts, ends)))
    if stream and data.draw(st.booleans()):  # and one byte flipped somewhere
        stream[data.draw(st.integers(0, len(stream) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    final = data.draw(st.booleans())
    assert alien.Decoder().decode(bytes(stream), final) == alien.Decoder(fast=False).decode(bytes(stream), final)
