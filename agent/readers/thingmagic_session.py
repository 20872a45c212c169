"""The ThingMagic Mercury session: init sequence, continuous reading, reboot detection.

Init (run on every open, so a restarted agent meets a streaming module correctly):
stop reading (a module left streaming must stop before it takes settings; any answer,
even "invalid opcode" from a bootloader, proves a module is there), boot firmware
(modules power up in the bootloader; a bootloader answers OK with the version block,
an application already running refuses the opcode, and both are fine), get version
(model and firmware), set region, set protocol Gen2, set the antenna search list,
set read power, start continuous reading with the metadata a `TagReport` carries.
Each command waits for the reply with its own opcode; an error status becomes a
`ReaderError` naming the status. While streaming, keep-alives prove the module alive.
A module that reboots announces itself with an unsolicited 0x04 (boot) frame, as the
Mercury SDK notes for the M6e; the session then re-initialises at once. A module that
reboots silently stops streaming, so the silence timeout catches it, and the reopen
re-runs the same init, which starts with a boot that works from the bootloader.
"""

from __future__ import annotations

import logging

from agent.errors import ReaderError
from agent.readers import thingmagic as tm
from agent.readers.session import ReaderDown, ReaderSession

log = logging.getLogger(__name__)


def _reply_to(opcode: int):
    return lambda item: type(item) is tm.Reply and item.opcode == opcode and not item.is_keepalive


class ThingMagicSession(ReaderSession):
    dialect = tm.DIALECT
    boot_timeout_s = 3.0  # leaving the bootloader takes the module a few hundred ms
    attempts = 3
    metadata_flags = tm.META_REPORT
    streams = True  # continuous reading: reports and keep-alives come unasked

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        return tm.decode(buffer, final)

    def initialise(self) -> None:
        cfg = self.cfg
        if cfg.region not in tm.Region.__members__:
            raise ReaderError(self.name, f"region {cfg.region!r} is not a ThingMagic region")
        self._call(tm.build_stop_reading(), "stop reading", accept_error=True)
        boot = self._call(tm.build_boot_firmware(), "boot firmware", timeout=self.boot_timeout_s, accept_error=True)
        log.debug("reader %s: boot firmware answered %s", self.name, boot.status_name)
        version = self._call(tm.build_get_version(), "get version")
        try:
            info = tm.parse_version(version.data)
        except ValueError as e:
            raise ReaderError(self.name, f"get version: {e}") from None
        self.model, self.firmware = info.model, info.firmware_version
        log.info("reader %s: ThingMagic %s", self.name, info.to_dict())
        self._call(tm.build_set_region(cfg.region), f"set region {cfg.region}")
        self._call(tm.build_set_protocol(tm.PROTOCOL_GEN2), "set protocol Gen2")
        self._call(tm.build_set_antenna_ports(cfg.antennas), f"set antennas {list(cfg.antennas)}")
        self._call(tm.build_set_read_power(round(cfg.read_power_dbm * 100)), f"set read power {cfg.read_power_dbm:g} dBm")
        self._call(tm.build_start_reading(self.metadata_flags), "start reading")

    def _call(self, frame: bytes, what: str, timeout: float | None = None, accept_error: bool = False) -> tm.Reply:
        # Every init command is idempotent, so a reply lost to line noise is asked for again.
        reply = self.command(frame, _reply_to(frame[2]), what, timeout, attempts=self.attempts)
        if not reply.ok and not accept_error:
            raise ReaderError(self.name, f"{what}: module answered {reply.status_name} (0x{reply.status:04X})")
        return reply

    def on_frame(self, item) -> None:
        if type(item) is not tm.Reply:
            return
        if item.opcode == tm.Opcode.BOOT_FIRMWARE and self.streaming:
            raise ReaderDown("reader restarted: it announced a fresh boot")
        if not item.ok and not item.is_keepalive:
            log.warning("reader %s: module reported %s (0x%04X) for opcode 0x%02X",
                        self.name, item.status_name, item.status, item.opcode)

    def stop_command(self) -> bytes:
        return tm.build_stop_reading()

    def is_stop_reply(self, item) -> bool:
        return _reply_to(tm.Opcode.MULTI_PROTOCOL_TAG_OP)(item)
