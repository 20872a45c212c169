"""How an event's full record is stored: its canonical CBOR, deflated, and where its parts lie.

A sealed event is about 2 KB of CBOR, a third of it hex digests and hashes: one row per
4 KB page, half of each page wasted. Deflated (zlib level 1, ~15 us) it is about 1.1 KB
and three fit a page: the `footprint` bar (DESIGN part 4) counts those bytes. A body
stored before (schema v1) is plain canonical CBOR, which always starts with a map
header (0xa0-0xbf), never with zlib's 0x78, so both read back the same way.

Beside the body, its `spans` (schema v3): where each entry a back end may be denied (a
section, or any key that is not always sent) lies in the canonical bytes; the entry's own
key, read there, says which it is. A back end's payload is then those bytes with the
denied entries left out and its `kind` added: slices joined, nothing decoded or encoded.
Decoding and re-encoding each event for each back end cost more CPU than paho's publish
itself while draining a backlog (`drain`).
"""

from __future__ import annotations

import functools
import zlib

import cbor2

from agent.lane.disclosure import View
from agent.lane.event import ALWAYS_SENT

ZLIB_HEADER = 0x78
_KIND_KEY = cbor2.dumps("kind")


def pack(event: dict) -> tuple[bytes, bytes]:
    """(body, spans) of a sealed event: the deflated canonical CBOR, and where its deniable
    entries lie: for each, its distance from the end of the one before (or of the map's
    header) and its length, key and value. About 27 bytes (with the key names, 113)."""
    # Canonical order (RFC 8949 core deterministic) is the bytewise order of the encoded keys;
    # encoding entry by entry gives the same bytes as encoding the map, and each entry's place.
    entries = sorted((cbor2.dumps(key, canonical=True), cbor2.dumps(value, canonical=True), key)
                     for key, value in event.items())
    parts = [_map_header(len(entries))]
    at = last_end = len(parts[0])
    spans = []
    for key_bytes, value_bytes, key in entries:
        end = at + len(key_bytes) + len(value_bytes)
        if key not in ALWAYS_SENT or key == "kind":
            spans += (at - last_end, end - at)
            last_end = end
        parts += (key_bytes, value_bytes)
        at = end
    return zlib.compress(b"".join(parts), 1), cbor2.dumps(spans)


def canonical_bytes(stored: bytes) -> bytes:
    """The event's canonical CBOR, whichever form it was stored in."""
    return zlib.decompress(stored) if stored[:1] == bytes([ZLIB_HEADER]) else stored


def load(stored: bytes) -> dict:
    return cbor2.loads(canonical_bytes(stored))


def cut(stored: bytes, spans: bytes, view: View) -> bytes:
    """What a back end gets of a stored event: the always-sent keys, the sections of its
    `view` and its kind, as CBOR (the entries in canonical order, `kind` last)."""
    whole = canonical_bytes(stored)
    count, at = _read_map_header(whole)
    keep = _encoded_keys(view.sections)
    pieces = []
    end = at
    steps = iter(cbor2.loads(spans))
    for gap, length in zip(steps, steps):
        start = end + gap
        end = start + length
        if _key_at(whole, start) in keep:
            continue
        pieces.append(whole[at:start])
        at = end
        count -= 1
    pieces += (whole[at:], _KIND_KEY, cbor2.dumps(view.kind))
    return _map_header(count + 1) + b"".join(pieces)


@functools.lru_cache(maxsize=64)
def _encoded_keys(sections: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(cbor2.dumps(name) for name in sections)


def _key_at(whole: bytes, start: int) -> bytes:
    """The encoded key of the entry at `start`: a text key of under 24 bytes, as every
    section's is; any other key reads as b"", which no view names."""
    first = whole[start]
    return whole[start:start + 1 + first - 0x60] if 0x60 <= first < 0x78 else b""


def _map_header(count: int) -> bytes:
    if count < 24:
        return bytes([0xa0 + count])
    if count < 256:
        return bytes([0xb8, count])
    raise ValueError(f"an event of {count} top-level keys")  # an event has about 20


def _read_map_header(whole: bytes) -> tuple[int, int]:
    """(entries, header length) of the canonical map `whole`."""
    first = whole[0]
    if 0xa0 <= first < 0xb8:
        return first - 0xa0, 1
    if first == 0xb8:
        return whole[1], 2
    raise ValueError(f"a stored event is not a CBOR map of under 256 keys (first byte {first:#x})")
