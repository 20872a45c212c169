"""Doctor: each reader's port (present, permitted, free) and whether the reader answers.

The port checks read the file system only. Whether the reader answers comes from the
running daemon's status when a daemon holds the port (DESIGN 2.7: doctor never opens
it then); otherwise doctor asks the reader itself with `agent.readers.probe`, first in
the configured dialect and speed (a fraction of a second when all is well), then,
only if that fails, every dialect at every usual speed, so that it can say "this is an
R2000 at 57600 baud" instead of "no answer". Every query the probe sends is read-only.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import stat

from agent.config import Config, ReaderConfig
from agent.doctor.verdict import FAIL, WARN, Verdict, passed
from agent.doctor.checks_daemon import DaemonView
from agent.readers import probe as probing

SERVICE_USER = "laneagent"  # systemd/laneagent.service: User=laneagent, SupplementaryGroups=dialout
SERVICE_GROUPS = ("dialout",)
NETWORK_SCHEMES = ("socket", "rfc2217", "loop", "alt", "hwgrep")


def device_path(url: str) -> str | None:
    """The device file behind a pyserial URL, or None for network and virtual ports."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if scheme == "spy":
        return rest.split("?", 1)[0] or None
    return None


def check(cfg: Config, index: int, daemon: DaemonView, timeout: float) -> list[Verdict]:
    reader = cfg.readers[index]
    subject, key = f"reader {reader.name}", f"readers[{index}]"
    path = device_path(reader.url)
    if path is not None:
        problem = _port_problem(cfg, reader, key, path)
        if problem:
            return [problem]
    if daemon.running:
        return [_from_daemon(reader, daemon)]
    if path is not None:
        holder = _holder(path)
        if holder:
            return [Verdict(FAIL, subject, "port_busy", f"{reader.url} is held by another program: {holder}",
                            f"close that program (sudo kill {holder.split()[1]}), then start the daemon")]
    return [_probe(cfg, reader, key, timeout)]


# --- the port ---------------------------------------------------------------------------------
def _present_ports() -> str:
    found = sorted(set(glob.glob("/dev/rfid-*") + glob.glob("/dev/serial/by-id/*") + glob.glob("/dev/ttyUSB*")
                       + glob.glob("/dev/ttyACM*")))
    return ", ".join(found) if found else "none"


def _port_problem(cfg: Config, reader: ReaderConfig, key: str, path: str) -> Verdict | None:
    subject = f"reader {reader.name}"
    if not os.path.exists(path):
        dangling = f" (a link to {os.readlink(path)}, which is gone)" if os.path.islink(path) else ""
        return Verdict(FAIL, subject, "port_missing",
                       f"port {path} does not exist{dangling}: reader unplugged, unpowered, or another name; "
                       f"serial ports present: {_present_ports()}",
                       f"plug the reader in (USB and power), check with `ls -l /dev/serial/by-id/ /dev/rfid-*`; "
                       f"if it has another name, set {key}.url in {cfg.path}")
    st = os.stat(path)
    if not stat.S_ISCHR(st.st_mode):
        return Verdict(FAIL, subject, "port_not_device", f"{path} is not a serial device",
                       f"set {key}.url in {cfg.path} to the reader's device, e.g. /dev/rfid-{reader.name}")
    owner, group = _name(pwd.getpwuid, st.st_uid), _name(grp.getgrgid, st.st_gid)
    mode = f"{owner}:{group} mode {stat.S_IMODE(st.st_mode):04o}"
    if not os.access(path, os.R_OK | os.W_OK):
        me = _name(pwd.getpwuid, os.geteuid())
        if st.st_mode & 0o060 == 0o060:
            return Verdict(FAIL, subject, "port_permission",
                           f"user {me} may not open {path} ({mode}); {me} is not in group {group}",
                           f"sudo usermod -aG {group} {me}, then log out and in again (the service user "
                           f"{SERVICE_USER} gets dialout from the unit); or check as root: sudo laneagent doctor")
        return Verdict(FAIL, subject, "port_permission",
                       f"user {me} may not open {path} ({mode}): not even its group may use it",
                       f"sudo chgrp dialout {path} && sudo chmod 0660 {path}; to make it last, the udev rule "
                       "/etc/udev/rules.d/99-laneagent-readers.rules sets GROUP=dialout MODE=0660 (sudo make install)")
    # As root, also ask for the user systemd runs the daemon as.
    if os.geteuid() == 0 and not _service_may_open(st):
        return Verdict(FAIL, subject, "port_permission",
                       f"the service user {SERVICE_USER} may not open {path} ({mode})",
                       "give readers group dialout, mode 0660: the udev rule "
                       "/etc/udev/rules.d/99-laneagent-readers.rules does it (sudo make install, then "
                       f"sudo udevadm trigger --subsystem-match=tty); or sudo usermod -aG {group} {SERVICE_USER} "
                       "&& sudo systemctl restart laneagent")
    return None


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def _service_may_open(st: os.stat_result) -> bool:
    """Mode bits as the service user sees them; True when that user does not exist here."""
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return True
    groups = {g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem} | {user.pw_gid}
    for name in SERVICE_GROUPS:
        try:
            groups.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            pass
    mode = st.st_mode
    if st.st_uid == user.pw_uid:
        return mode & 0o600 == 0o600
    if st.st_gid in groups:
        return mode & 0o060 == 0o060
    return mode & 0o006 == 0o006


def _holder(path: str) -> str | None:
    """`pid N (command)` of a process with the device open, if any (root sees them all)."""
    target = os.path.realpath(path)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.path.realpath(f"/proc/{entry}/fd/{fd}") == target:
                    with open(f"/proc/{entry}/comm") as f:
                        return f"pid {entry} ({f.read().strip()})"
        except OSError:
            continue
    return None


# --- does it answer? --------------------------------------------------------------------------
def _from_daemon(reader: ReaderConfig, daemon: DaemonView) -> Verdict:
    subject = f"reader {reader.name}"
    state = daemon.reader(reader.name)
    if state is None:
        return Verdict(WARN, subject, "reader_unknown",
                       "the daemon holds the port but reports nothing on this reader (starting, or status unreadable)",
                       "run doctor again in a few seconds, as root")
    if state.get("state") == "up":
        return passed(subject, f"answers (seen by the running daemon, port not opened): {state.get('dialect')} "
                               f"{state.get('model') or ''} firmware {state.get('firmware') or '?'}, "
                               f"{state.get('reports', 0)} reports, {state.get('decode_errors', 0)} decode errors")
    return Verdict(FAIL, subject, "reader_down",
                   f"the running daemon has it {state.get('state')}: {state.get('last_error') or 'no detail'}",
                   "check cable and power; to let doctor probe it: sudo systemctl stop laneagent && "
                   "sudo laneagent doctor && sudo systemctl start laneagent")


def _probe(cfg: Config, reader: ReaderConfig, key: str, timeout: float) -> Verdict:
    subject = f"reader {reader.name}"
    wait = min(0.3, max(0.1, timeout / 10))
    try:
        report = probing.probe(reader.url, (reader.baudrate,), (reader.dialect,), listen_s=wait,
                               reply_timeout_s=wait, attempts=2)
        if report.found is None:  # ask everything, so the answer can say what is really there
            report = probing.probe(reader.url, listen_s=wait, reply_timeout_s=wait, attempts=1)
    except probing.PortBusy as e:
        return Verdict(FAIL, subject, "port_busy", str(e), "close the program that holds the port, then retry")
    found = report.found
    if found is None:
        return Verdict(FAIL, subject, "reader_silent",
                       f"no answer on {reader.url}: not as {reader.dialect} at {reader.baudrate} baud, nor in any "
                       f"dialect at {', '.join(map(str, probing.BAUDS))} baud",
                       "check the reader's power supply and its cable (a USB adapter with TX/RX swapped "
                       "answers nothing); then: laneagent reader probe --url " + reader.url)
    what = f"{found.dialect} {found.model or ''} firmware {found.firmware or '?'}".replace("  ", " ")
    if found.dialect != reader.dialect:
        return Verdict(FAIL, subject, "wrong_dialect",
                       f"{reader.url} answers as {what} at {found.baudrate} baud, not as {key}.dialect = "
                       f"\"{reader.dialect}\"",
                       f"in {cfg.path} set {key}.dialect = \"{found.dialect}\"" +
                       (f" and {key}.baudrate = {found.baudrate}" if found.baudrate != reader.baudrate else ""))
    if found.baudrate != reader.baudrate:
        return Verdict(FAIL, subject, "wrong_baud",
                       f"{reader.url} answers at {found.baudrate} baud, not at {key}.baudrate = {reader.baudrate}",
                       f"in {cfg.path} set {key}.baudrate = {found.baudrate}")
    note = f" ({found.detail})" if found.detail else ""
    return passed(subject, f"answers on {reader.url}: {what} at {found.baudrate} baud{note}")
