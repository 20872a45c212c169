"""The R2000 (0xA0 protocol) session: identification, read power, real-time inventory rounds.

Init (on every open): get firmware version (model and firmware: these readers have no model
query, so the model is the protocol family), then get output power and set it only if it
differs from `read_power_dbm` (the reader keeps it in flash, so an unconditional set on
every reconnect would wear the flash and change nothing). Region is left as the reader
holds it (the notes give no layout for 0x78; set it once with the vendor tool). Reading is
polling: for each configured antenna in turn, set work antenna, then a real-time inventory
of `repeat` rounds; the reader answers one frame per tag and ends with an end-of-round or
an error frame, and the next round starts. The work antenna is set before every round, so
a reader that rebooted silently (back on antenna 1) reads the right port again at once.
Every answer, an empty round's end frame too, proves the reader alive; a round that never
ends is given up after `round_timeout_s` and polling goes on, while real silence trips the
session's silence timeout. "Antenna missing" errors are logged once per antenna and port.
"""

from __future__ import annotations

import logging
import time

from agent.errors import ReaderError
from agent.readers import r2000
from agent.readers.polling import PollCycle
from agent.readers.session import ReaderSession

log = logging.getLogger(__name__)
Cmd = r2000.Cmd


def _reply_to(cmd: int):
    return lambda item: type(item) is r2000.Reply and item.command == cmd


class R2000Session(ReaderSession):
    dialect = r2000.DIALECT
    round_timeout_s = 1.0
    repeat = 1  # inventory rounds per command: 1 keeps antenna switching and the alive signal frequent
    attempts = 3  # each init command is sent up to this often on a noisy line

    def __init__(self, cfg, on_report, on_state, **options):
        super().__init__(cfg, on_report, on_state, **options)
        self._cycle = PollCycle(cfg.antennas, self.round_timeout_s, tags_seen=lambda: self.tags_seen)
        self._step = ""  # "antenna" while waiting for set work antenna, "inventory" during a round
        self._warned: set[tuple[int, int]] = set()

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        return r2000.decode(buffer, final)

    def initialise(self) -> None:
        bad = [a for a in self.cfg.antennas if not 1 <= a <= 4]
        if bad:
            raise ReaderError(self.name, f"antennas {bad}: an R2000 reader has ports 1-4")
        reply = self._call(r2000.build_get_firmware_version(), Cmd.GET_FIRMWARE_VERSION, "get firmware version")
        try:
            self.firmware = r2000.firmware_version(reply)
        except ValueError as e:
            raise ReaderError(self.name, f"get firmware version: {e}") from None
        self.model = "R2000"
        log.info("reader %s: R2000 firmware %s at address %d", self.name, self.firmware, reply.address)
        self._configure_power()
        self._cycle.reset()
        self._step = ""

    def _call(self, frame: bytes, cmd: int, what: str) -> r2000.Reply:
        return self.command(frame, _reply_to(cmd), what, attempts=self.attempts)

    def _configure_power(self) -> None:
        want = round(self.cfg.read_power_dbm)
        have = list(self._call(r2000.build_get_output_power(), Cmd.GET_OUTPUT_POWER, "get output power").data)
        if have and all(p == want for p in have):
            return
        frame = r2000.build_set_output_power([want] * 4 if len(have) == 4 else want)
        reply = self._call(frame, Cmd.SET_OUTPUT_POWER, f"set output power {want} dBm")
        if not reply.ok:
            code = reply.code if reply.code is not None else -1
            raise ReaderError(self.name, f"set output power {want} dBm: reader answered {r2000.result_name(code)}")
        log.info("reader %s: output power %s -> %d dBm", self.name, have, want)

    def poll(self) -> None:
        now = time.monotonic()
        if not self._cycle.due(now):
            return
        self.send(r2000.build_set_work_antenna(self._cycle.antenna))
        self._step = "antenna"
        self._cycle.started(now)

    def on_frame(self, item) -> None:
        kind, now = type(item), time.monotonic()
        if kind is r2000.Reply:
            if item.command == Cmd.SET_WORK_ANTENNA and self._step == "antenna" and self._cycle.busy:
                if item.ok:
                    self.send(r2000.build_real_time_inventory(self.repeat))
                    self._step = "inventory"
                    self._cycle.started(now)
                else:
                    self._warn(item.code or 0, f"set work antenna {self._cycle.antenna} refused")
                    self._cycle.finished(now)
        elif kind is r2000.RoundEnd:
            if self._step == "inventory":
                self._cycle.finished(now)
        elif kind is r2000.InventoryError:
            name = r2000.result_name(item.code)
            port = item.antenna or self._cycle.antenna
            self._warn(item.code, f"antenna {port}: {name}" if item.code == r2000.Result.ANTENNA_MISSING
                       else f"inventory failed: {name}")
            if self._step == "inventory":
                self._cycle.finished(now)

    def _warn(self, code: int, text: str) -> None:
        key = (self._cycle.antenna, code)
        if key not in self._warned:  # a missing antenna answers every round: say it once
            self._warned.add(key)
            log.warning("reader %s: %s", self.name, text)
