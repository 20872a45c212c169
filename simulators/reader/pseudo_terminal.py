"""A pseudo-terminal standing in for a reader's serial port, with an optional stable link.

The simulator owns the master side; the agent opens the slave path (`/dev/pts/N`) with
pyserial like any serial device. The slave is put in raw mode so bytes pass unchanged
(no echo, no line editing), and the simulator keeps it open itself so the master never
sees a hangup between the agent's reconnects. With `link`, a symlink (like the ones
under /dev/serial/by-id) is pointed at the slave atomically, so a restarted simulator
re-points the same path, and removed again on close if it still points here.
Writes never block: with nobody reading, the line drops bytes, as a UART would.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import tty

log = logging.getLogger(__name__)


class PseudoTerminal:
    def __init__(self, link: str | None = None):
        self.link = link
        self.device: str | None = None
        self.dropped = 0  # bytes lost because nobody read them
        self._master = self._slave = -1

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

    def wait_readable(self, timeout: float) -> bool:
        return bool(select.select([self._master], [], [], timeout)[0])

    def read(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            if e.errno == errno.EIO:  # no slave open at the moment
                return b""
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except (BlockingIOError, InterruptedError):
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
