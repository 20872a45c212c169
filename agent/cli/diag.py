"""`laneagent diag --out FILE`: a support bundle (tar.gz) a technician can mail without a second thought.

Inside, in one folder: README.txt (what each file is), status and doctor output (JSON
and text), the config with secrets removed, the last 2,000 log lines, each reader's
recent raw traffic as hex (a running daemon is asked for a fresh dump with SIGUSR2),
database statistics and a page on the system. No names, no full EPCs, no keys or
passwords (agent/diagnostics/bundle.py says how). The file is created mode 0600.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from typing import Callable

from agent import __version__
from agent import config as config_mod
from agent.readers.registry import load_config
from agent.cli import doctor as doctor_cmd
from agent.cli.common import Paint
from agent.cli.progress import Progress
from agent.diagnostics import bundle, traffic
from agent.errors import ConfigError, StoreError

EPILOG = """examples:
  sudo laneagent diag --out /tmp/lane-C3.tar.gz     # as root: logs, traffic and the database are readable
  tar tzf /tmp/lane-C3.tar.gz                       # see what is inside before sending it
"""

README = """laneagent support bundle
lane {lane}, collected {when} on {host}, laneagent {version}

status.json / status.txt     `laneagent status` (the daemon's live state and the database)
doctor.json / doctor.txt     `laneagent doctor` (every check, PASS/WARN/FAIL with the fix)
config.toml                  the configuration, secrets removed
logs.txt                     the last log lines (journalctl -u laneagent)
traffic-<reader>.hex         recent raw bytes per reader (rx = from the reader), EPCs masked
database.json                table counts, sizes, schema version, integrity, backlog per back end
system.txt                   OS, serial devices, service state, disk
notes.txt                    anything that could not be collected, and why

Personal data: names, plates and VINs the cache holds are removed from every file;
EPCs keep only their last four hex digits.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("diag", help="write a support bundle (tar.gz): status, doctor, logs, traffic, stats",
                              description="Write a support bundle (tar.gz, mode 0600): status, doctor, the config "
                                          "without secrets, recent logs, reader traffic (hex, EPCs masked), database "
                                          "figures. No names, no full EPCs, no passwords or keys.",
                              epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the bundle (.tar.gz)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="doctor's network timeout (default 3 s)")
    p.set_defaults(func=run)


def collect(config_path: str | None, timeout: float, say: Callable[[str], None] = lambda text: None) -> dict[str, str]:
    """Every file of the bundle, by name, scrubbed of personal data. `say` hears each step."""
    path = config_path or config_mod.default_path()
    files: dict[str, str] = {}
    notes: list[str] = []
    say("reading the config")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        cfg = None
        notes.append(f"the config could not be loaded, so status, traffic and database are missing:\n{e}")
    try:
        files["config.toml"] = bundle.config_text(path)
    except OSError as e:
        notes.append(f"config.toml: cannot read {path}: {e.strerror}")
    scrub, known_epcs = bundle.scrubber_for(cfg.store.path) if cfg else (bundle.Scrubber(), set())
    if cfg:
        from agent.cli import status as status_cmd

        say("reading the lane's status")
        try:
            doc = status_cmd.gather(cfg)
            files["status.json"] = json.dumps(doc, indent=2, default=str)
            files["status.txt"] = status_cmd.render(doc, Paint(io.StringIO()))
        except StoreError as e:
            notes.append(f"status: cannot read the lane's state: {e}")
        say("asking the daemon for its reader traffic")
        notes.append("traffic: " + bundle.ask_daemon_for_traffic(cfg))
        for reader in cfg.readers:
            dump = traffic.dump_path(os.path.dirname(cfg.status_path), reader.name)
            try:
                with open(dump) as f:
                    files[f"traffic-{reader.name}.hex"] = bundle.masked_traffic(f.read(), reader.dialect, known_epcs)
            except OSError as e:
                notes.append(f"traffic-{reader.name}.hex: {dump}: {e.strerror} (the daemon writes it every 5 min "
                             "and on SIGUSR2 once its reader traffic is recorded)")
            except ValueError as e:
                notes.append(f"traffic-{reader.name}.hex: {dump} is damaged: {e}")
        say("measuring the database")
        files["database.json"] = json.dumps(bundle.database_stats(cfg.store.path), indent=2, default=str)
    say(f"running doctor's checks (readers, brokers: up to {timeout:g} s each)")
    verdicts, doctor_doc = doctor_cmd.report(path, timeout)
    files["doctor.json"] = json.dumps(doctor_doc, indent=2)
    files["doctor.txt"] = doctor_cmd.render(verdicts, path, Paint(io.StringIO()))
    say("reading the logs")
    files["logs.txt"] = bundle.journal_text()
    say("describing the system")
    files["system.txt"] = bundle.system_text(cfg)
    files["notes.txt"] = "\n".join(notes) + "\n"
    lane = f"{cfg.lane.port_code}/{cfg.lane.lane_id}" if cfg else "unknown (config not loaded)"
    files["README.txt"] = README.format(lane=lane, when=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                        host=os.uname().nodename, version=__version__)
    say("removing personal data")
    return {name: scrub(text) for name, text in files.items()}


def write(out: str, files: dict[str, str], folder: str) -> None:
    # 0600 from the start: the bundle describes the booth's set-up even without personal data.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        now = time.time()
        for name in sorted(files):
            data = files[name].encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o600
            tar.addfile(info, io.BytesIO(data))


def run(args) -> int:
    progress = Progress("diag")
    try:
        files = collect(args.config, args.timeout, progress.say)
    finally:
        progress.done()
    folder = "laneagent-diag-" + time.strftime("%Y%m%dT%H%M%S")
    try:
        write(args.out, files, folder)
    except OSError as e:
        print(f"laneagent diag: cannot write {args.out}: {e.strerror}; choose another --out path "
              "(e.g. /tmp/diag.tar.gz)", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024 + 1} KB, {len(files)} files in {folder}/); "
          f"see what is inside: tar tzf {args.out}")
    return 0
