"""Cache messages cut to the agent's size bound, and the history of what went out (DESIGN 2.6).

Records are kept CBOR-encoded, so a message's size is known before it is built: a
message is its envelope followed by its records' bytes, assembled without encoding
anything twice (`build`). `cut` packs records greedily by encoded size, never by a
fixed count. `History` keeps the last messages sent (seq -> the exact bytes that went
out, signed or not), bounded by count and by bytes, so that a resync can be answered
with what followed the lane's `have_seq` while all of it is still there.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

import cbor2

# What a message may need besides its records' bytes: the envelope (v, type, source, seq,
# op, part, parts: under 100 bytes even with 8-byte integers), the records array's header
# (at most 9 bytes) and a COSE_Sign1 around it all (tag, headers, a 64-byte signature:
# about 85 bytes). Reserved generously, and checked again on the finished message.
RESERVED_BYTES = 512
_RECORDS_KEY = cbor2.dumps("records")


class RecordTooLarge(ValueError):
    """One record alone does not fit a message under the bound."""


def encode_record(record: dict) -> bytes:
    return cbor2.dumps(record)


def _head(major: int, n: int) -> bytes:
    """A CBOR item head: major type and argument (RFC 8949 3.1)."""
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(f"{n} does not fit a CBOR head")


def build(envelope: dict, records: list[bytes]) -> bytes:
    """The CBOR of `{**envelope, "records": [...]}`, byte for byte what cbor2.dumps would give."""
    head = cbor2.dumps(envelope)
    if head[0] >> 5 != 5 or head[0] & 31 >= 23:
        raise ValueError("the envelope must be a map of fewer than 23 keys")
    return bytes([head[0] + 1]) + head[1:] + _RECORDS_KEY + _head(4, len(records)) + b"".join(records)


def cut(records: Iterable[bytes], max_bytes: int) -> list[list[bytes]]:
    """Records in runs whose messages stay under `max_bytes`; at least one run (maybe empty)."""
    budget = max_bytes - RESERVED_BYTES
    runs: list[list[bytes]] = [[]]
    size = 0
    for record in records:
        if len(record) > budget:
            raise RecordTooLarge(f"a record of {len(record)} bytes cannot fit a message of {max_bytes} bytes")
        if runs[-1] and size + len(record) > budget:
            runs.append([])
            size = 0
        runs[-1].append(record)
        size += len(record)
    return runs


@dataclass(frozen=True)
class Sent:
    seq: int
    payload: bytes  # exactly what went out (a COSE_Sign1 when signing)
    part: int | None  # i of a snapshot of n > 1 parts, else None


class History:
    """The last messages sent to a source's lanes, to answer a resync with what followed `have_seq`."""

    def __init__(self, max_messages: int = 1_000, max_bytes: int = 64 * 1024 * 1024):
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._sent: OrderedDict[int, Sent] = OrderedDict()
        self._bytes = 0

    def add(self, seq: int, payload: bytes, part: int | None = None) -> None:
        # A seq sent again (a back end that rewound) replaces that message and all after it.
        while self._sent and next(reversed(self._sent)) >= seq:
            self._bytes -= len(self._sent.popitem(last=True)[1].payload)
        self._sent[seq] = Sent(seq, payload, part)
        self._bytes += len(payload)
        while self._sent and (len(self._sent) > self.max_messages or self._bytes > self.max_bytes):
            self._bytes -= len(self._sent.popitem(last=False)[1].payload)

    def after(self, have_seq: int, newest: int) -> list[Sent] | None:
        """Every message from have_seq + 1 to `newest`, or None when a snapshot must answer instead.

        None when: nothing follows (the lane asked anyway: a snapshot is the safe answer),
        have_seq is ahead of `newest` (we restarted) or older than the history, a message
        in between was never sent or is gone, or the first one is a later part of a
        snapshot (the lane dropped the parts before it when it asked).
        """
        if not 0 <= have_seq < newest:
            return None
        wanted = [self._sent.get(seq) for seq in range(have_seq + 1, newest + 1)]
        if any(sent is None for sent in wanted) or (wanted[0].part or 1) > 1:
            return None
        return wanted

    @property
    def span(self) -> tuple[int, int] | None:
        """(oldest seq, newest seq) held, or None."""
        return (next(iter(self._sent)), next(reversed(self._sent))) if self._sent else None

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._sent)
