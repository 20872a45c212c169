"""A pseudo-terminal standing in for a reader's serial port, with an optional stable link.

The simulator owns the master side; the agent opens the slave path (`/dev/pts/N`) with
pyserial like any serial device. The slave is put in raw mode so bytes pass unchanged
(no echo, no line editing), and the simulator keeps it open itself so the master never
sees a hangup between the agent's reconnects. With `link`, a symlink (like the ones
under /dev/serial/by-id) is pointed at the slave atomically, so a restarted simulator
re-points the same path, and removed again on close if it still points here. `close()`
is an unplug: both ends go, so an agent still holding the slave gets EIO/hangup, and the
link disappears as udev's would; `open()` again is the replug, on a new pty.
Writes never block: with nobody reading, the line drops bytes, as a UART would.
A pty carries no baud rate, but the termios speed the host set on the slave is shared by
every fd of it: `host_baudrate()` reads it, so the simulator can refuse a wrong speed.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import termios
import tty

log = logging.getLogger(__name__)

SPEEDS = {getattr(termios, f"B{rate}"): rate for rate in (
    1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000)
    if hasattr(termios, f"B{rate}")}


class PseudoTerminal:
    def __init__(self, link: str | None = None):
        self.link = link
        self.device: str | None = None
        self.dropped = 0  # bytes lost because nobody read them
        self._master = self._slave = -1

    @property
    def is_open(self) -> bool:
        return self._master >= 0

    def open(self) -> str:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.device = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.device, tmp)
            os.replace(tmp, self.link)  # atomic: the path never dangles while re-pointed
        return self.device

    def host_baudrate(self) -> int | None:
        """The speed the host last set on the slave (a new pty starts at 38400), None if unknown."""
        if self._slave < 0:
            return None
        try:
            return SPEEDS.get(termios.tcgetattr(self._slave)[5])
        except termios.error:
            return None

    def wait_readable(self, timeout: float, wake_fd: int = -1) -> bool:
        """True if the host sent bytes; also returns early when `wake_fd` becomes readable."""
        fds = [fd for fd in (self._master, wake_fd) if fd >= 0]
        if not fds:
            return False
        return self._master in select.select(fds, [], [], timeout)[0]

    def read(self) -> bytes:
        if self._master < 0:
            return b""
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            if e.errno == errno.EIO:  # no slave open at the moment
                return b""
            raise

    def write(self, data: bytes) -> None:
        if self._master < 0:
            self.dropped += len(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except (BlockingIOError, InterruptedError):
                self.dropped += len(view)
                return
            except OSError as e:  # EIO: the line is going down
                log.debug("pty write: %s", e)
                self.dropped += len(view)
                return

    def close(self) -> None:
        if self.link and self.device:
            try:
                if os.readlink(self.link) == self.device:
                    os.unlink(self.link)
            except OSError:
                pass
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
