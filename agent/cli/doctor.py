"""`laneagent doctor`: active checks, each a PASS, WARN or FAIL line with the cause and the fix.

The checks live in agent/doctor/. With the daemon running, doctor asks it (status.json)
about the readers instead of opening their ports; with none running it warns and still
checks everything. Exit 0 when nothing failed, 1 on any FAIL (warnings do not fail).
"""

from __future__ import annotations

import argparse

from agent import doctor
from agent.cli.common import Paint, print_json
from agent.config import default_path

EPILOG = """examples:
  sudo laneagent doctor                    # as root: sees the service user's files and ports
  laneagent doctor --json | jq '.checks[] | select(.status == "FAIL")'
  laneagent doctor --timeout 2 --config /etc/laneagent/agent.toml

Each line: STATUS  what  cause; the indented "fix:" line says what to do.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check config, readers, brokers, certificates, disk, database, clock",
                              description="Active checks of config, reader ports and readers, brokers (DNS, TCP, TLS, credentials), "
                                          "certificates, disk, database, clock and the daemon, each a PASS, WARN or "
                                          "FAIL line with the cause and the fix. Exit 0 if nothing failed, 1 on any FAIL.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=doctor.DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"network timeout per step (default {doctor.DEFAULT_TIMEOUT_S:g} s)")
    p.set_defaults(func=run)


def render(verdicts: list[doctor.Verdict], config_path: str, paint: Paint) -> str:
    colour = {doctor.PASS: paint.good, doctor.WARN: paint.warn, doctor.FAIL: paint.bad}
    width = max((len(v.subject) for v in verdicts), default=8)
    lines = [f"laneagent doctor: {config_path}"]
    for v in verdicts:
        lines.append(f"{colour[v.status](v.status)}  {v.subject:<{width}}  {v.message}")
        if v.fix and v.status != doctor.PASS:
            lines.append(f"{'':6}{'':<{width}}  fix: {v.fix}")
    n = doctor.counts(verdicts)
    lines.append(f"{n['pass']} passed, {n['warn']} warning(s), {n['fail']} failure(s)")
    return "\n".join(lines)


def report(config_path: str | None, timeout: float) -> tuple[list[doctor.Verdict], dict]:
    """The verdicts and the --json document (also what `diag` puts in its bundle)."""
    path = config_path or default_path()
    verdicts = doctor.diagnose(path, timeout)
    return verdicts, {"config": path, "checks": [v.to_dict() for v in verdicts], "summary": doctor.counts(verdicts),
                      "exit": doctor.exit_code(verdicts)}


def run(args) -> int:
    verdicts, doc = report(args.config, args.timeout)
    if args.json:
        print_json(doc)
    else:
        print(render(verdicts, doc["config"], Paint()))
    return doc["exit"]
