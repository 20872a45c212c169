"""The byte pipe to one reader: any pyserial URL, opened with timeouts, read in chunks.

`/dev/ttyUSB0`, `/dev/pts/N`, a `/dev/serial/by-id/...` link, `socket://host:port`,
`loop://` and `spy://...` all open through `serial.serial_for_url`. The port is opened
exclusively (where the platform can lock it) so that a second program cannot steal
half the frames. Reads return whatever arrived within `read_timeout` (possibly b""),
so the caller's loop keeps its own clock for silence and command timeouts. Unplugging
shows up as `serial.SerialException` or `OSError` from `open`, `read` or `write`; the
session turns those into "down". Nothing here knows a dialect. A quiet line is waited on
with `wait_readable` (one select() on the port and an `interrupt` pipe) rather than read
in a loop of short timeouts: an idle reader costs a wake-up per keep-alive, not 50 a second.
"""

from __future__ import annotations

import logging
import select
import socket
import sys

import serial

log = logging.getLogger(__name__)

# Errors that mean "the port is gone or unusable": the session closes and reopens on these.
PORT_ERRORS = (serial.SerialException, OSError, ValueError)

CHUNK = 4096  # bytes per read call; at 921,600 baud that is ~45 ms of line time


class SerialTransport:
    """One open-able, close-able serial port addressed by a pyserial URL."""

    def __init__(self, url: str, baudrate: int = 115200, read_timeout: float = 0.02, write_timeout: float = 1.0):
        self.url = url
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self._port: serial.SerialBase | None = None
        self._fd: int | None = None  # the port's descriptor when it has one (not loop://)
        self._interrupt: tuple[socket.socket, socket.socket] | None = None  # while open: ends a wait

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port (closing any previous one); raises one of PORT_ERRORS."""
        self.close()
        port = serial.serial_for_url(self.url, do_not_open=True, baudrate=self.baudrate,
                                     timeout=self.read_timeout, write_timeout=self.write_timeout)
        if isinstance(port, serial.Serial):  # a local device (also under spy://): lock it with flock
            port.exclusive = True
        port.open()
        self._port = port
        self._interrupt = socket.socketpair()
        for end in self._interrupt:
            end.setblocking(False)
        try:
            self._fd = port.fileno()
        except (AttributeError, NotImplementedError, OSError, ValueError):
            self._fd = None
        log.debug("opened %s at %d baud", self.url, self.baudrate)

    def read(self) -> bytes:
        """Bytes that arrived within read_timeout, b"" if none; raises on hangup."""
        port = self._port
        if port is None:
            raise serial.PortNotOpenError()
        # A pyserial read returns at CHUNK bytes or at the timeout, whichever first, so a
        # busy line is read in large batches and a quiet one costs one wake-up per timeout.
        return port.read(CHUNK)

    def read_available(self) -> bytes:
        """What has arrived, as soon as anything has (the first byte waits up to read_timeout):
        a polled reader's reply is taken when it lands, not after the timeout. A round trip
        used to cost the whole 20 ms: R2000 reached 35 % of the line."""
        port = self._port
        if port is None:
            raise serial.PortNotOpenError()
        return port.read(min(CHUNK, max(1, port.in_waiting)))

    def wait_readable(self, timeout: float) -> None:
        """Sleep until bytes arrive, `interrupt()` is called or `timeout` passes. Ports without
        a descriptor return at once (their reads keep the short timeout)."""
        interrupt = self._interrupt
        if self._fd is None or interrupt is None or timeout <= 0:
            return
        ready, _, _ = select.select([self._fd, interrupt[0]], [], [], timeout)
        if interrupt[0] in ready:
            try:
                while interrupt[0].recv(64):
                    pass
            except OSError:  # drained (BlockingIOError), or closed meanwhile
                pass

    def interrupt(self) -> None:
        """Safe from any thread: end a `wait_readable` now (stop). A no-op while closed."""
        interrupt = self._interrupt
        if interrupt is not None:
            try:
                interrupt[1].send(b"\0")
            except OSError:  # full: a wake-up is pending already; closed: nothing waits
                pass

    def write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise serial.PortNotOpenError()
        port.write(data)

    def discard_input(self) -> None:
        """Drop bytes already buffered by the OS (stale replies from before a restart)."""
        if self._port is not None:
            self._port.reset_input_buffer()

    def close(self) -> None:
        port, self._port, self._fd = self._port, None, None
        interrupt, self._interrupt = self._interrupt, None
        for end in interrupt or ():
            end.close()
        if port is None:
            return
        try:
            port.close()
        except PORT_ERRORS as e:  # closing an unplugged device may fail; it is closed anyway
            log.debug("closing %s: %s", self.url, e)
        # spy:// opens its traffic log itself and never closes it: one leaked file per reconnect.
        output = getattr(getattr(port, "formatter", None), "output", None)
        if output is not None and output not in (sys.stdout, sys.stderr):
            output.close()
