"""The link's socket: one recv() and one send() per turn of the pump, not one per MQTT packet.

paho reads a packet a few bytes at a time (its command byte, its length, its body: three
recv() calls for a 4-byte PUBACK) and writes each packet with a send() of its own. While
a backlog drains that is several system calls per event and back end, a quarter of a
link's CPU (issue 13). `TurnSocket` wraps the socket paho made, plain TCP or TLS: reads
are served from one recv() of up to RECV_BYTES, and while paho writes (`loop_write`, in a
`batch()`), its sends are gathered and go out together when it returns.

paho has no public hook for the socket it makes: `TurnClient` overrides its
`_create_socket` (paho 2.x) and extends its `want_write` and `loop_write`. If a paho
release stops calling `_create_socket`, the link works as before, one call per packet,
and `tests/sync/test_wire.py` says so.
"""

from __future__ import annotations

import ssl
from contextlib import contextmanager
from typing import Iterator

import paho.mqtt.client as mqtt

RECV_BYTES = 65536  # a turn's PUBACKs (4 bytes each) or a slice of a downlink message
CLOSE_FLUSH_S = 1.0  # at close, how long held bytes (a DISCONNECT) may wait for the kernel


class TurnSocket:
    """A socket whose reads are buffered and whose writes can be gathered (`batch`).

    Bytes paho has been told are sent but the kernel would not take yet (its buffer was
    full) stay in order in `_out`: `unsent()` keeps `TurnClient.want_write()` true, so the
    link waits for the socket to be writable, and any later send() goes behind them. A
    failed send is raised to paho by its next recv() (after the bytes read before it) or
    send(), where paho handles a lost connection."""

    def __init__(self, sock):
        self._sock = sock
        self._in = b""
        self._at = 0  # how much of _in paho has had
        self._out = bytearray()
        self._batching = False
        self._error: OSError | None = None

    # --- reads -------------------------------------------------------------------------------
    def recv(self, size: int) -> bytes:
        if self._at == len(self._in):
            if self._error is not None:  # after what was read before it (PUBACKs, a DISCONNECT)
                raise self._error
            data = self._sock.recv(max(size, RECV_BYTES))
            if len(data) <= size:  # also b"" at the end of the stream
                return data
            self._in, self._at = data, 0
        start, self._at = self._at, min(self._at + size, len(self._in))
        return self._in[start:self._at]

    def pending(self) -> int:
        """Bytes read but not yet handed to paho (and TLS's own): select() cannot see them,
        so neither the pump nor paho's loop() may wait. A stored error counts: paho must
        read to hear of it."""
        inner = getattr(self._sock, "pending", None)
        return len(self._in) - self._at + (inner() if inner else 0) + (self._error is not None)

    # --- writes ------------------------------------------------------------------------------
    def send(self, data) -> int:
        if self._error is not None:
            raise self._error
        if not self._batching and not self._out:
            return self._sock.send(data)  # outside a batch, with nothing held: as paho expects
        self._out += data
        if not self._batching:
            self.flush()
        return len(data)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gather every send() until the end of the block, then send them at once."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            self.flush()

    def flush(self) -> None:
        while self._out and self._error is None:
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return  # the kernel's buffer is full: the pump waits until the socket is writable
            except OSError as e:
                self._error = e
                self._out.clear()
                return
            del self._out[:sent]

    def unsent(self) -> bool:
        return bool(self._out)

    def close(self) -> None:
        """paho closes right after writing DISCONNECT: what is held goes first, waiting up to
        CLOSE_FLUSH_S for the kernel to take it (a broker that reads nothing is given up on:
        it sees no DISCONNECT, as it would not have with paho's own socket)."""
        if self._out and self._error is None:
            try:
                self._sock.settimeout(CLOSE_FLUSH_S)
                self._sock.sendall(self._out)
            except OSError:
                pass
        self._out.clear()
        self._sock.close()

    def __getattr__(self, name: str):
        return getattr(self._sock, name)  # fileno, setblocking, TLS's version(), ...


class TurnClient(mqtt.Client):
    """paho's client on a `TurnSocket`: each loop_write() goes out in one send(), and bytes
    the socket holds count as writing still wanted, also in paho's own `loop()`."""

    def _create_socket(self):
        return TurnSocket(super()._create_socket())

    def want_write(self) -> bool:
        return super().want_write() or (isinstance(self._sock, TurnSocket) and self._sock.unsent())

    def loop_write(self) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if not isinstance(sock, TurnSocket):
            return super().loop_write()
        with sock.batch():
            return super().loop_write()
