"""The one resync loop of the binary dialects: bytes -> candidate frames -> items or errors.

A binary codec describes its frames with a `FrameSpec` (start byte, where the length
byte sits and what it counts, the lengths it allows, the checksum) and keeps only its
table-driven payload parsing (`make`). `split` does the rest, the same way for every
dialect (the model is zigpy-znp's `uart.py` `_extract_frames`: on an invalid frame, drop
to the next start byte after the first), so the same damage gets the same error code and
the same latency everywhere:

- A candidate is a start byte (or any byte, for dialects without one) followed by a
  length byte within [min_len, max_len]. Other bytes are skipped silently: resyncing is
  not an error. A dialect may also ask for a `plausible` header; an implausible candidate
  is skipped silently unless its checksum is right.
- A complete candidate with the right checksum is a frame: `make` turns it into an item, a
  list of items, or a `DecodeError` (checksum right, layout wrong).
- A candidate inside which a valid frame starts was cut short (a reader that reset
  mid-frame, a length byte that lies): it is `bad_length` at once, whether or not its
  length runs past the end of the input, and decoding goes on from that frame. A frame
  found inside another must also pass the dialect's `inside` test when it has one (r2000:
  an 8-bit checksum alone is too weak).
- Any other complete candidate with the wrong checksum is `bad_checksum`. Scanning goes on
  from its second byte, so a real frame hiding behind a stray start byte is never lost;
  candidates starting inside a frame already reported stay silent (one damaged frame, one
  error). The same holds for a frame whose layout `make` rejected.
- Any other candidate running past the end of the input is kept as `rest` to wait for more
  bytes or, with `final=True` (no more bytes come: end of a capture, or the session's idle
  flush), it is `truncated`.
- Fewer bytes than a header (`header`: enough to read the length byte and judge
  `plausible`) at the end are kept as `rest`, or dropped silently when final.

Error offsets count from buffer[0]. Pure: no I/O, no logging, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from agent.readers.report import DecodeError

Check = Callable[[bytes, int, int], bool]  # (buf, start, end): is buf[start:end] a frame with a right checksum?
Header = Callable[[bytes, int], bool]  # (buf, start): judged on the first `header` bytes


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """How one dialect (one direction) frames its bytes."""

    start: int | None  # the start-of-frame byte; None: any byte may begin a frame (its length byte)
    length_at: int  # index of the length byte in the frame
    overhead: int  # whole frame size = length byte + overhead
    min_len: int  # smallest and largest length byte of a real frame
    max_len: int
    header: int  # bytes a candidate needs before it can be judged (>= length_at + 1)
    check: Check
    make: Callable[[bytes, int, int], object]  # an item, a list of items, or a DecodeError
    plausible: Header | None = None  # could this header begin a real frame? None: any
    inside: Header | None = None  # may a frame found inside a cut-off one be trusted? None: yes


def _first_frame(buf: bytes, pos: int, limit: int, spec: FrameSpec) -> int:
    """Start (before `limit`) of the first complete, checksum-valid, trusted frame at or after pos, or -1."""
    n, sb, at, overhead = len(buf), spec.start, spec.length_at, spec.overhead
    lo, hi, header, check, trusted = spec.min_len, spec.max_len, spec.header, spec.check, spec.inside
    marker = bytes((sb,)) if sb is not None else b""
    while True:
        start = buf.find(marker, pos) if marker else pos
        if start < 0 or start >= limit or start + header > n:
            return -1
        length = buf[start + at]
        end = start + length + overhead
        if lo <= length <= hi and end <= n and (trusted is None or trusted(buf, start)) and check(buf, start, end):
            return start
        pos = start + 1


def split(buffer, final: bool, spec: FrameSpec) -> tuple[list, bytes]:
    """Bytes -> ([items and DecodeErrors], rest to prepend next time). See the module text."""
    buf = bytes(buffer)
    n, pos, quiet_until = len(buf), 0, 0
    items: list = []
    append, extend, find = items.append, items.extend, buf.find
    at, overhead, lo, hi, header = spec.length_at, spec.overhead, spec.min_len, spec.max_len, spec.header
    check, make, plausible = spec.check, spec.make, spec.plausible
    marker = bytes((spec.start,)) if spec.start is not None else b""
    while True:
        if marker:
            start = find(marker, pos)
            if start < 0:
                return items, b""
        else:
            start = pos
        if start + header > n:  # too little to judge yet
            return items, b"" if final else buf[start:]
        length = buf[start + at]
        if length < lo or length > hi:
            pos = start + 1
            continue
        end = start + length + overhead
        if end <= n and check(buf, start, end):
            item = make(buf, start, end)
            kind = item.__class__
            if kind is list:
                extend(item)
            elif kind is not DecodeError:
                append(item)
            else:  # checksum right, layout wrong: maybe garbage that passed; rescan inside
                if start >= quiet_until:
                    append(item)
                    quiet_until = end
                pos = start + 1
                continue
            pos = end
            continue
        if plausible is not None and not plausible(buf, start):
            pos = start + 1
            continue
        later = _first_frame(buf, start + 1, min(end, n), spec)
        if end <= n and later < 0:  # complete, and no frame cuts it short: corrupted
            if start >= quiet_until:
                append(DecodeError("bad_checksum", start))
                quiet_until = end
            pos = start + 1
            continue
        if later < 0:
            if not final:
                return items, buf[start:]
            if start >= quiet_until:
                append(DecodeError("truncated", start))
            return items, b""
        if start >= quiet_until:
            append(DecodeError("bad_length", start))
        pos = later
