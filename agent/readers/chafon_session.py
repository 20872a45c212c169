"""The Chafon session: reader information, then answer-mode inventory polling per antenna.

Init (on every open): get reader information (0x21: firmware, model type, power). The
UHFReader18 type takes the bare inventory command and has one port; the others get the
UHFReader288 form with the antenna byte (0x80 | port index) and a scan time, each
configured antenna in turn. A reader that refuses that form (illegal command, parameter
or length error) is switched to the bare form, so unknown relatives still read. A round
is the replies to one inventory: frames with status 0x03 (more follow), then one that
ends it (0x01 complete, 0x02 scan time over, 0xFB no tag, 0x04 buffer full); then the
next round starts. Every answer, "no tag" too, proves the reader alive. Read power and
region are reported, not set: the notes give no command for them and these readers keep
them in EEPROM (set them once with the vendor tool); a power that differs from
`read_power_dbm` is logged once.
"""

from __future__ import annotations

import logging
import time

from agent.errors import ReaderError
from agent.readers import chafon
from agent.readers.polling import PollCycle
from agent.readers.session import ReaderSession

log = logging.getLogger(__name__)
Cmd, Status = chafon.Cmd, chafon.Status
REFUSED = (Status.ILLEGAL_COMMAND, Status.PARAMETER_ERROR, Status.LENGTH_ERROR)


class ChafonSession(ReaderSession):
    dialect = chafon.DIALECT
    scan_time_100ms = 10  # longest round the reader may take
    round_timeout_s = scan_time_100ms / 10 + 1.0
    attempts = 3

    def __init__(self, cfg, on_report, on_state, **options):
        super().__init__(cfg, on_report, on_state, **options)
        self.bare = False  # UHFReader18 form: no parameters, one port
        self._cycle = PollCycle(cfg.antennas, self.round_timeout_s, tags_seen=lambda: self.tags_seen)
        self._power_noted = False

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        return chafon.decode(buffer, final)

    def initialise(self) -> None:
        bad = [a for a in self.cfg.antennas if not 1 <= a <= 4]
        if bad:
            raise ReaderError(self.name, f"antennas {bad}: a Chafon reader has ports 1-4")
        reply = self.command(chafon.build_get_reader_info(), _reply_to(Cmd.GET_READER_INFO), "get reader information",
                             attempts=self.attempts)
        try:
            if not reply.ok:
                raise ValueError(f"reader answered {reply.status_name}")
            info = chafon.parse_reader_info(reply)
        except ValueError as e:
            raise ReaderError(self.name, f"get reader information: {e}") from None
        self.model, self.firmware = info.model, info.firmware
        self.bare = info.type_code == 0x09
        log.info("reader %s: Chafon %s", self.name, info.to_dict())
        if info.power_dbm != round(self.cfg.read_power_dbm) and not self._power_noted:
            self._power_noted = True
            log.warning("reader %s: reader power is %d dBm, read_power_dbm says %g (set it with the vendor tool)",
                        self.name, info.power_dbm, self.cfg.read_power_dbm)
        self._use_form()

    def _use_form(self) -> None:
        if self.bare and len(self.cfg.antennas) > 1:
            log.warning("reader %s: bare inventory reads one port; antennas %s ignored", self.name,
                        list(self.cfg.antennas))
        self._cycle = PollCycle((1,) if self.bare else self.cfg.antennas, self.round_timeout_s,
                                tags_seen=lambda: self.tags_seen)

    def poll(self) -> None:
        now = time.monotonic()
        if not self._cycle.due(now):
            return
        port = None if self.bare else self._cycle.antenna
        self.send(chafon.build_inventory(port, scan_time_100ms=self.scan_time_100ms))
        self._cycle.started(now)

    def on_frame(self, item) -> None:
        if type(item) is not chafon.Reply or item.command != Cmd.INVENTORY:
            return
        now = time.monotonic()
        if item.status in REFUSED and not self.bare:
            log.info("reader %s: inventory with parameters refused (%s): using the bare form",
                     self.name, item.status_name)
            self.bare = True
            self._use_form()
            return
        if item.status not in chafon.TAG_STATUS and item.status != Status.NO_TAG:
            log.warning("reader %s: inventory answered %s", self.name, item.status_name)
        if item.round_done:
            self._cycle.finished(now)


def _reply_to(cmd: int):
    return lambda item: type(item) is chafon.Reply and item.command == cmd
