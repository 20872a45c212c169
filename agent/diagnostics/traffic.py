"""Recent raw reader traffic, kept in memory per reader and dumped as hex for support.

A `TrafficRing` holds the last `max_bytes` bytes a reader port carried, as chunks with
their wall-clock time and direction (`rx` reader-to-host, `tx` host-to-reader). It is
fed from the reader thread and read by the daemon's main thread, so one lock guards
it; recording is an append and a rare trim, cheap enough for every chunk at 921,600
baud. `TrafficTap` wraps a reader transport and records what passes through it. The
daemon writes each ring to `traffic-<reader>.hex` beside status.json (on SIGUSR2, on a
timer and at stop) with `dump_all`; `laneagent diag` reads those files with `parse`,
masks the EPCs and puts them in the support bundle. The files live in the 0700 state
directory next to the database, which holds the same EPCs anyway.
"""

from __future__ import annotations

import calendar
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024  # per reader: about half a second of a 921,600-baud line at full load
HEX_PER_LINE = 32  # bytes per dump line
RX, TX = "rx", "tx"


@dataclass(frozen=True, slots=True)
class Chunk:
    wall_ms: int
    direction: str
    data: bytes


class TrafficRing:
    """The newest `max_bytes` bytes of one reader's traffic, both directions together."""

    def __init__(self, name: str, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be greater than 0")
        self.name = name
        self.max_bytes = max_bytes
        self.total_bytes = 0  # ever recorded, so a reader of the dump sees how much was dropped
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def record(self, direction: str, data: bytes, wall_ms: int | None = None) -> None:
        if not data:
            return
        if len(data) > self.max_bytes:  # one huge chunk: its tail is the recent part
            data = data[-self.max_bytes:]
        chunk = Chunk(int(time.time() * 1000) if wall_ms is None else wall_ms, direction, bytes(data))
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk.data)
            self.total_bytes += len(data)
            while self._size > self.max_bytes:
                oldest = self._chunks[0]
                excess = self._size - self.max_bytes
                if len(oldest.data) <= excess:
                    self._chunks.popleft()
                    self._size -= len(oldest.data)
                else:  # keep the newest part of the oldest chunk: the bound is exact
                    self._chunks[0] = Chunk(oldest.wall_ms, oldest.direction, oldest.data[excess:])
                    self._size -= excess

    def record_rx(self, data: bytes) -> None:
        self.record(RX, data)

    def record_tx(self, data: bytes) -> None:
        self.record(TX, data)

    def snapshot(self) -> list[Chunk]:
        with self._lock:
            return list(self._chunks)

    @property
    def size(self) -> int:
        return self._size

    def render(self, header: str = "") -> str:
        chunks = self.snapshot()
        lines = [f"# laneagent raw reader traffic: reader {self.name}, {sum(len(c.data) for c in chunks)} bytes kept "
                 f"of {self.total_bytes} recorded (ring of {self.max_bytes} bytes)"]
        if header:
            lines.append(f"# {header}")
        lines.append("# time (UTC)               dir  offset  bytes (hex)")
        return "\n".join(lines + render_chunks(chunks)) + "\n"

    def dump(self, path: str, header: str = "") -> None:
        """Write the ring to `path` atomically (a reader of the file never sees half of it)."""
        tmp = f"{path}.tmp"
        # 0600: the bytes hold EPCs in clear, like the database beside them.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(self.render(header))
        os.replace(tmp, path)


def _stamp(wall_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall_ms / 1000)) + f".{wall_ms % 1000:03d}Z"


def render_chunks(chunks: list[Chunk], hex_of=None) -> list[str]:
    """One line per 32 bytes: time, direction, offset within the chunk, hex. `hex_of(chunk)`
    may return the hex tokens to print instead of the bytes (masking)."""
    out = []
    for chunk in chunks:
        tokens = hex_of(chunk) if hex_of else [f"{b:02X}" for b in chunk.data]
        for i in range(0, len(tokens), HEX_PER_LINE):
            out.append(f"{_stamp(chunk.wall_ms)} {chunk.direction}  {i:6d}  {' '.join(tokens[i:i + HEX_PER_LINE])}")
    return out


def parse(text: str) -> list[Chunk]:
    """Chunks back from a dump (lines of one chunk share time, direction and rising offsets)."""
    chunks: list[Chunk] = []
    current: tuple[str, str] | None = None
    data = bytearray()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        stamp, direction, offset = parts[0], parts[1], int(parts[2])
        payload = bytes.fromhex(parts[3]) if len(parts) > 3 else b""
        if offset == 0 or current != (stamp, direction):
            if current is not None:
                chunks.append(Chunk(_parse_stamp(current[0]), current[1], bytes(data)))
            current, data = (stamp, direction), bytearray()
        data += payload
    if current is not None:
        chunks.append(Chunk(_parse_stamp(current[0]), current[1], bytes(data)))
    return chunks


def _parse_stamp(stamp: str) -> int:
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac or 0)


class TrafficTap:
    """A reader transport that records what it reads and writes; everything else passes through."""

    def __init__(self, transport, ring: TrafficRing):
        object.__setattr__(self, "_transport", transport)
        object.__setattr__(self, "traffic", ring)

    def read(self) -> bytes:
        return self._received(self._transport.read())

    def read_available(self) -> bytes:
        return self._received(self._transport.read_available())

    def _received(self, data: bytes) -> bytes:
        if data:
            self.traffic.record(RX, data)
        return data

    def write(self, data: bytes) -> None:
        self.traffic.record(TX, data)
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def __setattr__(self, name, value) -> None:
        setattr(self._transport, name, value)


# The daemon's rings, by reader name: sessions create theirs, the daemon dumps them all.
_RINGS: dict[str, TrafficRing] = {}
_RINGS_LOCK = threading.Lock()


def ring_for(name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> TrafficRing:
    with _RINGS_LOCK:
        ring = _RINGS.get(name)
        if ring is None:
            ring = _RINGS[name] = TrafficRing(name, max_bytes)
        return ring


def rings() -> list[TrafficRing]:
    with _RINGS_LOCK:
        return list(_RINGS.values())


def dump_path(state_dir: str, reader: str) -> str:
    return os.path.join(state_dir, f"traffic-{reader}.hex")


def dump_all(state_dir: str, describe=lambda name: "") -> list[str]:
    """Write every ring to `traffic-<reader>.hex` in `state_dir`; returns the paths written.
    Never raises: a support aid must not disturb the daemon."""
    written = []
    for ring in rings():
        path = dump_path(state_dir, ring.name)
        try:
            ring.dump(path, describe(ring.name))
            written.append(path)
        except OSError as e:
            log.warning("cannot write reader traffic dump %s: %s", path, e)
    return written
