"""What goes into a support bundle (`laneagent diag`), gathered as named text files.

Status and doctor (JSON and text), the config with secrets removed, the last log
lines, the readers' recent raw traffic as hex, database statistics and a page on the
system. Nothing personal leaves in clear: every text file passes through a
`Scrubber` built from the cache (names, plates, VINs, EPCs) and masking long hex runs;
in the traffic dumps every EPC the codec finds, every EPC the cache knows and the
bytes after a damaged frame's start are shown as `**`, keeping an EPC's last two
bytes. Each part is gathered on its own: one that fails becomes a note, not a failure.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

from agent import __version__
from agent.config import Config
from agent.diagnostics import traffic
from agent.diagnostics.privacy import Scrubber
from agent.errors import StoreError
from agent.readers import registry
from agent.readers.report import DecodeError
from agent.statusfile import StatusFile, StatusUnavailable
from agent.store.reader import StoreReader

log = logging.getLogger(__name__)

JOURNAL_LINES = 2000
DUMP_WAIT_S = 3.0
DAMAGED_SPAN = 64  # bytes masked after a frame the codec rejected: room for any EPC it held
# `password = "..."` style keys, but not `password_file` (a path, useful to support).
_SECRET_LINE = re.compile(r"^(\s*[\w.\"-]*(?:password|passwd|secret|token|psk|private)(?![\w\"-]*_?file)"
                          r"[\w\"-]*\s*=\s*)(.+)$", re.IGNORECASE | re.MULTILINE)
_INLINE_SECRET = re.compile(r"((?:password|passwd|secret|token|psk)(?!_file)\w*\s*=\s*)(\"[^\"]*\"|'[^']*')",
                            re.IGNORECASE)
_TEXT_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2,4}[ :-]?){8,}")


def config_text(path: str) -> str:
    """The config file as written (comments help support), with any inline secret removed."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    text = _SECRET_LINE.sub(lambda m: m.group(1) + '"<removed>"', text)
    text = _INLINE_SECRET.sub(lambda m: m.group(1) + '"<removed>"', text)
    return f"# {path}, secrets removed (password_file contents are never included)\n" + text


def journal_text() -> str:
    if not shutil.which("journalctl"):
        return "journalctl is not available on this machine: no logs collected (the daemon logs to stderr)\n"
    try:
        argv = ["journalctl", "-u", "laneagent", "-n", str(JOURNAL_LINES), "--no-pager", "-o", "short-iso"]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"journalctl failed: {e}\n"
    note = f"# journalctl -u laneagent -n {JOURNAL_LINES} (exit {run.returncode})\n"
    return note + run.stdout + (f"\n# stderr: {run.stderr}" if run.stderr.strip() else "")


def _command(argv: list[str]) -> str:
    if not shutil.which(argv[0]):
        return f"$ {' '.join(argv)}\n({argv[0]} not available)\n"
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=15)
        return f"$ {' '.join(argv)}\n{run.stdout}{run.stderr}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"$ {' '.join(argv)}\nfailed: {e}\n"


def system_text(cfg: Config | None) -> str:
    parts = [f"laneagent {__version__}, Python {sys.version.split()[0]}, {platform.platform()}",
             f"collected {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by uid {os.geteuid()}"]
    try:
        with open("/etc/os-release") as f:
            parts.append(next((line for line in f if line.startswith("PRETTY_NAME=")), "").strip())
    except OSError:
        pass
    parts.append(_command(["uptime"]))
    parts.append(_command(["sh", "-c", "ls -l /dev/rfid-* /dev/serial/by-id/ /dev/ttyUSB* /dev/ttyACM* 2>&1"]))
    parts.append(_command(["id", "laneagent"]))
    parts.append(_command(["systemctl", "status", "laneagent", "--no-pager", "-n", "0"]))
    parts.append(_command(["df", "-h"] + ([os.path.dirname(os.path.abspath(cfg.store.path))] if cfg else [])))
    return "\n".join(parts) + "\n"


# --- database statistics ---------------------------------------------------------------------
def database_stats(path: str) -> dict:
    """Counts and sizes only: no row content, so nothing personal."""
    out: dict = {"path": path, "files": {}}
    for suffix in ("", "-wal", "-shm", ".head.json"):
        if os.path.exists(path + suffix):
            out["files"][os.path.basename(path + suffix)] = os.path.getsize(path + suffix)
    if not os.path.exists(path):
        out["error"] = "no database file"
        return out
    try:
        with StoreReader(path, probe=False) as store:
            out.update(store.stats())
    except StoreError as e:
        out["error"] = getattr(e, "reason", str(e))
    return out


def scrubber_for(path: str) -> tuple[Scrubber, set[bytes]]:
    """Names and EPCs from the cache, to scrub from text and mask in raw traffic."""
    epcs: set[bytes] = set()
    try:
        with StoreReader(path, probe=False) as store:
            scrubber = Scrubber.from_records(store.cache_records())
            for key in store.tag_keys():
                try:
                    epcs.add(bytes.fromhex(key))
                except (TypeError, ValueError):
                    pass
    except StoreError:
        scrubber = Scrubber()
    return scrubber, epcs


# --- raw traffic ---------------------------------------------------------------------------
def ask_daemon_for_traffic(cfg: Config) -> str:
    """SIGUSR2 the running daemon and wait for fresh traffic-*.hex files; a note on what happened."""
    try:
        pid = int(StatusFile(cfg.status_path).read()["pid"])
        asked = time.time()
        os.kill(pid, signal.SIGUSR2)
    except (StatusUnavailable, OSError, ValueError, KeyError, TypeError) as e:
        return f"could not ask the daemon for a fresh traffic dump ({e}); using the files as they are"
    state_dir = os.path.dirname(cfg.status_path)
    paths = [traffic.dump_path(state_dir, r.name) for r in cfg.readers]
    deadline = time.monotonic() + DUMP_WAIT_S
    while time.monotonic() < deadline:
        if paths and all(os.path.exists(p) and os.path.getmtime(p) >= asked - 1 for p in paths):
            return f"fresh dump from daemon pid {pid}"
        time.sleep(0.1)
    return f"asked daemon pid {pid} (SIGUSR2) but not every reader's dump was refreshed within {DUMP_WAIT_S:g} s"


def _masked_positions(stream: bytes, dialect: str, known: set[bytes], rx: bool = True) -> set[int]:
    """Positions in a stream of EPC bytes to hide (all but each EPC's last two). Host commands
    (tx) carry no tag reports: only the EPCs the cache knows are looked for there."""
    hide: set[int] = set()

    def cover(start: int, length: int, keep: int = 2) -> None:
        hide.update(range(start, start + max(0, length - keep)))

    try:
        spec = registry.dialect(dialect)
    except Exception:  # an unknown dialect: hide every payload byte rather than guess
        return set(range(len(stream)))
    if spec.text:
        for m in _TEXT_HEX.finditer(stream):
            digits = [i for i in range(m.start(), m.end()) if chr(stream[i]) in "0123456789abcdefABCDEF"]
            if len(digits) >= 16:
                hide.update(digits[:-4])
        return hide
    items, _ = spec.decode(stream, final=True) if rx else ([], b"")
    epcs = set(known)
    for item in items:
        epc = getattr(item, "epc", None)
        if isinstance(epc, str):
            try:
                epcs.add(bytes.fromhex(epc))
            except ValueError:
                pass
        offset = getattr(item, "offset", None)
        if type(item) is DecodeError and isinstance(offset, int):
            cover(offset + 4, DAMAGED_SPAN, keep=0)  # keep the frame's header readable
    for length in {len(e) for e in epcs if e}:
        for i in range(len(stream) - length + 1):
            if stream[i:i + length] in epcs:
                cover(i, length)
    return hide


def masked_traffic(text: str, dialect: str, known: set[bytes]) -> str:
    """A traffic dump with EPC bytes shown as `**` (rx and tx alike)."""
    chunks = traffic.parse(text)
    header = [line for line in text.splitlines() if line.startswith("#")]
    tokens: dict[int, list[str]] = {}
    for direction in (traffic.RX, traffic.TX):
        mine = [(n, c) for n, c in enumerate(chunks) if c.direction == direction]
        stream = b"".join(c.data for _, c in mine)
        hide = _masked_positions(stream, dialect, known, rx=direction == traffic.RX)
        pos = 0
        for n, chunk in mine:
            tokens[n] = ["**" if pos + i in hide else f"{b:02X}" for i, b in enumerate(chunk.data)]
            pos += len(chunk.data)
    lines = [line for n, chunk in enumerate(chunks)
             for line in traffic.render_chunks([chunk], hex_of=lambda _c, t=tokens[n]: t)]
    note = "# EPC bytes are shown as ** (the last two bytes of each EPC are kept)"
    return "\n".join(header + [note] + lines) + "\n"
