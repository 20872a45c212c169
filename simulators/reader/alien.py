"""A simulated Alien reader (ALR-F800 by default) on its serial console.

Commands are lines (CR LF); with the 0x01 prefix the reply ends with NUL and no prompt,
without it the `Alien>` prompt follows. It knows `get`/`set` of the settings in
`DEFAULTS` (names case-insensitive; replies spell them its own way: `set AutoMode = off`
answers `AutoMode = OFF`), `get TagList`, `clear TagList` and `reboot`; anything else is
`Error 1: Command not understood.`. With AutoMode ON it reads the scenario's field on the
AntennaSequence ports every `1 / read_rate_hz` seconds into its TagList (one entry per tag,
or per tag and antenna with TagListAntennaCombine OFF); with it OFF, `get TagList` reads
once on the spot. PersistTime -1 empties the list each time it is reported, 0 keeps
nothing, N keeps entries N seconds after their last read. Lists print in Text, Terse or
Custom (`TagListCustomFormat`), `(No Tags)` when empty. With NotifyMode ON and
NotifyAddress `serial` it pushes auto notification messages every NotifyTime seconds
while its list holds tags. A reboot prints a banner and `Boot>` every `boot_prompt_s`
for `boot_s` (commands meanwhile get only `Boot>`), then `Alien>` with defaults restored.
Each tag line is its own frame, so the runner damages lines, not whole replies.
"""

from __future__ import annotations

import logging
import time

from agent.readers import alien
from simulators.reader.base import Frame, ReaderModel
from simulators.scenario import Scenario

log = logging.getLogger(__name__)

DEFAULTS = {"ReaderName": "Alien RFID Reader", "ReaderVersion": "17.11.24.00",
            "ReaderType": "Alien RFID Tag Reader, Model: ALR-F800 (Four Antenna / Gen 2 / 902-928 MHz)",
            "TagListFormat": "Text", "TagListCustomFormat": "Tag:%i, Ant:%a", "TagListAntennaCombine": "ON",
            "AntennaSequence": "0", "PersistTime": "10", "AutoMode": "OFF", "NotifyMode": "OFF",
            "NotifyAddress": "serial", "NotifyFormat": "Text", "NotifyTime": "1", "AcquireMode": "Inventory"}
READ_ONLY = {"readerversion", "readertype"}
ON_OFF = {"automode", "notifymode", "taglistantennacombine"}
FORMATS = {"text": "Text", "terse": "Terse", "custom": "Custom", "xml": "XML"}
NOT_UNDERSTOOD = "Error 1: Command not understood."


class AlienModel(ReaderModel):
    dialect = alien.DIALECT

    def __init__(self, scenario: Scenario, *, boot_s: float = 1.0, boot_prompt_s: float = 0.25,
                 start_autonomous: bool = False, seed: int | None = None):
        super().__init__(scenario, seed=seed, boot_s=boot_s)
        self.boot_prompt_s = boot_prompt_s
        self._reset()
        if start_autonomous:  # as a site integrator might have left it
            self.settings.update(AutoMode="ON", NotifyMode="ON", PersistTime="-1", TagListFormat="Text")

    def _reset(self) -> None:
        self.settings = dict(DEFAULTS)
        self.taglist: dict[tuple, list] = {}  # (epc, antenna or None) -> [count, rssi, first, last, antenna]
        self._rest = b""
        self._next_read = self._next_notify = self._next_prompt = 0.0
        self._ready_pending = False

    def _get(self, name: str) -> str:
        return self.settings[name]

    # --- host -> reader ------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Frame]:
        buf = self._rest + data
        *lines, self._rest = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        out: list[Frame] = []
        for raw in lines:
            quiet = raw.startswith(b"\x01")
            text = (raw[1:] if quiet else raw).decode("latin-1").strip()
            if self.booting(now):
                out.append(Frame(b"Boot>"))
                continue
            if not text:
                out.append(Frame(b"\x00" if quiet else b"\r\nAlien>"))
                continue
            self.commands.append(text)
            out += self._run(text, now)
            out.append(Frame(b"\x00" if quiet else b"\x00\r\nAlien>"))
        return out

    def _line(self, text: str) -> Frame:
        return Frame(text.encode("latin-1") + b"\r\n")

    def _run(self, text: str, now: float) -> list[Frame]:
        words = text.split(None, 1)
        verb, rest = words[0].lower(), words[1] if len(words) > 1 else ""
        if verb == "get" and rest.lower() == "taglist":
            return self._report_taglist(now)
        if verb == "clear" and rest.lower() == "taglist":
            self.taglist.clear()
            return [self._line("TagList has been reset!")]
        if verb == "reboot":
            return self.power_cycle(now)
        name, sep, value = rest.partition("=")
        key = next((k for k in self.settings if k.lower() == name.strip().lower()), None)
        if key is None or verb not in ("get", "set") or (verb == "set" and not sep):
            return [self._line(NOT_UNDERSTOOD)]
        if verb == "set":
            error = self._store(key, value.strip())
            if error:
                return [self._line(error)]
        return [self._line(f"{key} = {self.settings[key]}")]

    def _store(self, key: str, value: str) -> str | None:
        low = key.lower()
        if low in READ_ONLY:
            return "Error 2: Read only."
        if low in ON_OFF:
            if value.lower() not in ("on", "off"):
                return "Error 5: Invalid parameter."
            value = value.upper()
        elif low in ("taglistformat", "notifyformat"):
            if value.lower() not in FORMATS:
                return "Error 5: Invalid parameter."
            value = FORMATS[value.lower()]
        elif low == "antennasequence":
            ports = [p.strip() for p in value.split(",")]
            if not all(p.isdigit() and int(p) < 4 for p in ports):
                return "Error 5: Invalid parameter."
            value = ", ".join(ports)
        elif low in ("persisttime", "notifytime"):
            try:
                if int(value) < -1:
                    raise ValueError
            except ValueError:
                return "Error 5: Invalid parameter."
        self.settings[key] = value
        return None

    # --- the tag list --------------------------------------------------------------------
    def _ports(self) -> list[int]:
        return [int(p) + 1 for p in self.settings["AntennaSequence"].split(",") if p.strip().isdigit()]

    def _read_field(self, now: float) -> None:
        ports, combine = self._ports(), self.settings["TagListAntennaCombine"] == "ON"
        for r in self.scenario.reads(now, self.rng):
            if r.antenna not in ports:
                continue
            entry = self.taglist.setdefault((r.epc, None if combine else r.antenna), [0, r.rssi, now, now, r.antenna])
            entry[0] += 1
            entry[1], entry[3], entry[4] = r.rssi, now, r.antenna

    def _tag_lines(self, fmt_name: str, now: float) -> list[Frame]:
        persist = int(self.settings["PersistTime"])
        if persist > 0:
            for key in [k for k, e in self.taglist.items() if now - e[3] > persist]:
                del self.taglist[key]
        wall = time.time() - now  # scenario seconds -> epoch seconds
        frames = []
        for (epc, _), (count, rssi, first, last, antenna) in self.taglist.items():
            if fmt_name == "Custom":
                text = alien.encode_custom_line(self.settings["TagListCustomFormat"], epc, antenna, float(rssi), count,
                                                round((wall + first) * 1000), round((wall + last) * 1000))
            elif fmt_name == "Terse":
                text = alien.encode_terse_line(epc, antenna, count)
            else:
                stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(wall + last))
                text = alien.encode_text_line(epc, antenna, count, stamp, stamp)
            frames.append(Frame(text.encode("latin-1") + b"\r\n", (epc,)))
        if persist <= 0:
            self.taglist.clear()
        return frames

    def _report_taglist(self, now: float) -> list[Frame]:
        if self.settings["AutoMode"] != "ON":
            self._read_field(now)  # interactive: read once now
        frames = self._tag_lines(self.settings["TagListFormat"], now)
        return frames or [self._line("(No Tags)")]

    # --- reader -> host, unasked ---------------------------------------------------------
    def _notifying(self) -> bool:
        return self.settings["NotifyMode"] == "ON" and self.settings["NotifyAddress"].lower() == "serial"

    def next_due(self, now: float) -> float:
        if self.booting(now) or self._ready_pending:
            return min(self._next_prompt, self.booting_until)
        due = float("inf")
        if self.settings["AutoMode"] == "ON":
            due = self._next_read
            if self._notifying():
                due = min(due, self._next_notify)
        return due

    def poll(self, now: float) -> list[Frame]:
        if self.booting(now):
            if now < self._next_prompt:
                return []
            self._next_prompt = now + self.boot_prompt_s
            return [Frame(b"\r\nBoot>")]
        if self._ready_pending:
            self._ready_pending = False
            self._next_read = self._next_notify = now
            return [Frame(b"\r\nAlien>")]
        if self.settings["AutoMode"] != "ON":
            return []
        if now >= self._next_read:
            self._next_read = max(self._next_read + self.round_s, now)
            self._read_field(now)
        if self._notifying() and now >= self._next_notify:
            self._next_notify = now + max(0.1, float(self.settings["NotifyTime"]))
            if self.taglist:
                return self._notification(now)
        return []

    def _notification(self, now: float) -> list[Frame]:
        head = [alien.NOTIFY_BEGIN, f"#ReaderName: {self.settings['ReaderName']}",
                f"#ReaderType: {self.settings['ReaderType']}", "#IPAddress: 0.0.0.0", "#CommandPort: 23",
                f"#Time: {time.strftime('%Y/%m/%d %H:%M:%S')}", "#Reason: TAGS ADDED"]
        lines = [self._line(text) for text in head] + self._tag_lines(self.settings["NotifyFormat"], now)
        return lines + [self._line(alien.NOTIFY_END), Frame(b"\x00")]

    def power_cycle(self, now: float) -> list[Frame]:
        log.info("reader power-cycled")
        self._reset()
        self.booting_until = now + self.boot_s
        self._next_prompt = now + self.boot_prompt_s
        self._ready_pending = True
        return [Frame(b"\r\nAlien Technology reader starting up\r\nBoot>")]
