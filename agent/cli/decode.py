"""`laneagent decode`: run a dialect's codec over captured bytes and print what it finds.

Input is a hex argument (`--hex "FF 24 22 ..."`, spaces, colons and 0x prefixes allowed)
or raw bytes on stdin, decoded in chunks so a long capture streams. Output (DESIGN 2.1,
2.4) is one JSON object per line: a tag report per read, `{"error": CODE, "offset": N}`
per rejected frame (offsets count from the start of the input). Bytes skipped while
resynchronising are not errors. `--from-host` decodes the other direction (the commands
a host sent); `--all` also prints frames that are not tag reports (command replies,
keep-alives). Exit 0, or 3 if any frame was rejected; 2 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from agent.readers import registry
from agent.readers.report import DecodeError, TagReport

EXIT_OK, EXIT_USAGE, EXIT_REJECTED = 0, 2, 3
CHUNK = 1 << 16

EPILOG = """examples:
  laneagent decode --dialect thingmagic --hex "FF 00 22 04 00 84 E0"
  laneagent decode --dialect thingmagic < capture.bin
  laneagent decode --dialect thingmagic --from-host --hex "FF 03 2F 00 00 02 5E 86"
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "decode", help="decode captured reader bytes to tag reports (JSON lines)",
        description=__doc__.split("\n\n")[1], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialect", required=True, choices=registry.names(), help="the reader's protocol")
    parser.add_argument("--hex", metavar="HEX", help="bytes as hex; without it, raw bytes are read from stdin")
    parser.add_argument("--from-host", action="store_true", help="decode host-to-reader commands instead")
    parser.add_argument("--all", action="store_true", help="also print frames that are not tag reports")
    parser.set_defaults(func=run)
    return parser


def parse_hex(text: str) -> bytes:
    """'FF 24 22', 'ff2422', 'FF:24:22', '0xFF 0x24' -> bytes; ValueError otherwise."""
    cleaned = re.sub(r"0[xX]", "", text)
    cleaned = re.sub(r"[\s:,]", "", cleaned)
    if len(cleaned) % 2:
        raise ValueError("odd number of hex digits")
    return bytes.fromhex(cleaned)


def _chunks(args: argparse.Namespace):
    if args.hex is not None:
        yield parse_hex(args.hex)
        return
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)  # read1: print as bytes arrive from a live pipe
    while chunk := read(CHUNK):
        yield chunk


def run(args: argparse.Namespace) -> int:
    try:
        spec = registry.dialect(args.dialect)
    except registry.UnknownDialect as e:
        print(f"laneagent decode: {e}", file=sys.stderr)
        return EXIT_USAGE
    from_host = getattr(args, "from_host", False)
    decode = spec.decode_host if from_host else spec.decode
    show_all = from_host or getattr(args, "all", False)
    out = sys.stdout
    rejected = False
    base, rest = 0, b""  # base: offset in the whole input of rest[0]

    def emit(items: list) -> None:
        nonlocal rejected
        for item in items:
            if isinstance(item, DecodeError):
                rejected = True
                out.write(json.dumps({"error": item.code, "offset": base + item.offset}) + "\n")
            elif show_all or isinstance(item, TagReport):
                out.write(json.dumps(item.to_dict()) + "\n")

    try:
        for chunk in _chunks(args):
            buffer = rest + chunk
            items, rest = decode(buffer)
            emit(items)
            base += len(buffer) - len(rest)
    except ValueError as e:
        print(f"laneagent decode: --hex: {e}", file=sys.stderr)
        return EXIT_USAGE
    # End of input: whatever is left is a frame cut off, or garbage hiding whole frames.
    emit(decode(rest, final=True)[0])
    out.flush()
    return EXIT_REJECTED if rejected else EXIT_OK
