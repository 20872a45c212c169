"""`laneagent decode`: hex and stdin input, JSON lines out, exit 0 / 3 (DESIGN 2.1, 2.4)."""

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import decode
from tests.readers.test_thingmagic_codec import KEEPALIVE, SPARKFUN_START, STOP, TAG, TAG_ALL_METADATA

ROOT = Path(__file__).resolve().parents[2]
# The command as main.py will mount it, runnable as a child process for real stdin pipes.
RUNNER = ("import argparse, sys; from agent.cli import decode; p = argparse.ArgumentParser(prog='laneagent');"
          "decode.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="laneagent")
    decode.register(p.add_subparsers())
    return p


def run(capsys, *argv: str, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, list[dict], str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    args = parser().parse_args(["decode", "--dialect", "thingmagic", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_hex_tag_frame_prints_the_report(capsys):
    code, lines, _ = run(capsys, "--hex", TAG_ALL_METADATA.hex(" ").upper())
    assert code == 0
    assert lines == [{"dialect": "thingmagic", "epc": "3074257BF7194E4000001A85", "antenna": 16, "rssi": -60,
                      "count": 2, "frequency_khz": 925040, "pc": "3200", "timestamp_ms": 123456, "phase": 270,
                      "epc_uri": "urn:epc:id:sgtin:0614141.812345.6789"}]


@pytest.mark.parametrize("text", [TAG.hex(), TAG.hex(":"), " ".join(f"0x{b:02x}" for b in TAG)])
def test_hex_spellings(capsys, text):
    code, lines, _ = run(capsys, "--hex", text)
    assert code == 0 and lines[0]["epc"] == "E2801160600002054E2C1A2B"


def test_rejected_frames_print_errors_and_exit_3(capsys):
    damaged = bytearray(TAG)
    damaged[30] ^= 0x01
    data = b"\x00\x01" + bytes(damaged) + KEEPALIVE + TAG + TAG[:9]
    code, lines, _ = run(capsys, "--hex", data.hex())
    assert code == 3
    assert lines[0] == {"error": "bad_checksum", "offset": 2}
    assert lines[1]["epc"] == "E2801160600002054E2C1A2B"
    assert lines[2] == {"error": "truncated", "offset": 2 + 2 * len(TAG) + len(KEEPALIVE)}
    assert len(lines) == 3  # the keep-alive is not a tag report


def test_garbage_alone_is_not_an_error(capsys):
    assert run(capsys, "--hex", "00 11 22 FF FA 33 FF FF")[:2] == (0, [])


def test_all_also_prints_replies(capsys):
    code, lines, _ = run(capsys, "--all", "--hex", KEEPALIVE.hex())
    assert code == 0 and lines[0]["status_name"] == "NO_TAGS_FOUND" and lines[0]["status"] == "0x0400"


def test_from_host(capsys):
    code, lines, _ = run(capsys, "--from-host", "--hex", (SPARKFUN_START + STOP).hex())
    assert code == 0
    assert lines[0]["action"] == "start_reading" and lines[0]["metadata_flags"] == "0x01FF"
    assert lines[1] == {"dialect": "thingmagic", "direction": "host", "opcode": "0x2F",
                        "command": "multi_protocol_tag_op", "data": "000002", "action": "stop_reading"}
    assert run(capsys, "--from-host", "--hex", STOP[:-1].hex())[:2] == (3, [{"error": "truncated", "offset": 0}])


def test_stdin_in_process(capsys, monkeypatch):
    code, lines, _ = run(capsys, stdin=b"\xff" + TAG + TAG, monkeypatch=monkeypatch)
    assert code == 0 and len(lines) == 2


def test_stdin_pipe_long_capture_with_absolute_offsets():
    damaged = bytearray(TAG)
    damaged[-1] ^= 0xFF
    head = (TAG + KEEPALIVE) * 3000  # ~150 kB: several reads
    data = head + b"\x42" + bytes(damaged) + TAG
    done = subprocess.run([sys.executable, "-c", RUNNER, "decode", "--dialect", "thingmagic"],
                          input=data, capture_output=True, cwd=ROOT, timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 3, done.stderr
    assert len(lines) == 3002
    assert lines[3000] == {"error": "bad_checksum", "offset": len(head) + 1}


def test_bad_hex_is_a_usage_error(capsys):
    code, lines, err = run(capsys, "--hex", "FF 0")
    assert code == 2 and lines == [] and "odd number of hex digits" in err
    code, _, err = run(capsys, "--hex", "ZZ")
    assert code == 2 and "--hex" in err


def test_unknown_dialect_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["decode", "--dialect", "r9000"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    help_text = parser()._subparsers._group_actions[0].choices["decode"].format_help()
    assert 'laneagent decode --dialect thingmagic --hex "FF 00 22 04 00 84 E0"' in help_text
