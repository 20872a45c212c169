"""The Alien session: wait out a boot, configure the tag list, poll `get TagList`.

Init (on every open, so a reader left in autonomous mode or booting is met correctly): ask
`get ReaderVersion` until it answers (a reader that answers `Boot>` is still booting: wait
up to `boot_timeout_s`), `get ReaderType` for the model, then switch notifications off (a
reader left in autonomous mode with NotifyAddress = serial would otherwise talk over our
replies; notification tag lines that arrive meanwhile are real reads and delivered),
AutoMode off while configuring, TagListFormat Custom with `alien.DRIVER_FORMAT` (every field
twice: the serial link has no checksum, and a line whose copies differ is rejected),
TagListAntennaCombine off (a read per antenna), the configured AntennaSequence (ports
0-based on the wire), PersistTime -1 (the list builds up until `get TagList` returns and
clears it, so nothing read between polls is lost), AcquireMode Inventory and AutoMode on.
Then poll `get TagList` every `poll_interval_s`; a reply ends with a NUL, and `(No Tags)`
is the idle answer that proves the reader alive. Commands go with the 0x01 prefix (no
prompt) and are retried on a noisy line; replies are matched by setting name, whatever
the reader's spelling of the value, except TagListCustomFormat, whose echo must be exact.
A `Boot>` prompt while reading means the reader restarted: re-initialise at once. On
shutdown AutoMode goes off, so the reader stops transmitting. Read power is not set (the
notes give no command for it).
"""

from __future__ import annotations

import logging
import re
import time

from agent.errors import ReaderError
from agent.readers import alien
from agent.readers.polling import PollCycle
from agent.readers.session import ReaderDown, ReaderSession

log = logging.getLogger(__name__)
Message = alien.Message
_MODEL = re.compile(r"Model:\s*([^\s(,]+)")


def _value(name: str, or_error: bool = False):
    wanted = name.lower()

    def matches(item) -> bool:
        if type(item) is not Message:
            return False
        if item.kind == "value":  # endswith: noise glued in front of the name is harmless
            return item.name.lower().endswith(wanted)
        return or_error and item.kind == "error"
    return matches


def _boot_or_version(item) -> bool:
    return item == alien.PROMPT_BOOT or _value("ReaderVersion")(item)


class AlienSession(ReaderSession):
    dialect = alien.DIALECT
    poll_interval_s = 0.1
    round_timeout_s = 2.0  # a get TagList whose reply never ends is given up after this
    boot_timeout_s = 90.0  # an F800 takes about a minute to boot
    boot_poll_s = 0.5
    attempts = 3

    def __init__(self, cfg, on_report, on_state, **options):
        super().__init__(cfg, on_report, on_state, **options)
        self._decoder = alien.Decoder(alien.DRIVER_FORMAT)
        self._cycle = PollCycle((1,), self.round_timeout_s, self.poll_interval_s)

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        return self._decoder.decode(buffer, final)

    def settings(self) -> list[tuple[str, str, bool]]:
        """(name, value, required) in the order they are set."""
        ports = ",".join(str(a - 1) for a in self.cfg.antennas)
        return [("NotifyMode", "Off", False), ("AutoMode", "Off", True), ("TagListFormat", "Custom", True),
                ("TagListCustomFormat", alien.DRIVER_FORMAT, True), ("TagListAntennaCombine", "Off", False),
                ("AntennaSequence", ports, True), ("PersistTime", "-1", True), ("AcquireMode", "Inventory", False),
                ("AutoMode", "On", True)]

    def initialise(self) -> None:
        bad = [a for a in self.cfg.antennas if not 1 <= a <= 8]
        if bad:
            raise ReaderError(self.name, f"antennas {bad}: Alien readers number their ports 1-8 here (0-7 on the wire)")
        self.firmware = self._await_boot()
        reader_type = self.command(alien.build_get("ReaderType"), _value("ReaderType", True), "get ReaderType",
                                   attempts=self.attempts)
        m = _MODEL.search(reader_type.value)
        self.model = m.group(1) if m else (reader_type.value or "Alien reader")
        log.info("reader %s: Alien %s, firmware %s", self.name, reader_type.value, self.firmware)
        for name, value, required in self.settings():
            self._set(name, value, required)
        self._cycle = PollCycle((1,), self.round_timeout_s, self.poll_interval_s)

    def _await_boot(self) -> str:
        deadline = time.monotonic() + self.boot_timeout_s
        while True:
            item = self.command(alien.build_get("ReaderVersion"), _boot_or_version, "get ReaderVersion",
                                attempts=self.attempts)
            if item != alien.PROMPT_BOOT:
                return item.value
            if time.monotonic() > deadline:
                raise ReaderError(self.name, f"still booting after {self.boot_timeout_s:g} s")
            log.info("reader %s: booting; waiting", self.name)
            if self._stopping.wait(self.boot_poll_s):
                raise ReaderDown("stopping")

    def _set(self, name: str, value: str, required: bool) -> None:
        what = f"set {name} = {value}"
        reply = self.command(alien.build_set(name, value), _value(name, True), what, attempts=self.attempts)
        if reply.kind == "error":
            if required:
                raise ReaderError(self.name, f"{what}: Error {reply.name}: {reply.value}")
            log.warning("reader %s: %s: Error %s: %s (carrying on)", self.name, what, reply.name, reply.value)
        elif name == "TagListCustomFormat" and reply.value != value:
            raise ReaderError(self.name, f"{what}: the reader kept {reply.value!r}")

    def poll(self) -> None:
        now = time.monotonic()
        if self._cycle.due(now):
            self.send(alien.build_get("TagList"))
            self._cycle.started(now)

    def on_frame(self, item) -> None:
        if type(item) is not Message:
            return
        if item.kind == "end":
            self._cycle.finished(time.monotonic())
        elif item == alien.PROMPT_BOOT and self.streaming:
            raise ReaderDown("reader restarted: it is booting")
        elif item.kind == "error":
            log.warning("reader %s: Error %s: %s", self.name, item.name, item.value)

    def stop_command(self) -> bytes:
        return alien.build_set("AutoMode", "Off")

    def is_stop_reply(self, item) -> bool:
        return _value("AutoMode")(item)
