"""A simulated Chafon reader (UHFReader288M by default, or UHFReader18), over its serial line.

Answers get reader information (0x21) and answer-mode inventory (0x01). The UHFReader288M
model takes the bare command (port 1) and the parameter forms (5 bytes as in the notes, or
the 9-byte form of newer SDKs: the antenna byte is the second to last, 0x80 | index);
a round takes `1 / read_rate_hz` seconds, then it replies with the tags of the scenario in
the field on that port, at most `tags_per_frame` per frame, status 0x03 on every frame
but the last and 0x01 on the last; an empty round is status 0x01 with ANT and NUM 0, as a
real 288 answers. The UHFReader18 model (`type_code=0x09`) has one port, answers records
without ANT and RSSI, refuses parameters with 0xFF (parameter error) and ends an empty
round with 0xFB (no tag); `parameters=False` makes a 288-type reader refuse the parameter
forms the same way (firmware that only knows the bare command). Settings commands it
does not model answer "illegal command".
A reboot makes it deaf for `boot_s`. Frames come from the codec's encoders.
"""

from __future__ import annotations

import logging

from agent.readers import chafon
from simulators.reader.base import AddressedModel, Frame
from simulators.scenario import Scenario

log = logging.getLogger(__name__)
Cmd, Status = chafon.Cmd, chafon.Status


class ChafonModel(AddressedModel):
    dialect = chafon.DIALECT
    codec = chafon

    def __init__(self, scenario: Scenario, *, type_code: int = 0x0C, version: tuple[int, int] = (2, 26),
                 address: int = 0, power_dbm: int = 30, tags_per_frame: int = 3, parameters: bool = True,
                 boot_s: float = 0.5, seed: int | None = None):
        super().__init__(scenario, seed=seed, boot_s=boot_s)
        self.type_code, self.version, self.address, self.power_dbm = type_code, version, address, power_dbm
        self.tags_per_frame = tags_per_frame
        self.parameters = parameters and type_code != 0x09
        self._reset()

    @property
    def legacy(self) -> bool:
        return self.type_code == 0x09

    def _reset(self) -> None:
        self.round: tuple[float, int] | None = None  # (due, 1-based port)
        self.rounds = 0
        self._rest = b""

    def _reply(self, cmd: int, status: int, data: bytes = b"") -> list[Frame]:
        return [Frame(chafon.encode_reply(cmd, status, data, self.address))]

    def _answer(self, cmd: chafon.Command, now: float) -> list[Frame]:
        c, d = cmd.command, cmd.data
        if c == Cmd.GET_READER_INFO:
            return [Frame(chafon.encode_reader_info(self.type_code, self.version, self.power_dbm, 10, self.address))]
        if c != Cmd.INVENTORY:
            return self._reply(c, Status.ILLEGAL_COMMAND)
        if not d:
            port = 1
        elif not self.parameters or len(d) not in (5, 9) or not d[-2] & 0x80 or (d[-2] & 0x7F) > 3:
            return self._reply(c, Status.PARAMETER_ERROR)
        else:
            port = (d[-2] & 0x7F) + 1
        if self.round is None:
            self.round = (now + self.round_s, port)
        return []

    def next_due(self, now: float) -> float:
        return self.round[0] if self.round is not None else float("inf")

    def poll(self, now: float) -> list[Frame]:
        if self.round is None or now < self.round[0]:
            return []
        port = self.round[1]
        self.round = None
        self.rounds += 1
        reads = [r for r in self.scenario.reads(now, self.rng) if r.antenna == port]
        antenna = None if self.legacy else port
        if not reads:
            if self.legacy:
                return self._reply(Cmd.INVENTORY, Status.NO_TAG)
            return [Frame(chafon.encode_inventory([], Status.INVENTORY_COMPLETE, antenna, self.address))]
        frames = []
        for i in range(0, len(reads), self.tags_per_frame):
            chunk = reads[i:i + self.tags_per_frame]
            status = Status.MORE_DATA if i + self.tags_per_frame < len(reads) else Status.INVENTORY_COMPLETE
            records = [(bytes.fromhex(r.epc), r.rssi) for r in chunk]
            frames.append(Frame(chafon.encode_inventory(records, status, antenna, self.address),
                                tuple(r.epc for r in chunk)))
        return frames

    def power_cycle(self, now: float) -> list[Frame]:
        log.info("reader power-cycled")
        self._reset()
        self.booting_until = now + self.boot_s
        return []
