"""Alien Technology reader text protocol codec (ALR-9800, ALR-9900, ALR-F800): bytes <-> lines.

Pure, no I/O, no logging. Reader output is split into lines at CR, LF and NUL; a NUL ends a
reply and becomes a `Message("end")`. `Alien>` and `Boot>` prompts are found anywhere,
also at the end of the input without a line ending (a prompt waits for typing). Each line
is, in this order: a tag line in the codec's Custom format, a `Name = value` reply, a
`Text` tag line (`Tag:HHHH HHHH ..., Disc:..., Count:n, Ant:n, ...`), a `Terse` tag line
(`HHHH HHHH ...,count,ant`), `Error N: text.`, `(No Tags)`, or a `#...` line of an auto
notification message; tag lines become `TagReport`s (antenna `Ant:0-3` -> 1-4), the rest
`Message`s. A line that looks like a damaged tag line (it holds `Tag:` or a run of eight
hex digits) is `bad_syntax`; any other line (echoed commands, boot banners, line noise)
is skipped silently. Tag lines are found at the end of a line (regex search anchored at
`$`), so noise glued in front of one costs nothing. The serial link has no checksum:
`DRIVER_FORMAT`, the Custom format the session sets, prints every field twice and a tag
line counts only if both copies agree (the repeated token compiles to a regex back
reference), so a flipped bit cannot become a read. The binary dialects' damage maps onto
lines as tests/readers/test_codec_conformance.py shows: a line longer than MAX_LINE is
`bad_length` (ended or not), a line cut short or whose copies disagree is `bad_syntax`
(text has no length field or checksum to blame), one cut off by the end of the input is
`truncated`; a line cut off and glued to the next one is noise in front of that line. `make_decoder(fmt)` decodes another
`TagListCustomFormat` (`laneagent decode --custom-format`). Real readers beyond the notes:
older models add `CRC:xxxx` (and newer ones other `Key:value` fields) to Text lines,
which are accepted and ignored; replies spell values their own way (`set ... = off`
answers `... = OFF`); `%m` (RSSI) prints a decimal, not an integer. Decision: it is rounded
to whole dBm, and a positive value (not a dBm figure) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.readers.report import DecodeError, TagReport

DIALECT = "alien"
DRIVER_FORMAT = "%k,%a,%m,%r|%k,%a,%m,%r"
MAX_LINE = 4096  # longer without a line ending: not this protocol
PROMPTS = (b"Alien>", b"Boot>")
NOTIFY_BEGIN = "#Alien RFID Reader Auto Notification Message"
NOTIFY_END = "#End of Notification Message"

# token -> (group name, regex); a token used twice becomes a back reference to its first use
TOKENS = {
    "%k": ("epc", r"[0-9A-Fa-f]+"), "%i": ("epc_spaced", r"[0-9A-Fa-f]{4}(?: [0-9A-Fa-f]{4})*"),
    "%a": ("antenna", r"\d{1,2}"), "${TX}": ("antenna", r"\d{1,2}"), "%A": ("rx_antenna", r"\d{1,2}"),
    "${RX}": ("rx_antenna", r"\d{1,2}"), "%m": ("rssi", r"-?\d+(?:\.\d+)?"), "${RSSI}": ("rssi", r"-?\d+(?:\.\d+)?"),
    "%r": ("count", r"\d+"), "${COUNT}": ("count", r"\d+"), "${MSEC1}": ("first_ms", r"\d+"),
    "${MSEC2}": ("last_ms", r"\d+"), "${FREQ}": ("freq", r"\d+(?:\.\d+)?"), "${PCWORD}": ("pc", r"[0-9A-Fa-f]{4}"),
    "%p": ("protocol", r"\d"),
}
_TOKEN = re.compile(r"%[A-Za-z]|\$\{[A-Z0-9_]+\}")

_LINE = re.compile(rb"([^\r\n\x00]*)([\r\n\x00])")
# The tokens whose regexes match no line end and no '>' (a custom line made only of them
# can hold no prompt): a format built from these gets the whole-line fast path.
_PLAIN_TOKENS = {"%k", "%i", "%a", "${TX}", "%A", "${RX}", "%m", "${RSSI}", "%r", "${COUNT}", "${MSEC1}", "${MSEC2}",
                 "${FREQ}", "${PCWORD}", "%p"}
_PROMPT = re.compile(rb"Alien>|Boot>")
_VALUE = re.compile(rb"([A-Za-z][A-Za-z0-9_]*) = (.*?)\s*$")
_TEXT = re.compile(rb"Tag:([0-9A-Fa-f]{4}(?: [0-9A-Fa-f]{4})*)((?:, ?[A-Za-z]+:[^,]*)*)\s*$")
_TERSE = re.compile(rb"(?<![0-9A-Fa-f])([0-9A-Fa-f]{4}(?: [0-9A-Fa-f]{4})*),(\d+),(\d+)\s*$")
_ERROR = re.compile(rb"Error (\d+): ?(.*?)\s*$")
_NOTIFY_HEADER = re.compile(rb"#([A-Za-z][A-Za-z ]*?): ?(.*?)\s*$")
_HEXRUN = re.compile(rb"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{4} [0-9A-Fa-f]{4}")
_HOST = re.compile(r"\s*(?:(get|set)\s+([A-Za-z][A-Za-z0-9_]*)(?:\s*=\s*(.*?))?|(.*?))\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Message:
    """A reader line that is not a tag: `value` (Name = value), `error`, `no_tags`, `prompt`
    (Alien> or Boot>), `end` (the NUL after a reply), `notify_begin`, `notify_header`, `notify_end`."""

    kind: str
    name: str = ""
    value: str = ""

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "message": self.kind}
        if self.name:
            out["name"] = self.name
        if self.value:
            out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class HostCommand:
    """A host-to-reader line, as `decode_host` finds it (`quiet`: sent with the 0x01 prefix)."""

    text: str
    verb: str  # "get", "set" or "" (other commands: "clear TagList", "reboot", ...)
    name: str
    value: str | None
    quiet: bool

    def to_dict(self) -> dict:
        out = {"dialect": DIALECT, "direction": "host", "command": self.text, "prompt_suppressed": self.quiet}
        if self.verb:
            out.update(verb=self.verb.lower(), name=self.name)
        if self.value is not None:
            out["value"] = self.value
        return out


END, NO_TAGS = Message("end"), Message("no_tags")
PROMPT_ALIEN, PROMPT_BOOT = Message("prompt", "Alien>"), Message("prompt", "Boot>")
_PROMPT_ITEM = {b"Alien>": PROMPT_ALIEN, b"Boot>": PROMPT_BOOT}


def compile_custom_format(fmt: str) -> re.Pattern:
    """A `TagListCustomFormat` -> a bytes regex with named groups; unknown tokens match lazily."""
    out, seen, pos = [], set(), 0
    for m in _TOKEN.finditer(fmt):
        out.append(re.escape(fmt[pos:m.start()]))
        name, rx = TOKENS.get(m.group(), (None, r".*?"))
        if name is None:
            out.append(rx)
        elif name in seen:
            out.append(f"(?P={name})")
        else:
            seen.add(name)
            out.append(f"(?P<{name}>{rx})")
        pos = m.end()
    out.append(re.escape(fmt[pos:]))
    if not seen & {"epc", "epc_spaced"}:
        raise ValueError(f"custom format {fmt!r} has no tag ID token (%k or %i)")
    return re.compile(("".join(out) + r"\s*$").encode())


class _Memo(dict):
    """bytes -> parsed value for the few distinct EPCs, antennas and RSSI figures a lane
    repeats: one dict lookup instead of decoding, upper-casing and rounding per tag line
    (half the cost of a report). Bounded: cleared when full."""

    __slots__ = ("parse",)

    def __init__(self, parse):
        super().__init__()
        self.parse = parse

    def __missing__(self, key: bytes):
        if len(self) >= 4096:
            self.clear()
        value = self[key] = self.parse(key)
        return value


def _tag_id(raw: bytes) -> str | None:
    """EPC digits (spaces allowed) -> upper-case hex, or None when not whole 16-bit words."""
    tag_id = raw.replace(b" ", b"")
    return None if len(tag_id) % 4 else tag_id.decode().upper()


def _dbm(raw: bytes) -> int | None:
    level = float(raw)
    return round(level) if level <= 0 else None


def _report_maker(pattern: re.Pattern):
    """match -> TagReport (or None if the tag ID is not whole words) for one compiled format,
    with the group numbers looked up once: this runs once per tag line."""
    gi = pattern.groupindex
    epc = gi.get("epc") or gi.get("epc_spaced")
    ant = gi.get("antenna") or gi.get("rx_antenna")
    rssi, count, freq, pc = gi.get("rssi"), gi.get("count"), gi.get("freq"), gi.get("pc")
    stamp = gi.get("last_ms") or gi.get("first_ms")
    tag_ids, antennas, levels = _Memo(_tag_id), _Memo(lambda a: int(a) + 1), _Memo(_dbm)

    def report(m: re.Match) -> TagReport | None:
        g = m.group
        tag_id = tag_ids[g(epc)]
        if tag_id is None:
            return None
        return TagReport(DIALECT, tag_id, antennas[g(ant)] if ant else 0, levels[g(rssi)] if rssi else None,
                         int(g(count)) if count else None, round(float(g(freq)) * 1000) if freq else None,
                         g(pc).decode().upper() if pc else None, int(g(stamp)) if stamp else None)
    return report


def _text_report(m: re.Match) -> TagReport | None:
    fields = {}
    for part in m.group(2).split(b","):
        key, sep, value = part.strip().partition(b":")
        if sep:
            fields[key.lower()] = value.strip()
    try:
        ant = int(fields[b"ant"]) + 1
        count = int(fields[b"count"]) if b"count" in fields else None
        rssi = float(fields[b"rssi"]) if b"rssi" in fields else None
    except (KeyError, ValueError):
        return None
    return TagReport(DIALECT, m.group(1).replace(b" ", b"").decode().upper(), ant,
                     round(rssi) if rssi is not None and rssi <= 0 else None, count)


class Decoder:
    """Reader-to-host decoding with one Custom format (`decode` below uses DRIVER_FORMAT)."""

    def __init__(self, custom_format: str = DRIVER_FORMAT, fast: bool = True):
        """`fast=False`: every line through `_line` (the reference the fast path is tested against)."""
        self.custom_format = custom_format
        self._custom = compile_custom_format(custom_format)
        self._custom_report = _report_maker(self._custom)
        self._lines, self._fast_end = _line_walker(custom_format, self._custom, fast)
        self._fast_report = _report_maker(self._lines) if self._fast_end else None

    def _line(self, line: bytes, offset: int, append) -> None:
        if b">" in line and _PROMPT.search(line):
            pos = 0
            for m in _PROMPT.finditer(line):
                if m.start() > pos:
                    self._line(line[pos:m.start()], offset + pos, append)
                append(_PROMPT_ITEM[m.group()])
                pos = m.end()
            line, offset = line[pos:], offset + pos
            if not line:
                return
        m = self._custom.match(line) or self._custom.search(line)
        if m:
            report = self._custom_report(m)
            append(report if report is not None else DecodeError("bad_syntax", offset))
            return
        if b" = " in line and (m := _VALUE.search(line)):
            append(Message("value", m.group(1).decode(), m.group(2).decode("latin-1")))
            return
        if b"Tag:" in line:
            m = _TEXT.search(line)
            report = _text_report(m) if m else None
            append(report if report is not None else DecodeError("bad_syntax", offset))
            return
        if b"," in line and (m := _TERSE.search(line)):
            append(TagReport(DIALECT, m.group(1).replace(b" ", b"").decode().upper(), int(m.group(3)) + 1,
                             None, int(m.group(2))))
            return
        if b"Error " in line and (m := _ERROR.search(line)):
            append(Message("error", m.group(1).decode(), m.group(2).decode("latin-1")))
            return
        if b"(No Tags)" in line:
            append(NO_TAGS)
            return
        stripped = line.strip()
        if stripped.startswith(b"#"):
            text = stripped.decode("latin-1")
            if text == NOTIFY_BEGIN:
                append(Message("notify_begin"))
            elif text == NOTIFY_END:
                append(Message("notify_end"))
            elif m := _NOTIFY_HEADER.match(stripped):
                append(Message("notify_header", m.group(1).decode(), m.group(2).decode("latin-1")))
            if text in (NOTIFY_BEGIN, NOTIFY_END) or m:
                return
        if _HEXRUN.search(line):
            append(DecodeError("bad_syntax", offset))

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        """Reader-to-host bytes -> ([TagReport | Message | DecodeError], rest to prepend next time)."""
        buf = bytes(buffer)
        items: list = []
        append, line = items.append, self._line
        done = 0
        # Only up to the last line end: on a tail without one, the line regex would try every
        # start position to the end, quadratic in a long unfinished line.
        ended = max(buf.rfind(b"\r"), buf.rfind(b"\n"), buf.rfind(b"\x00")) + 1
        fast_end, fast_report = self._fast_end, self._fast_report
        m = None
        for m in self._lines.finditer(buf, 0, ended):
            if m.lastindex == fast_end:  # a whole custom tag line (the common case), see _line_walker
                report = fast_report(m)
                append(report if report is not None else DecodeError("bad_syntax", m.start()))
                continue
            text = m.group("text")
            if len(text) > MAX_LINE:  # as when its end has not come yet: same error whatever the chunking
                append(DecodeError("bad_length", m.start()))
            elif text:
                line(text, m.start(), append)
            if m.group("end") == b"\x00":
                append(END)
        if m is not None:
            done = m.end()
        tail = buf[done:]
        if not tail:
            return items, b""
        prompts = list(_PROMPT.finditer(tail))
        if prompts:  # a prompt needs no line ending: the reader waits for typing
            cut = prompts[-1].end()
            line(tail[:cut], done, append)
            tail, done = tail[cut:], done + cut
        if len(tail) > MAX_LINE:
            append(DecodeError("bad_length", done))
            return items, b""
        if final:
            if b"Tag:" in tail or _HEXRUN.search(tail):
                append(DecodeError("truncated", done))
            return items, b""
        return items, tail


def _line_walker(fmt: str, custom: re.Pattern, fast: bool = True) -> tuple[re.Pattern, int | None]:
    """The regex that walks reader output one line at a time, and the group number that
    closes its fast branch (None: no fast branch).

    The fast branch takes a whole line that the custom format matches from its first byte,
    with its line end (CR LF at once), when the line is at most MAX_LINE long: exactly the
    lines `_line` would turn into a report by `self._custom.match` (such a line can hold no
    prompt, since the format's regex matches no '>'). One regex step per tag line instead
    of a line split, a function call and a second match: the alien codec's share of the
    200,000 reports/s bar. Any other line takes the general branch (`text`, `end`) and
    `_line`, as before.
    """
    general = rb"(?P<text>[^\r\n\x00]*)(?P<end>\r\n?|[\n\x00])"
    literals = _TOKEN.sub("", fmt)
    if not fast or any(t.group() not in _PLAIN_TOKENS for t in _TOKEN.finditer(fmt)) or any(c in literals for c in ">\r\n\x00%$"):
        return re.compile(general), None
    body = custom.pattern[:-len(rb"\s*$")]
    fast = rb"(?=[^\r\n\x00]{0,%d}[\r\n\x00])" % MAX_LINE + body + rb"[ \t\x0b\x0c]*(?P<fast_end>\r\n?|\n)"
    walker = re.compile(rb"(?:" + fast + rb")|" + general)
    return walker, walker.groupindex["fast_end"]


def make_decoder(custom_format: str = DRIVER_FORMAT):
    """A `decode(buffer, final=False)` for readers whose TagListCustomFormat is `custom_format`."""
    return Decoder(custom_format).decode


_DEFAULT = Decoder()


def decode(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Reader-to-host bytes -> ([TagReport | Message | DecodeError], rest), Custom = DRIVER_FORMAT."""
    return _DEFAULT.decode(buffer, final)


def decode_host(buffer: bytes, final: bool = False) -> tuple[list, bytes]:
    """Host-to-reader bytes -> ([HostCommand | DecodeError], rest): one command per line."""
    buf = bytes(buffer)
    items: list = []
    done = 0
    for m in _LINE.finditer(buf):
        raw = m.group(1)
        quiet = raw.startswith(b"\x01")
        text = raw[1:] if quiet else raw
        if text.strip():
            c = _HOST.match(text.decode("latin-1"))
            if c.group(1):
                items.append(HostCommand(c.group(0).strip(), c.group(1), c.group(2), c.group(3), quiet))
            else:
                items.append(HostCommand(c.group(4), "", "", None, quiet))
        done = m.end()
    tail = buf[done:]
    if final and tail.strip(b"\x01 \t"):
        items.append(DecodeError("truncated", done))
        return items, b""
    if len(tail) > MAX_LINE:
        items.append(DecodeError("bad_length", done))
        return items, b""
    return items, b"" if final else tail


# --- host commands ------------------------------------------------------------------------
def build_command(text: str, quiet: bool = True) -> bytes:
    """`\\x01` + command + CR LF: the 0x01 tells the reader a program is talking (no prompt)."""
    return (b"\x01" if quiet else b"") + text.encode("latin-1") + b"\r\n"


def build_get(name: str) -> bytes:
    return build_command(f"get {name}")


def build_set(name: str, value) -> bytes:
    return build_command(f"set {name} = {value}")


# --- reader output (the simulator's side) -------------------------------------------------
def encode_reply(lines, prompt: bool = False) -> bytes:
    """Reply lines, each with CR LF, then the NUL that ends every reply (and `Alien>` if interactive)."""
    body = b"".join(line.encode("latin-1") + b"\r\n" for line in lines) + b"\x00"
    return body + (b"\r\nAlien>" if prompt else b"")


def encode_custom_line(fmt: str, epc: str, antenna: int, rssi: float | None = None, count: int = 1,
                       first_ms: int = 0, last_ms: int = 0, frequency_khz: int | None = None, pc: str = "") -> str:
    """One tag line as a reader prints `fmt`; `antenna` is 1-based (printed 0-based)."""
    values = {"%k": epc, "%i": " ".join(epc[i:i + 4] for i in range(0, len(epc), 4)), "%a": str(antenna - 1),
              "${TX}": str(antenna - 1), "%A": str(antenna - 1), "${RX}": str(antenna - 1),
              "%m": f"{rssi:.1f}" if rssi is not None else "0.0", "${RSSI}": f"{rssi:.1f}" if rssi is not None else "0.0",
              "%r": str(count), "${COUNT}": str(count), "${MSEC1}": str(first_ms), "${MSEC2}": str(last_ms),
              "${FREQ}": f"{(frequency_khz or 0) / 1000:.3f}", "${PCWORD}": pc or f"{len(epc) // 4 << 11:04X}",
              "%p": "2"}
    return _TOKEN.sub(lambda m: values.get(m.group(), m.group()), fmt)


def encode_text_line(epc: str, antenna: int, count: int = 1, disc: str = "2024/01/01 00:00:00.000",
                     last: str = "2024/01/01 00:00:00.000") -> str:
    spaced = " ".join(epc[i:i + 4] for i in range(0, len(epc), 4))
    return f"Tag:{spaced}, Disc:{disc}, Last:{last}, Count:{count}, Ant:{antenna - 1}, Proto:2"


def encode_terse_line(epc: str, antenna: int, count: int = 1) -> str:
    return f"{' '.join(epc[i:i + 4] for i in range(0, len(epc), 4))},{count},{antenna - 1}"
