"""Runs one simulated reader behind a pseudo-terminal: the loop shared by every dialect.

`SimulatedReader` owns a `PseudoTerminal` and a dialect model (see `MODELS`), and in one
thread for its whole life passes host bytes to the model, writes the model's frames back,
and lets the model speak on its own when it is due. It also misbehaves on request, the
same way for every dialect: `noise` (probability per frame of a burst of 1-16 random bytes
before it), `corrupt` (probability per frame of one flipped bit), `split` (frames written
one byte at a time with random gaps of up to `split_gap_s`), `stall_s` from `stall_at`
(deaf and mute, port open), `reboot_at` (a power cycle: the model's own boot), and
`unplug_at` + `replug_after` (the pty goes away, so an agent holding it gets EIO, and the
link with it; then a new pty behind the same link and a freshly powered reader). With
`baudrate` set it answers only while the host's termios speed on the pty matches, and
turns its own output into garbage otherwise: a pty does not enforce speeds, so this is
how a wrong baud rate looks. `pace_baud` writes no faster than a serial line at that speed
carries (10 bits a byte: start, 8 data, stop), since a pty passes bytes as fast as both
ends go: the line-rate bench streams at 921,600 baud this way. `tally` counts what went out: EPCs in clean frames, frames
damaged, noise bursts. Tests drive the same misbehaviour by hand (`mute`, `stall`,
`reboot`, `unplug`, `replug`, `inject`); `python -m simulators.reader` runs it from a shell.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import Counter, deque

from simulators.reader.alien import AlienModel
from simulators.reader.base import Frame
from simulators.reader.chafon import ChafonModel
from simulators.reader.pseudo_terminal import PseudoTerminal
from simulators.reader.r2000 import R2000Model
from simulators.reader.thingmagic import ThingMagicModel
from simulators.scenario import DEMO, Scenario

log = logging.getLogger(__name__)

MODELS = {"thingmagic": ThingMagicModel, "r2000": R2000Model, "alien": AlienModel, "chafon": ChafonModel}
TICK_S = 0.05  # longest the loop sleeps, so stop() and injected bytes are handled promptly
INF = float("inf")


def until_signalled() -> threading.Event:
    """An event set by SIGTERM or SIGINT: a simulator process waits on it, then closes its ptys."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    return done


class Tally:
    """What the simulator sent, for tests: thread-safe counters."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.clean: Counter = Counter()  # EPC -> reports sent undamaged
            self.damaged: Counter = Counter()  # EPC -> reports sent in a corrupted frame
            self.frames = self.corrupted = self.noise_bursts = self.garbled = 0

    def add(self, frame: Frame, corrupted: bool) -> None:
        with self._lock:
            self.frames += 1
            if corrupted:
                self.corrupted += 1
                self.damaged.update(frame.epcs)
            else:
                self.clean.update(frame.epcs)

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + n)

    def snapshot(self) -> dict:
        with self._lock:
            return {"clean": Counter(self.clean), "damaged": Counter(self.damaged), "frames": self.frames,
                    "corrupted": self.corrupted, "noise_bursts": self.noise_bursts, "garbled": self.garbled}


class SimulatedReader:
    """A reader model on a pty, in a thread. Extra keyword options go to the model."""

    def __init__(self, dialect: str = "thingmagic", scenario: Scenario | None = None, *, link: str | None = None,
                 reboot_at: float | None = None, noise: float = 0.0, corrupt: float = 0.0, split: bool = False,
                 split_gap_s: float = 0.002, stall_s: float = 0.0, stall_at: float = 2.0,
                 unplug_at: float | None = None, replug_after: float = 1.0, baudrate: int | None = None,
                 seed: int | None = None, pace_baud: int | None = None, **model_options):
        if dialect not in MODELS:
            raise ValueError(f"no simulator for dialect {dialect!r} (available: {', '.join(MODELS)})")
        self.model = MODELS[dialect](scenario if scenario is not None else DEMO, seed=seed, **model_options)
        self.model.baudrate = baudrate
        self.pty = PseudoTerminal(link)
        self.reboot_at = reboot_at
        self.noise, self.corrupt, self.split, self.split_gap_s = noise, corrupt, split, split_gap_s
        self.stall_at = stall_at if stall_s > 0 else None
        self.stall_s = stall_s
        self.unplug_at, self.replug_after = unplug_at, replug_after
        self.tally = Tally()
        self.pace_baud = pace_baud
        self._line_free = 0.0  # pace_baud: when the line has sent everything written so far
        self.unplugs = 0
        self._rng = random.Random(None if seed is None else seed + 1)  # misbehaviour, apart from the model's
        self._muted = False
        self._stalled_until = 0.0
        self._replug_at = INF
        self._reboot_now = threading.Event()
        self._stopping = threading.Event()
        self._outbox: deque[bytes] = deque()
        self._requests: deque[str] = deque()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()  # requests from other threads wake the loop at once
        os.set_blocking(self._wake_r, False)
        self._t0 = 0.0

    @property
    def device(self) -> str | None:
        return self.pty.device

    @property
    def dialect(self) -> str:
        return self.model.dialect

    def start(self) -> "SimulatedReader":
        self.pty.open()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"sim-{self.model.dialect}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and close the pty: to the agent, the reader was unplugged."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        self.pty.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"!")
            except (BlockingIOError, OSError):
                pass  # a wake-up is already pending

    def reboot(self) -> None:
        self._reboot_now.set()
        self._wake()

    def inject(self, data: bytes) -> None:
        """Send raw bytes to the host (line noise, a hand-made frame) on the next turn."""
        self._outbox.append(bytes(data))
        self._wake()

    def mute(self, muted: bool = True) -> None:
        """A hung reader: it neither answers nor speaks, but the port stays open."""
        self._muted = muted

    def stall(self, seconds: float) -> None:
        self._stalled_until = self.elapsed() + seconds

    def unplug(self, replug_after: float | None = None) -> None:
        """Pull the cable now; with `replug_after`, plug it back in that many seconds later."""
        self._requests.append("unplug")
        if replug_after is not None:
            self._replug_at = self.elapsed() + replug_after
        self._wake()

    def replug(self) -> None:
        self._requests.append("replug")
        self._wake()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def __enter__(self) -> "SimulatedReader":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the loop ------------------------------------------------------------------------
    def _deaf(self, now: float) -> bool:
        return self._muted or now < self._stalled_until

    def _speed_ok(self) -> bool:
        want = self.model.baudrate
        return want is None or self.pty.host_baudrate() == want

    def _events(self, now: float) -> None:
        while self._requests:
            request = self._requests.popleft()
            if request == "unplug" and self.pty.is_open:
                self.unplugs += 1
                self.pty.close()
            elif request == "replug" and not self.pty.is_open:
                self._plug_in(now)
        if self.unplug_at is not None and now >= self.unplug_at:
            self.unplug_at = None
            if self.pty.is_open:
                self.unplugs += 1
                self.pty.close()
                self._replug_at = now + self.replug_after
        if not self.pty.is_open and now >= self._replug_at:
            self._plug_in(now)
        if self.stall_at is not None and now >= self.stall_at:
            self.stall_at = None
            self._stalled_until = now + self.stall_s
        if self._reboot_now.is_set() or (self.reboot_at is not None and now >= self.reboot_at):
            self._reboot_now.clear()
            self.reboot_at = None
            self._emit(self.model.power_cycle(now), now)

    def _plug_in(self, now: float) -> None:
        self._replug_at = INF
        self.model.power_cycle(now)  # powered up by the plug: whatever it says goes to nobody
        self.pty.open()

    def _loop(self) -> None:
        model, pty = self.model, self.pty
        while not self._stopping.is_set():
            now = self.elapsed()
            self._events(now)
            due = min(model.next_due(now), self.reboot_at if self.reboot_at is not None else INF)
            if not pty.is_open:
                due = self._replug_at
            readable = pty.wait_readable(min(max(due - now, 0.0), TICK_S), self._wake_r)
            self._drain_wakeups()
            if not pty.is_open:
                continue
            if readable:
                data = pty.read()
                if data and not self._deaf(self.elapsed()) and self._speed_ok():
                    self._emit(model.receive(data, self.elapsed()), self.elapsed())
            now = self.elapsed()
            self._emit(model.poll(now), now)
            while self._outbox:
                pty.write(self._outbox.popleft())

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    def _emit(self, frames: list[Frame], now: float) -> None:
        if not frames or self._deaf(now) or not self.pty.is_open:
            return
        if not self._speed_ok():  # wrong baud rate: the host hears garbage
            for frame in frames:
                self.tally.count("garbled")
                self.pty.write(bytes(self._rng.randrange(256) for _ in frame.data))
            return
        rng = self._rng
        for frame in frames:
            data = frame.data
            if self.noise and rng.random() < self.noise:
                self.tally.count("noise_bursts")
                self._write(bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))))
            damaged = bool(self.corrupt) and rng.random() < self.corrupt
            if damaged:
                flipped = bytearray(data)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                data = bytes(flipped)
            self.tally.add(frame, damaged)
            self._write(data)

    def _write(self, data: bytes) -> None:
        if not self.split:
            self.pty.write(data)
            if self.pace_baud:
                self._pace(len(data))
            return
        for i in range(len(data)):
            self.pty.write(data[i:i + 1])
            gap = self._rng.uniform(0, self.split_gap_s)
            if gap > 0.0005:
                time.sleep(gap)

    def _pace(self, n: int) -> None:
        """Hold the next write until the line has carried these `n` bytes; sleeps only when
        more than 2 ms ahead, so the line runs in bursts of a few frames, as a UART's FIFO does."""
        now = time.monotonic()
        self._line_free = max(self._line_free, now) + n * 10 / self.pace_baud
        if self._line_free - now > 0.002:
            time.sleep(self._line_free - now)
