"""Doctor: the booth computer itself: disk space, the database's integrity, the wall clock.

The database is opened read-only (never created, never migrated) and given SQLite's
`quick_check`, which WAL lets run beside a working daemon. The clock is judged on
evidence, strongest first: a broker's clock when one publishes it; the database (a
stored event "from the future" means the clock went back, the usual sign of a booth
whose RTC battery died); the 2020 floor the daemon also uses; and the kernel's NTP
state (unsynchronised is a warning: a booth may run on a good RTC for a while).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import time

from agent.clock import SANE_AFTER_MS
from agent.config import Config
from agent.doctor.checks_daemon import DaemonView
from agent.doctor.verdict import FAIL, WARN, Verdict, passed
from agent.errors import StoreError
from agent.store.reader import StoreReader
from agent.store.schema import SCHEMA_VERSION

MB = 1024 * 1024
DISK_FAIL_PCT, DISK_FAIL_MB = 5, 100  # below either: the store is about to fail
DISK_WARN_PCT, DISK_WARN_MB = 10, 500
BUDGET_WARN = 0.8
CLOCK_WARN_S, CLOCK_FAIL_S = 5.0, 60.0
TIME_ERROR = 5  # adjtimex() result: the kernel clock is not synchronised

wall_time = time.time  # the clock under test; tests replace it to stage a wrong clock


def check(cfg: Config, daemon: DaemonView, broker_clocks: list) -> list[Verdict]:
    return [_disk(cfg, daemon), *_database(cfg), _clock(cfg, broker_clocks)]


# --- disk ------------------------------------------------------------------------------------
def _existing_dir(path: str) -> str:
    d = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(d):
        d = os.path.dirname(d)
    return d


def _disk(cfg: Config, daemon: DaemonView) -> Verdict:
    where = _existing_dir(cfg.store.path)
    usage = shutil.disk_usage(where)
    free_mb, pct = usage.free / MB, 100 * usage.free / usage.total if usage.total else 0
    backlog = _backlog_bytes(cfg)
    budget = cfg.store.max_queue_mb * MB
    text = f"{free_mb:.0f} MB free ({pct:.0f}%) on the file system of {where}"
    if free_mb < DISK_FAIL_MB or pct < DISK_FAIL_PCT:
        return Verdict(FAIL, "disk", "disk_full", f"{text}: nearly full, the store will soon fail to write",
                       f"free space: `sudo du -xh --max-depth=2 {where} | sort -h | tail`, old logs: "
                       "`sudo journalctl --vacuum-size=200M`; never delete agent.db or its -wal file")
    if backlog is not None and backlog > budget:
        return Verdict(FAIL, "disk", "backlog_over_budget",
                       f"undelivered backlog {backlog / MB:.1f} MB exceeds store.max_queue_mb "
                       f"({cfg.store.max_queue_mb} MB): the back ends have not taken it",
                       "fix the back-end links first (see their lines); `laneagent queue` shows who is behind; "
                       f"if the disk allows, raise store.max_queue_mb in {cfg.path}")
    if free_mb < DISK_WARN_MB or pct < DISK_WARN_PCT:
        return Verdict(WARN, "disk", "disk_low", f"{text}: getting low",
                       f"free space soon: `sudo du -xh --max-depth=2 {where} | sort -h | tail`")
    if backlog is not None and backlog > BUDGET_WARN * budget:
        return Verdict(WARN, "disk", "backlog_near_budget",
                       f"undelivered backlog {backlog / MB:.1f} MB is over {BUDGET_WARN:.0%} of store.max_queue_mb "
                       f"({cfg.store.max_queue_mb} MB)", "see the back-end lines; `laneagent queue`")
    if usage.free < budget - (backlog or 0):
        return Verdict(WARN, "disk", "disk_below_budget",
                       f"{text}, less than store.max_queue_mb ({cfg.store.max_queue_mb} MB) allows the backlog "
                       "to grow: a long outage fills the disk before the budget alarm",
                       f"lower store.max_queue_mb in {cfg.path}, or free space")
    return passed("disk", text + (f", backlog {backlog / MB:.1f} of {cfg.store.max_queue_mb} MB budget"
                                  if backlog is not None else ""))


def _backlog_bytes(cfg: Config) -> int | None:
    try:
        with StoreReader(cfg.store.path, probe=False) as store:
            return store.backlog_bytes()
    except StoreError:
        return None  # the database line says why


# --- database --------------------------------------------------------------------------------
def _database(cfg: Config) -> list[Verdict]:
    path = cfg.store.path
    if not os.path.exists(path):
        return [Verdict(WARN, "database", "database_missing",
                        f"no database at {path} yet: the daemon creates it (and its directory, 0700) when it starts",
                        "start the daemon: sudo systemctl start laneagent")]
    if not os.access(path, os.R_OK):
        return [Verdict(WARN, "database", "cannot_check_as_user", f"{path} is not readable for you",
                        "check as root: sudo laneagent doctor")]
    fix = (f"restart the daemon (sudo systemctl restart laneagent): it moves the damaged file aside as "
           f"{os.path.basename(path)}.corrupt-<time>, starts a new one and continues the chain from "
           f"{os.path.basename(path)}.head.json; keep the moved file and send `laneagent diag` to support")
    try:
        with StoreReader(path, probe=False) as store:
            result, version = store.integrity()
        size = os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0)
    except StoreError as e:
        reason = getattr(e, "reason", str(e))  # what SQLite said
        if "locked" in reason or "unable to open" in reason:
            return [Verdict(WARN, "database", "database_unchecked", f"{path}: cannot check now: {reason}",
                            "run doctor again; as root if the file belongs to the service user")]
        return [Verdict(FAIL, "database", "database_corrupt", f"{path} is damaged: {reason}", fix)]
    if result != ["ok"]:
        return [Verdict(FAIL, "database", "database_corrupt",
                        f"{path} fails its integrity check: {'; '.join(result[:3])}", fix)]
    out = []
    if version > SCHEMA_VERSION:
        out.append(Verdict(FAIL, "database", "database_too_new",
                           f"{path} has schema {version}, newer than this laneagent understands ({SCHEMA_VERSION}): "
                           "an older program was installed over a newer one",
                           "install the newer laneagent again (sudo make install from its source)"))
    mode = os.stat(os.path.dirname(os.path.abspath(path))).st_mode & 0o777
    if mode & 0o077:
        out.append(Verdict(WARN, "database", "store_dir_open",
                           f"the store directory {os.path.dirname(os.path.abspath(path))} is mode {mode:04o}: "
                           "others can see into it", f"sudo chmod 700 {os.path.dirname(os.path.abspath(path))}"))
    later = " (migrated at the next start)" if version < SCHEMA_VERSION else ""
    out.append(passed("database", f"{path}: integrity ok, schema {version}{later}, {size / MB:.1f} MB"))
    return out


# --- clock -----------------------------------------------------------------------------------
def kernel_synchronised() -> bool | None:
    """What adjtimex(2) says about NTP discipline; None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def _newest_event_ms(path: str) -> int | None:
    try:
        with StoreReader(path, probe=False) as store:
            return store.newest_event_ms()
    except StoreError:
        return None


def _clock(cfg: Config, broker_clocks: list) -> Verdict:
    now = wall_time()
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    fix = "set the time: sudo timedatectl set-ntp true (or chronyc makestep); check `timedatectl`; a booth whose " \
          "clock resets at power-up needs a new RTC battery"
    for name, offset in broker_clocks:
        if abs(offset) > CLOCK_FAIL_S:
            return Verdict(FAIL, "clock", "clock_off",
                           f"this clock ({shown}) is {offset:+.0f} s off the broker of back end {name}", fix)
    if now * 1000 < SANE_AFTER_MS:
        return Verdict(FAIL, "clock", "clock_off", f"the clock says {shown}, before 2020: it was reset", fix)
    newest = _newest_event_ms(cfg.store.path) if os.path.exists(cfg.store.path) else None
    if newest is not None and newest / 1000 - now > CLOCK_FAIL_S:
        ahead = newest / 1000 - now
        return Verdict(FAIL, "clock", "clock_off",
                       f"the clock ({shown}) is behind: the newest stored event was made "
                       f"{ahead / 3600:.1f} h later than now (the clock went back, e.g. after a power cut)", fix)
    for name, offset in broker_clocks:
        if abs(offset) > CLOCK_WARN_S:
            return Verdict(WARN, "clock", "clock_drift", f"this clock is {offset:+.1f} s off the broker of {name}", fix)
    synced = kernel_synchronised()
    against = f", within {CLOCK_WARN_S:g} s of {', '.join(n for n, _ in broker_clocks)}" if broker_clocks else ""
    if synced is False:
        return Verdict(WARN, "clock", "clock_unsynchronised",
                       f"{shown}{against}; the kernel says the clock is not synchronised by NTP",
                       "enable time sync: sudo timedatectl set-ntp true; check `timedatectl timesync-status` "
                       "or `chronyc tracking`")
    return passed("clock", f"{shown}{against}" + (", NTP-synchronised" if synced else ""))
