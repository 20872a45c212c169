"""How an event's full record is stored: its canonical CBOR, deflated.

A sealed event is about 2 KB of CBOR, a third of it hex digests and hashes: one row per
4 KB page, half of each page wasted. Deflated (zlib level 1, ~15 us) it is about 1.1 KB
and three fit a page: the `footprint` bar (DESIGN part 4) counts those bytes. A body
stored before (schema v1) is plain canonical CBOR, which always starts with a map
header (0xa0-0xbf), never with zlib's 0x78, so both read back the same way.
"""

from __future__ import annotations

import zlib

import cbor2

ZLIB_HEADER = 0x78


def pack(event: dict) -> bytes:
    return zlib.compress(cbor2.dumps(event, canonical=True), 1)


def canonical_bytes(stored: bytes) -> bytes:
    """The event's canonical CBOR, whichever form it was stored in."""
    return zlib.decompress(stored) if stored[:1] == bytes([ZLIB_HEADER]) else stored


def load(stored: bytes) -> dict:
    return cbor2.loads(canonical_bytes(stored))
