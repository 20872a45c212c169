"""`laneagent decode`: run a dialect's codec over captured bytes and print what it finds.

Input is a hex argument (`--hex "FF 24 22 ..."`, spaces, colons and 0x prefixes allowed)
or raw bytes on stdin, decoded in chunks so a long capture streams; for the text dialect
(alien) stdin is the raw text as captured (CR LF, NUL and all, or plain LF lines). Output
(DESIGN 2.1, 2.4) is one JSON object per line: a tag report per read, `{"error": CODE,
"offset": N}` per rejected frame or line (offsets count from the start of the input).
Bytes skipped while resynchronising are not errors. `--from-host` decodes the other
direction (the commands a host sent); `--all` also prints frames that are not tag reports
(command replies, keep-alives, round ends, prompts). `--custom-format` gives the alien
reader's TagListCustomFormat when its tag lines are Custom (default: the one laneagent
sets). Exit 0, or 3 if any frame was rejected; 2 for unusable input.
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
  laneagent decode --dialect r2000 --hex "A0 13 01 89 04 30 00 E2 00 30 16 66 13 01 21 15 50 74 EF 45 BF"
  laneagent decode --dialect chafon --hex "07 00 01 01 01 00 1E 4B" --all
  printf 'Tag:E200 3411 B802 0115 1612 6544, Count:1, Ant:0\\r\\n' | laneagent decode --dialect alien
  laneagent decode --dialect alien --custom-format '%k;${MSEC1};${MSEC2};%a;%m;%r' < console.log
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "decode", help="decode captured reader bytes to tag reports (JSON lines)",
        description=__doc__.split("\n\n")[1], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialect", required=True, choices=registry.names(), help="the reader's protocol")
    parser.add_argument("--hex", metavar="HEX", help="bytes as hex; without it, raw bytes are read from stdin")
    parser.add_argument("--from-host", action="store_true", help="decode host-to-reader commands instead")
    parser.add_argument("--all", action="store_true", help="also print frames that are not tag reports")
    tunable = ", ".join(d.name for d in registry.DIALECTS.values() if d.make_decoder is not None)
    parser.add_argument("--custom-format", metavar="FMT",
                        help=f"{tunable}: the reader's tag line format (alien: TagListCustomFormat; "
                             "default: the one laneagent sets)")
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
    """Decode the input and print JSON lines. `epc_uri` comes from epcpy (TagReport.to_dict),
    which decodes the GS1 binary EPC schemes of 96 bits and more (SGTIN, SSCC, SGLN, GRAI,
    GIAI, GID, GSRN, GDTI, CPI, SGCN, ITIP, ...). It cannot decode, and those reads carry no
    `epc_uri`: EPCs that are not GS1 encodings (E2... TID-style numbers, the reference numbers
    on border-crossing cards and transponders, ISO 17363/ATA headers), EPCs shorter than 96
    bits, the TDS 2.0 "+" schemes with headers 0xF7 and up, and GS1 headers whose fields break
    its rules (a DoD-96 CAGE code or an ADI-var part with characters it rejects)."""
    try:
        spec = registry.dialect(args.dialect)
    except registry.UnknownDialect as e:
        print(f"laneagent decode: {e}", file=sys.stderr)
        return EXIT_USAGE
    from_host = getattr(args, "from_host", False)
    decode = spec.decode_host if from_host else spec.decode
    custom = getattr(args, "custom_format", None)
    if custom is not None:
        if spec.make_decoder is None:
            tunable = [d.name for d in registry.DIALECTS.values() if d.make_decoder is not None]
            print(f"laneagent decode: --custom-format is for --dialect {' or '.join(tunable)}", file=sys.stderr)
            return EXIT_USAGE
        try:
            decode = decode if from_host else spec.make_decoder(custom)
        except (ValueError, re.error) as e:
            print(f"laneagent decode: --custom-format: {e}", file=sys.stderr)
            return EXIT_USAGE
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
