"""`laneagent decode` for r2000, chafon and alien: DESIGN 2.1 and 2.4, exactly.

Antenna numbering per 2.4: r2000 raw 0-3 -> 1-4, Alien `Ant:0-3` -> 1-4, Chafon masks
1/2/4/8 -> 1-4. The text dialect reads raw text on stdin, tested through a real pipe.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as cli
from tests.readers.test_alien_codec import DRIVER, TERSE, TEXT
from tests.readers.test_chafon_codec import DONE_1, GET_INFO, INV_288, MORE_2, NO_TAG, TIMEOUT_1
from tests.readers.test_r2000_codec import FW_1_9, GET_FW, INVENTORY_1, ROUND_END, TAG, TAG_ANT3

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = cli.main(["decode", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_r2000_the_notes_tag_exactly(capsys):
    code, lines, _ = run(capsys, "--dialect", "r2000", "--hex", TAG.hex(" "))
    assert code == 0
    assert lines == [{"dialect": "r2000", "epc": "E200301666130121155074EF", "antenna": 1, "rssi": -60,
                      "frequency_khz": 865500, "pc": "3000"}]


def test_r2000_antennas_replies_and_errors(capsys):
    damaged = bytearray(TAG)
    damaged[8] ^= 1
    code, lines, _ = run(capsys, "--dialect", "r2000", "--all", "--hex", (FW_1_9 + TAG_ANT3 + bytes(damaged)
                                                                          + ROUND_END + TAG[:6]).hex())
    assert code == 3
    assert lines[0]["firmware"] == "1.9" and lines[1]["antenna"] == 3  # raw 2 -> 3
    assert lines[2] == {"error": "bad_checksum", "offset": len(FW_1_9 + TAG_ANT3)}
    assert lines[3]["round_end"] is True and lines[3]["total_reads"] == 5
    assert lines[4] == {"error": "truncated", "offset": len(FW_1_9 + TAG_ANT3 + damaged + ROUND_END)}


def test_r2000_from_host(capsys):
    code, lines, _ = run(capsys, "--dialect", "r2000", "--from-host", "--hex", (GET_FW + INVENTORY_1).hex())
    assert code == 0 and [line["command"] for line in lines] == ["get_firmware_version", "real_time_inventory"]
    assert lines[1]["repeat"] == 1


def test_chafon_masks_gs1_uri_and_statuses(capsys):
    code, lines, _ = run(capsys, "--dialect", "chafon", "--hex", (MORE_2 + DONE_1 + TIMEOUT_1 + NO_TAG).hex())
    assert code == 0
    assert [line["antenna"] for line in lines] == [3, 3, 1, 4]  # masks 04, 04, 01, 08
    assert lines[2] == {"dialect": "chafon", "epc": "3074257BF7194E4000001A85", "antenna": 1, "rssi": -49,
                        "epc_uri": "urn:epc:id:sgtin:0614141.812345.6789"}
    code, lines, _ = run(capsys, "--dialect", "chafon", "--all", "--hex", NO_TAG.hex())
    assert lines == [{"dialect": "chafon", "address": 0, "command": "inventory", "cmd": "0x01", "status": "0xFB",
                      "status_name": "NO_TAG", "data": ""}]


def test_chafon_from_host(capsys):
    code, lines, _ = run(capsys, "--dialect", "chafon", "--from-host", "--hex", (GET_INFO + INV_288).hex())
    assert code == 0 and lines[0]["command"] == "get_reader_info" and lines[1]["antenna"] == 1


def test_alien_text_on_stdin(capsys, monkeypatch):
    capture = b"\r\n".join([TEXT, TERSE, DRIVER]) + b"\r\n\x00Alien>"
    code, lines, _ = run(capsys, "--dialect", "alien", stdin=capture, monkeypatch=monkeypatch)
    assert code == 0
    assert lines == [{"dialect": "alien", "epc": "E2003411B802011516126544", "antenna": 1, "count": 1},
                     {"dialect": "alien", "epc": "800080040000003B", "antenna": 1, "count": 4},
                     {"dialect": "alien", "epc": "E2801160600002054E2C1A2B", "antenna": 2, "rssi": -48, "count": 3}]


def test_alien_through_a_real_pipe_with_lf_lines_and_an_error():
    text = TEXT.decode() + "\n" + "Tag:E200 ZZZZ, Count:1, Ant:0\n" + TERSE.decode() + "\nTag:3074 25"
    done = subprocess.run([sys.executable, "-m", "agent", "decode", "--dialect", "alien"], input=text.encode(),
                          capture_output=True, cwd=ROOT, timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 3, done.stderr
    assert lines[0]["antenna"] == 1 and lines[1] == {"error": "bad_syntax", "offset": len(TEXT) + 1}
    assert lines[2]["count"] == 4 and lines[3] == {"error": "truncated", "offset": len(text) - len("Tag:3074 25")}


def test_alien_custom_format_and_messages(capsys, monkeypatch):
    line = b"3074257BF7194E4000001A85;1714550400000;1714550400250;3;-57.0;9\r\n"
    code, lines, _ = run(capsys, "--dialect", "alien", "--custom-format", "%k;${MSEC1};${MSEC2};%a;%m;%r",
                         stdin=line, monkeypatch=monkeypatch)
    assert code == 0 and lines == [{"dialect": "alien", "epc": "3074257BF7194E4000001A85", "antenna": 4, "rssi": -57,
                                    "count": 9, "timestamp_ms": 1714550400250,
                                    "epc_uri": "urn:epc:id:sgtin:0614141.812345.6789"}]
    code, lines, _ = run(capsys, "--dialect", "alien", "--all", "--hex", b"(No Tags)\r\n\x00Boot>".hex())
    assert lines == [{"dialect": "alien", "message": "no_tags"}, {"dialect": "alien", "message": "end"},
                     {"dialect": "alien", "message": "prompt", "name": "Boot>"}]


def test_alien_from_host(capsys, monkeypatch):
    code, lines, _ = run(capsys, "--dialect", "alien", "--from-host", stdin=b"\x01get TagList\r\nset AutoMode = On\r\n",
                         monkeypatch=monkeypatch)
    assert code == 0 and lines[0]["prompt_suppressed"] and not lines[1]["prompt_suppressed"]
    assert (lines[1]["verb"], lines[1]["name"], lines[1]["value"]) == ("set", "AutoMode", "On")


@pytest.mark.parametrize("argv,message", [
    (["--dialect", "r2000", "--custom-format", "%k"], "--custom-format is for --dialect alien"),
    (["--dialect", "alien", "--custom-format", "%a only", "--hex", "00"], "no tag ID token"),
])
def test_usage_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err
