"""The byte pipe to one reader: any pyserial URL, opened with timeouts, read in chunks.

`/dev/ttyUSB0`, `/dev/pts/N`, a `/dev/serial/by-id/...` link, `socket://host:port`,
`loop://` and `spy://...` all open through `serial.serial_for_url`. The port is opened
exclusively (where the platform can lock it) so that a second program cannot steal
half the frames. Reads return whatever arrived within `read_timeout` (possibly b""),
so the caller's loop keeps its own clock for silence and command timeouts. Unplugging
shows up as `serial.SerialException` or `OSError` from `open`, `read` or `write`; the
session turns those into "down". Nothing here knows a dialect.
"""

from __future__ import annotations

import logging
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
        log.debug("opened %s at %d baud", self.url, self.baudrate)

    def read(self) -> bytes:
        """Bytes that arrived within read_timeout, b"" if none; raises on hangup."""
        port = self._port
        if port is None:
            raise serial.PortNotOpenError()
        # A pyserial read returns at CHUNK bytes or at the timeout, whichever first, so a
        # busy line is read in large batches and a quiet one costs one wake-up per timeout.
        return port.read(CHUNK)

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
        port, self._port = self._port, None
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
