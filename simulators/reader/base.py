"""What every simulated reader model shares: the frame type, the command log, boot timing.

A model is a state machine with no I/O, driven by the runner: `receive(bytes, now)` returns
the frames that answer the host's bytes, `poll(now)` what the reader says on its own when
`next_due(now)` has come (streamed tags, round results, boot prompts), `power_cycle(now)`
reboots it. Frames are returned one by one, each naming the EPCs it reports, so the runner
can damage, delay or drop single frames and keep an honest tally of what went out clean.
"""

from __future__ import annotations

import random
from collections import deque
from typing import NamedTuple

from simulators.scenario import Scenario

COMMAND_LOG = 10_000  # commands kept for tests and logs; older ones fall off
FRAME_GAP_S = 0.05  # a pause this long inside a host frame resets the reader's parser, as firmware does


class Frame(NamedTuple):
    """Bytes the reader sends in one piece, and the EPCs they report (one entry per report)."""

    data: bytes
    epcs: tuple[str, ...] = ()


class ReaderModel:
    """Common state; subclasses implement receive/poll/power_cycle and may use `booting()`."""

    dialect = ""

    def __init__(self, scenario: Scenario, *, seed: int | None = None, boot_s: float = 0.5):
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.commands: deque = deque(maxlen=COMMAND_LOG)
        self.boot_s = boot_s
        self.booting_until = 0.0
        self.baudrate: int | None = None  # set by the runner; a model may change it (set baud rate)
        self._rx_at = 0.0

    def host_bytes(self, rest: bytes, data: bytes, now: float) -> bytes:
        """`rest` + `data`, dropping a half-received frame when the host paused inside it."""
        stale = now - self._rx_at > FRAME_GAP_S
        self._rx_at = now
        return data if stale else rest + data

    @property
    def round_s(self) -> float:
        """How long one inventory round takes: one read of every tag in the field."""
        return 1.0 / self.scenario.read_rate_hz

    def booting(self, now: float) -> bool:
        return now < self.booting_until

    def next_due(self, now: float) -> float:
        return float("inf")

    def receive(self, data: bytes, now: float) -> list[Frame]:
        raise NotImplementedError

    def poll(self, now: float) -> list[Frame]:
        return []

    def power_cycle(self, now: float) -> list[Frame]:
        raise NotImplementedError


class AddressedModel(ReaderModel):
    """A binary reader that takes addressed command frames (r2000, chafon): `codec` is the
    dialect's codec module (decode_host, Command, BROADCAST), `_answer` the reply to one."""

    codec = None
    address = 0

    def receive(self, data: bytes, now: float) -> list[Frame]:
        if self.booting(now):
            return []
        items, self._rest = self.codec.decode_host(self.host_bytes(self._rest, data, now))
        out: list[Frame] = []
        for cmd in items:
            if type(cmd) is not self.codec.Command or cmd.address not in (self.address, self.codec.BROADCAST):
                continue  # a real reader drops frames that fail their checksum
            self.commands.append(cmd)
            out += self._answer(cmd, now)
        return out

    def _answer(self, cmd, now: float) -> list[Frame]:
        raise NotImplementedError
