"""Child processes the demo starts and must not leave behind, whatever happens.

Each child runs in its own session, hence its own process group, so `stop()` signals
the whole group: a child's own children (a pty helper, a worker) die with it. Output
goes to a log file in the run directory; `first_line()` reads the one line a child
announces on stdout (the reader simulator's pty path) and then keeps copying the rest
to the log, so a chatty child can never block on a full pipe.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path


class ChildError(RuntimeError):
    """A child did not start, or did not say what it should have."""


class Child:
    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None, announce: bool = False):
        self.name, self.argv, self.log_path, self.cwd, self.env = name, argv, Path(log_path), cwd, env
        self.announce = announce  # True: the child prints one line on stdout that we want
        self.proc: subprocess.Popen | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> "Child":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.announce else log, stderr=log, start_new_session=True)
        return self

    def first_line(self, timeout: float) -> str:
        """The first stdout line (without its newline); the rest of stdout goes to the log."""
        assert self.proc and self.proc.stdout, "start(announce=True) first"
        data = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChildError(f"{self.name} printed no line within {timeout:.0f} s")
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise ChildError(f"{self.name} exited ({self.proc.wait()}) before printing its line")
                    data += chunk
        line, rest = data.split(b"\n", 1)
        self._pump = threading.Thread(target=self._copy_stdout, args=(rest,), name=f"{self.name}-stdout",
                                      daemon=True)
        self._pump.start()
        return line.decode(errors="replace").strip()

    def _copy_stdout(self, rest: bytes) -> None:
        with open(self.log_path, "ab") as log:
            log.write(rest)
            for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 65536), b""):
                log.write(chunk)
                log.flush()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 5.0) -> bool:
        """SIGTERM to the whole group, SIGKILL after `timeout`; safe to call twice.

        True when SIGTERM was enough (or nothing was running).
        """
        if self.proc is None:
            return True
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        graceful = True
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break  # nobody left in the group
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                graceful = False
                continue
            if not _group_alive(pgid):
                break
            # the leader is gone but someone in its group is not: SIGKILL catches them
        if self.proc.poll() is None:
            self.proc.wait()
        if self._pump:
            self._pump.join(2)
        if self.proc.stdout:
            self.proc.stdout.close()
        return graceful

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
