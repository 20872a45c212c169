"""Runs one simulated reader behind a pseudo-terminal: the loop shared by every dialect.

`SimulatedReader` owns a `PseudoTerminal` and a dialect model (see `MODELS`), and in
its own thread passes host bytes to the model, writes the replies back, and lets the
model speak on its own (streamed tags, keep-alives) when it is due. Tests use it in
process (`start()`, `stop()`, `reboot()`, `inject()`, `mute()`); `python -m
simulators.reader` runs the same loop for a shell. Scenario time starts at `start()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from simulators.reader.pseudo_terminal import PseudoTerminal
from simulators.reader.thingmagic import ThingMagicModel
from simulators.scenario import DEMO, Scenario

log = logging.getLogger(__name__)

MODELS = {"thingmagic": ThingMagicModel}
TICK_S = 0.05  # longest the loop sleeps, so stop() and injected bytes are handled promptly


class SimulatedReader:
    """A reader model on a pty, in a thread. Extra keyword options go to the model."""

    def __init__(self, dialect: str = "thingmagic", scenario: Scenario | None = None, *, link: str | None = None,
                 reboot_at: float | None = None, **model_options):
        if dialect not in MODELS:
            raise ValueError(f"no simulator for dialect {dialect!r} (available: {', '.join(MODELS)})")
        self.model = MODELS[dialect](scenario if scenario is not None else DEMO, **model_options)
        self.pty = PseudoTerminal(link)
        self.reboot_at = reboot_at
        self._reboot_now = threading.Event()
        self._stopping = threading.Event()
        self._outbox: deque[bytes] = deque()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    @property
    def device(self) -> str | None:
        return self.pty.device

    def start(self) -> "SimulatedReader":
        self.pty.open()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"sim-{self.model.dialect}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and close the pty: to the agent, the reader was unplugged."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self.pty.close()

    def reboot(self) -> None:
        self._reboot_now.set()

    def inject(self, data: bytes) -> None:
        """Send raw bytes to the host (line noise, a hand-made frame) on the next turn."""
        self._outbox.append(bytes(data))

    def mute(self, muted: bool = True) -> None:
        """A hung module: it neither answers nor streams, but the port stays open."""
        self.model.muted = muted

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def __enter__(self) -> "SimulatedReader":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        model, pty = self.model, self.pty
        while not self._stopping.is_set():
            now = self.elapsed()
            due = model.next_due(now)
            if self.reboot_at is not None:
                due = min(due, self.reboot_at)
            if pty.wait_readable(min(max(due - now, 0.0), TICK_S)):
                data = pty.read()
                if data:
                    pty.write(model.receive(data, self.elapsed()))
            now = self.elapsed()
            if self._reboot_now.is_set() or (self.reboot_at is not None and now >= self.reboot_at):
                self._reboot_now.clear()
                self.reboot_at = None
                pty.write(model.power_cycle(now))
            out = model.poll(now)
            if out:
                pty.write(out)
            while self._outbox:
                pty.write(self._outbox.popleft())
