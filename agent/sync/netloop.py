"""The link thread's one blocking call: wait for the broker's socket or for another thread.

paho's `loop(timeout)` can only be woken by paho itself, so a link used to poll it every
10 ms to notice commits and control messages (issue 13: ~130 wake-ups/s per idle link).
Here the thread sleeps in one select() on paho's socket and a `Wakeup` socketpair that
other threads write a byte to, then drives paho through its public external-loop API
(`loop_read`, `loop_write`, `loop_misc`), its writes gathered into one send() per turn
(`wire.py`). The caller bounds the wait by the timers it needs (keep-alive, rate limit,
retries, health).
"""

from __future__ import annotations

import select
import socket

import paho.mqtt.client as mqtt


class Wakeup:
    """Set from any thread; the link's select() returns at once. Consumed by `take()`."""

    def __init__(self):
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def set(self) -> None:
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):  # full: it is set already; closed: stopping anyway
            pass

    def fileno(self) -> int:
        return self._r.fileno()

    def take(self) -> bool:
        """True if set since the last take (and clear it)."""
        woken = False
        while True:
            try:
                woken |= bool(self._r.recv(4096))
            except (BlockingIOError, OSError):
                return woken

    def wait(self, timeout: float) -> None:
        """Sleep until set or `timeout` (not consumed: see `take`)."""
        select.select([self._r], [], [], max(0.0, timeout))

    def close(self) -> None:
        self._r.close()
        self._w.close()

    __del__ = close  # a link made but never started (tests, a failed start) leaves no open socket


def pump(client: mqtt.Client, wakeup: Wakeup, timeout: float) -> bool:
    """Wait up to `timeout` for the socket (or the wake-up), then read, write, keep alive.
    False when the wake-up was seen not set (no need to `take` it: a drain turn sees its
    socket far more often than a commit).

    What paho's `loop()` does, with our wake-up in the select set; a dropped connection is
    handled inside paho (on_disconnect), as with `loop()`."""
    sock = client.socket()
    if sock is None:
        wakeup.wait(timeout)
        return True
    if getattr(sock, "pending", None) and sock.pending():  # bytes read ahead (wire.py) or decrypted (TLS)
        timeout = 0.0
    try:
        readable, writable, _ = select.select([sock, wakeup], [sock] if client.want_write() else [], [],
                                              max(0.0, timeout))
    except (ValueError, OSError):  # closed under us (a disconnect): paho's next call says so
        readable, writable = [wakeup], []
    woken = wakeup in readable
    if sock in readable or (getattr(sock, "pending", None) and sock.pending()):
        if client.loop_read() or client.socket() is None:
            return woken
    if client.want_write() or sock in writable:
        if client.loop_write() or client.socket() is None:  # in one send() (wire.py)
            return woken
    client.loop_misc()
    return woken
