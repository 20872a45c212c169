"""Doctor: is the daemon running, exactly once, and alive?

Two sources, because each can lie alone: the status file the daemon rewrites every
second (pid, state, readers) and the process table (every `laneagent run` whose config
is ours, or names the same database). A fresh status file with a live pid is a running
daemon; a stale one with a dead pid is a daemon that died; a live pid with a stale file
is a hung one; two processes on one database are a fault whatever the file says. The
result, `DaemonView`, tells the reader checks whether a port may be opened (DESIGN
2.7: never one the daemon holds).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from agent.config import Config
from agent.doctor.verdict import FAIL, WARN, Verdict, passed
from agent.readers.registry import load_config as load
from agent.errors import ConfigError
from agent.statusfile import StatusFile, StatusUnavailable, StatusUnreadable

STARTING_FOR_S = 15  # a process this young may not have written its first status yet
START_FIX = "start it: sudo systemctl start laneagent; if it will not stay up: journalctl -u laneagent -n 50 --no-pager"


@dataclass
class DaemonView:
    running: bool = False  # a daemon on this config holds the readers: do not open their ports
    pid: int | None = None
    status: dict | None = None  # the daemon's status file, when fresh
    pids: list[int] = field(default_factory=list)  # `laneagent run` processes on this database

    def reader(self, name: str) -> dict | None:
        for r in (self.status or {}).get("readers", []):
            if r.get("name") == name:
                return r
        return None


def check(cfg: Config) -> tuple[DaemonView, list[Verdict]]:
    view = DaemonView(pids=daemon_pids(cfg))
    now_ms = int(time.time() * 1000)
    status, unreadable = _read_status(cfg.status_path)
    verdicts = []
    if len(view.pids) > 1:
        described = ", ".join(_describe(pid) for pid in view.pids)
        extra = [p for p in view.pids if not _under_systemd(p)] or view.pids[1:]
        verdicts.append(Verdict(FAIL, "daemon", "daemon_twice",
                                f"{len(view.pids)} daemons run on the database {cfg.store.path}: {described}; "
                                "they fight over the readers and the store",
                                f"stop the one systemd did not start: sudo kill {' '.join(map(str, extra))}"))
    pid = status.get("pid") if status else None
    fresh = bool(status) and StatusFile.is_fresh(status, now_ms)
    alive = _alive(pid)
    if status and alive and fresh:
        view.running, view.pid, view.status = True, int(pid), status
        problems = status.get("problems") or []
        if problems:
            verdicts.append(Verdict(FAIL, "daemon", "daemon_wedged",
                                    f"pid {pid} runs but is stuck: {'; '.join(problems)}",
                                    "sudo systemctl restart laneagent; keep `laneagent diag --out diag.tar.gz` "
                                    "from before the restart for support"))
        elif len(view.pids) <= 1:
            verdicts.append(passed("daemon", f"running: pid {pid}, laneagent {status.get('version')}, "
                                             f"up {_age(status.get('started_ms'), now_ms)}"))
        return view, verdicts
    if view.pids:
        # A daemon process exists but its status file says nothing useful: it holds the ports.
        view.running, view.pid = True, view.pids[0]
        young = all(_process_age_s(p) < STARTING_FOR_S for p in view.pids)
        if unreadable:
            verdicts.append(Verdict(WARN, "daemon", "cannot_check_as_user",
                                    f"pid {view.pids[0]} runs, but {cfg.status_path} is not readable for you: "
                                    f"{unreadable}",
                                    "check as root: sudo laneagent doctor"))
        elif young:
            verdicts.append(Verdict(WARN, "daemon", "daemon_starting",
                                    f"pid {view.pids[0]} is starting (no status written yet)",
                                    "run doctor again in a few seconds"))
        elif alive:
            verdicts.append(Verdict(FAIL, "daemon", "daemon_hung",
                                    f"pid {pid} is alive but has not updated {cfg.status_path} for "
                                    f"{(now_ms - status.get('updated_ms', 0)) / 1000:.0f} s: its main loop is stuck",
                                    "sudo systemctl restart laneagent (the watchdog should have done it: "
                                    "check WatchdogSec in the unit)"))
        elif not verdicts:
            verdicts.append(Verdict(FAIL, "daemon", "daemon_hung",
                                    f"pid {view.pids[0]} runs `laneagent run` on this config but writes no "
                                    f"status to {cfg.status_path}", "sudo systemctl restart laneagent; "
                                    "check that the service user may write the store directory"))
        return view, verdicts
    if unreadable:
        verdicts.append(Verdict(WARN, "daemon", "cannot_check_as_user",
                                f"cannot read {cfg.status_path}: {unreadable}", "check as root: sudo laneagent doctor"))
    elif status is None:
        verdicts.append(Verdict(WARN, "daemon", "daemon_not_running",
                                f"not running: no status file {cfg.status_path} (it has never run with this config, "
                                "or cannot write there); checking everything else", START_FIX))
    elif status.get("state") == "stopped":
        verdicts.append(Verdict(WARN, "daemon", "daemon_not_running",
                                f"not running: stopped cleanly {_age(status.get('updated_ms'), now_ms)} ago; "
                                "checking everything else", START_FIX))
    else:
        verdicts.append(Verdict(WARN, "daemon", "daemon_not_running",
                                f"not running: pid {pid} was last seen {_age(status.get('updated_ms'), now_ms)} ago "
                                "and died without stopping (crash, kill -9 or power cut); checking everything else",
                                START_FIX))
    return view, verdicts


def _read_status(path: str) -> tuple[dict | None, str | None]:
    """(the document, None), or (None, why it cannot be read for this user)."""
    try:
        return StatusFile(path).read(), None
    except StatusUnreadable as e:
        if e.permission:
            return None, e.reason
        return None, None
    except StatusUnavailable:
        return None, None  # missing, or damaged: the daemon rewrites it every second


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return _state(int(pid)) != "Z"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _age(ms, now_ms: int) -> str:
    if not ms:
        return "an unknown time"
    s = (now_ms - ms) / 1000
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


# --- the process table ----------------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _is_daemon(argv: list[str]) -> bool:
    """`laneagent ... run`, `python -m agent ... run` or a script at .../agent/__main__.py."""
    if "run" not in argv:
        return False
    names = [os.path.basename(a) for a in argv[:3]]
    module = any(argv[i] == "-m" and argv[i + 1] == "agent" for i in range(len(argv) - 1))
    return "laneagent" in names or module or any(a.endswith("agent/__main__.py") for a in argv[:3])


def _config_of(pid: int, argv: list[str]) -> str:
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    if path is None:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            path = env.get(b"LANEAGENT_CONFIG", b"").decode() or None
        except OSError:
            pass
    path = path or "/etc/laneagent/agent.toml"
    if not os.path.isabs(path):
        try:
            path = os.path.join(os.readlink(f"/proc/{pid}/cwd"), path)
        except OSError:
            pass
    return os.path.realpath(path)


def daemon_pids(cfg: Config) -> list[int]:
    """Every `laneagent run` process whose config is ours or names our database, oldest first."""
    ours, store = os.path.realpath(cfg.path), os.path.realpath(cfg.store.path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        argv = _cmdline(pid)
        if not argv or not _is_daemon(argv) or _state(pid) == "Z":
            continue
        path = _config_of(pid, argv)
        if path != ours:
            try:
                if os.path.realpath(load(path).store.path) != store:
                    continue
            except (ConfigError, OSError):
                continue
        found.append(pid)
    return sorted(found, key=_start_ticks)


def _start_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _process_age_s(pid: int) -> float:
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError):
        return 0.0
    return uptime - _start_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _under_systemd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return "laneagent.service" in f.read()
    except OSError:
        return False


def _describe(pid: int) -> str:
    return f"pid {pid} ({'laneagent.service' if _under_systemd(pid) else 'started by hand'})"
