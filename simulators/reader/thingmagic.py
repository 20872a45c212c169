"""A simulated ThingMagic Mercury module, as the host sees it over its serial line.

The model is a state machine with no I/O: `receive(bytes, now)` returns the replies,
`poll(now)` returns what the module says on its own (streamed tags, keep-alives),
`power_cycle(now)` reboots it. It powers up in the bootloader, which answers get
version and boot firmware (switching to the application) and refuses everything else
with "invalid opcode"; the application refuses boot firmware the same way. Settings are
checked as a module checks them (invalid region / invalid parameter). While streaming it
sends one tag frame per tag in the scenario's field on a configured antenna, with only
the metadata the host asked for in METADATAFLAGS, and a keep-alive (status 0x0400, LEN
0) every `keepalive_s` while its field is empty. A reboot announces itself with an
unsolicited 0x04 frame unless `announce_boot` is off. Frames come from the codec's
encoders, so the simulator and the agent agree by construction; the agent's tests check
the codec against hand-written bytes.
"""

from __future__ import annotations

import logging

from agent.readers import thingmagic as tm
from simulators.reader.base import Frame, ReaderModel
from simulators.scenario import Scenario

log = logging.getLogger(__name__)

OP = tm.Opcode
ST = tm.Status
HOP_TABLES = {"EU": (865700, 866300, 866900, 867500), "EU3": (865700, 866300, 866900, 867500),
              "JP": (916800, 918000, 919200, 920400), "PRC": (920625, 921375, 922125, 922875)}
NA_HOPS = tuple(902750 + 500 * k for k in range(50))


class ThingMagicModel(ReaderModel):
    dialect = tm.DIALECT

    def __init__(self, scenario: Scenario, *, hardware: int = 0x18, ports: int = 4, regions=None,
                 keepalive_s: float | None = None, announce_boot: bool = True, start_streaming: bool = False,
                 seed: int | None = None, boot_s: float = 0.0):
        super().__init__(scenario, seed=seed, boot_s=boot_s)
        self.ports = ports
        self.regions = set(regions) if regions is not None else set(tm.Region)
        self.keepalive_s = keepalive_s if keepalive_s is not None else scenario.keepalive_s
        self.announce_boot = announce_boot
        self.version_block = tm.encode_version_block(bytes.fromhex("12060600"), bytes([hardware, 0, 0, 0x20]),
                                                     bytes.fromhex("20230915"), bytes.fromhex("01210014"))
        self._rest = b""
        self._reset()
        if start_streaming:  # as if a previous host had started it and gone away
            self.application, self.region, self.antennas = True, tm.Region.NA2, [1]
            self._start_streaming(tm.META_REPORT, 0.0)

    def _reset(self) -> None:
        self.application = False
        self.streaming = False
        self.region: int | None = None
        self.protocol: int | None = None
        self.antennas: list[int] = []
        self.power_cdbm = 3000
        self.metadata_flags = 0
        self._stream_start = self._next_cycle = self._last_sent = 0.0

    # --- host -> module ----------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Frame]:
        items, self._rest = tm.decode_host(self.host_bytes(self._rest, data, now))
        out = []
        for item in items:
            if type(item) is tm.Command:  # a real module drops frames with a bad CRC
                self.commands.append(item)
                reply = self._answer(item, now)
                log.info("host %s -> %s", tm.opcode_name(item.opcode), tm.status_name(reply[3] << 8 | reply[4]))
                out.append(Frame(reply))
        return out

    def _answer(self, cmd: tm.Command, now: float) -> bytes:
        op, data = cmd.opcode, cmd.data
        if op == OP.GET_VERSION:
            return tm.encode_reply(op, ST.OK, self.version_block)
        if op == OP.BOOT_FIRMWARE:
            if self.application:
                return tm.encode_reply(op, ST.INVALID_OPCODE)
            self.application = True
            return tm.encode_reply(op, ST.OK, self.version_block)
        handler = getattr(self, f"_on_{tm.opcode_name(op)}", None) if self.application else None
        if handler is None:
            return tm.encode_reply(op, ST.INVALID_OPCODE)
        try:
            status, reply = handler(data, now)
        except (IndexError, ValueError):
            status, reply = ST.INVALID_PARAMETER, b""
        return tm.encode_reply(op, status, reply)

    def _on_set_region(self, data: bytes, now: float):
        if len(data) != 1 or data[0] not in self.regions:
            return ST.INVALID_REGION, b""
        self.region = data[0]
        return ST.OK, b""

    def _on_set_protocol(self, data: bytes, now: float):
        if int.from_bytes(data, "big") != tm.PROTOCOL_GEN2:
            return ST.INVALID_PARAMETER, b""
        self.protocol = tm.PROTOCOL_GEN2
        return ST.OK, b""

    def _on_set_antenna_port(self, data: bytes, now: float):
        if len(data) == 2:  # one TX/RX pair
            pairs = [(data[0], data[1])]
        elif data[0] == 2 and len(data) % 2:  # search list: option 2, then TX/RX pairs
            pairs = [(data[i], data[i + 1]) for i in range(1, len(data), 2)]
        else:
            pairs = []
        if not pairs or any(not 1 <= p <= self.ports for pair in pairs for p in pair):
            return ST.INVALID_PARAMETER, b""
        self.antennas = [rx for _tx, rx in pairs]
        return ST.OK, b""

    def _on_set_read_power(self, data: bytes, now: float):
        power = int.from_bytes(data[0:2], "big", signed=True)
        if len(data) != 2 or not 0 <= power <= 3150:
            return ST.INVALID_PARAMETER, b""
        self.power_cdbm = power
        return ST.OK, b""

    def _on_multi_protocol_tag_op(self, data: bytes, now: float):
        if data[2] == 2:  # stop continuous reading
            self.streaming = False
            return ST.OK, b"\x02"  # the SDK reads the option at data[0] to tell a stop reply apart
        start = tm.parse_start_reading(data)
        if start.protocol != tm.PROTOCOL_GEN2 or start.metadata_flags & ~tm.META_KNOWN or self.region is None:
            return ST.INVALID_PARAMETER, b""
        self._start_streaming(start.metadata_flags, now)
        return ST.OK, b"\x01"

    def _start_streaming(self, metadata_flags: int, now: float) -> None:
        self.streaming, self.metadata_flags = True, metadata_flags
        self._stream_start = self._next_cycle = self._last_sent = now

    # --- module -> host, unasked -------------------------------------------------------
    def next_due(self, now: float) -> float:
        return self._next_cycle if self.streaming else float("inf")

    def poll(self, now: float) -> list[Frame]:
        if not self.streaming or now < self._next_cycle:
            return []
        self._next_cycle = max(self._next_cycle + 1.0 / self.scenario.read_rate_hz, now)
        reads = [r for r in self.scenario.reads(now, self.rng) if r.antenna in self.antennas]
        if not reads:
            if now - self._last_sent < self.keepalive_s:
                return []
            self._last_sent = now
            return [Frame(tm.encode_keepalive())]
        self._last_sent = now
        hops = HOP_TABLES.get(tm.region_name(self.region), NA_HOPS)
        stamp = int((now - self._stream_start) * 1000) & 0xFFFFFFFF
        return [Frame(tm.encode_tag_frame(bytes.fromhex(r.epc), self.metadata_flags, count=1, rssi=max(-128, r.rssi),
                                          antenna=r.antenna, frequency_khz=self.rng.choice(hops), timestamp_ms=stamp,
                                          phase=self.rng.randrange(0, 180), q=4, target=0), (r.epc,))
                for r in reads]

    def power_cycle(self, now: float) -> list[Frame]:
        """Reboot: back in the bootloader, settings lost, not streaming."""
        log.info("module power-cycled%s", "" if self.announce_boot else " (silently)")
        self._reset()
        self._rest = b""
        return [Frame(tm.encode_reply(OP.BOOT_FIRMWARE, ST.OK, self.version_block))] if self.announce_boot else []
