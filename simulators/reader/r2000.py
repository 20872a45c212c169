"""A simulated R2000 (0xA0 protocol) reader, as the host sees it over its serial line.

Answers commands sent to its address or to broadcast: firmware version, set/get work
antenna (0-3), set/get output power (kept "in flash": a reboot keeps it; one value, or
four with `power_per_port`), set/get region, set baud rate (the runner then listens at
the new speed), reset (a reboot). A real-time inventory (0x89, or 0x8B with session and
target) takes `repeat` rounds of `1 / read_rate_hz` seconds, then sends one tag frame per
tag of the scenario in the field on the work antenna and an end-of-round frame; on a port
listed in `missing` it answers the antenna-missing error as real readers do (`ANT 22`).
A command for a round already running is ignored, as the hardware does. A reboot (or
power-up) makes it deaf for `boot_s`, back on antenna 1 with no round running. Unknown
commands answer "fail" (0x11). Frames come from the codec's encoders.
"""

from __future__ import annotations

import logging

from agent.readers import r2000
from simulators.reader.base import AddressedModel, Frame
from simulators.scenario import Scenario

log = logging.getLogger(__name__)
Cmd, Result = r2000.Cmd, r2000.Result


class R2000Model(AddressedModel):
    dialect = r2000.DIALECT
    codec = r2000

    def __init__(self, scenario: Scenario, *, address: int = 1, firmware: tuple[int, int] = (1, 9), ports: int = 4,
                 missing=(), power_dbm: int = 30, power_per_port: bool = False, boot_s: float = 0.5,
                 seed: int | None = None):
        super().__init__(scenario, seed=seed, boot_s=boot_s)
        self.address, self.firmware, self.ports = address, firmware, ports
        self.missing = set(missing)
        self.power = [power_dbm] * (4 if power_per_port else 1)
        self.region = b"\x01\x07\x3b"  # FCC, 902-928 MHz
        self._rest = b""
        self._reset()

    def _reset(self) -> None:
        self.work_antenna = 0
        self.round: tuple[float, int, int] | None = None  # (due, command, antenna index)
        self.rounds = 0
        self._rest = b""

    # --- host -> reader ------------------------------------------------------------------

    def _result(self, cmd: int, code: int = Result.SUCCESS) -> list[Frame]:
        return [Frame(r2000.encode_result(cmd, code, self.address))]

    def _answer(self, cmd: r2000.Command, now: float) -> list[Frame]:
        c, d = cmd.command, cmd.data
        if c == Cmd.GET_FIRMWARE_VERSION:
            return [Frame(r2000.encode_firmware_version(*self.firmware, self.address))]
        if c == Cmd.SET_WORK_ANTENNA:
            if len(d) != 1 or d[0] >= self.ports:
                return self._result(c, Result.INVALID_PARAMETER)
            self.work_antenna = d[0]
            return self._result(c)
        if c == Cmd.GET_WORK_ANTENNA:
            return [Frame(r2000.encode_frame(c, bytes((self.work_antenna,)), self.address))]
        if c == Cmd.GET_OUTPUT_POWER:
            return [Frame(r2000.encode_frame(c, bytes(self.power), self.address))]
        if c == Cmd.SET_OUTPUT_POWER:
            if len(d) not in (1, len(self.power)) or any(p > 33 for p in d):
                return self._result(c, Result.INVALID_PARAMETER)
            self.power = list(d) * (len(self.power) // len(d))
            return self._result(c)
        if c == Cmd.GET_REGION:
            return [Frame(r2000.encode_frame(c, self.region, self.address))]
        if c == Cmd.SET_REGION:
            self.region = d
            return self._result(c)
        if c == Cmd.SET_BAUD_RATE:
            if len(d) != 1 or d[0] not in r2000.BAUD_CODES:
                return self._result(c, Result.INVALID_PARAMETER)
            reply = self._result(c)
            self.baudrate = r2000.BAUD_CODES[d[0]]
            return reply
        if c == Cmd.RESET:
            return self.power_cycle(now)
        if c in (Cmd.REAL_TIME_INVENTORY, Cmd.SESSION_TARGET_INVENTORY):
            if self.round is None:
                repeat = d[-1] if d else 1
                self.round = (now + self.round_s * max(1, repeat), c, self.work_antenna)
            return []
        return self._result(c, Result.FAIL)

    # --- reader -> host, when a round ends -----------------------------------------------
    def next_due(self, now: float) -> float:
        return self.round[0] if self.round is not None else float("inf")

    def poll(self, now: float) -> list[Frame]:
        if self.round is None or now < self.round[0]:
            return []
        _, cmd, index = self.round
        self.round = None
        self.rounds += 1
        port = index + 1
        if port in self.missing:
            return [Frame(r2000.encode_inventory_error(Result.ANTENNA_MISSING, cmd, port, self.address))]
        reads = [r for r in self.scenario.reads(now, self.rng) if r.antenna == port]
        frames = [Frame(r2000.encode_tag(bytes.fromhex(r.epc), port, r.rssi, self.rng.randrange(7, 60), cmd=cmd,
                                         address=self.address), (r.epc,)) for r in reads]
        frames.append(Frame(r2000.encode_round_end(port, min(0xFFFF, round(len(reads) / self.round_s)), len(reads), cmd,
                                                   self.address)))
        return frames

    def power_cycle(self, now: float) -> list[Frame]:
        log.info("reader power-cycled")
        self._reset()
        self.booting_until = now + self.boot_s
        return []
