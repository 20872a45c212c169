"""Doctor: the configuration file, and the files it names (certificates, keys, passwords).

Every problem the loader finds is one FAIL line naming the key, as the daemon would
refuse to start on it; then the same pre-flight checks the daemon makes before it opens
anything (unreadable files, secrets readable by others, a bad verify_key). A file that
only this user cannot read, when doctor does not run as root, is a WARN: the service
user may well read it, and `sudo laneagent doctor` will tell.
"""

from __future__ import annotations

import os

from agent import config as config_mod
from agent.config import Config
from agent.doctor.verdict import FAIL, WARN, Verdict, passed
from agent.errors import ConfigError
from agent.preflight import problems as preflight_problems
from agent.readers.registry import load_config


def check(path: str | None) -> tuple[Config | None, list[Verdict]]:
    path = path or config_mod.default_path()
    try:
        cfg = load_config(path)
    except ConfigError as e:
        return None, [_config_problem(path, p) for p in e.problems]
    verdicts = []
    for problem in preflight_problems(cfg):
        if "permission denied" in problem and os.geteuid() != 0:
            verdicts.append(Verdict(WARN, "config", "cannot_check_as_user",
                                    f"{path}: {problem}, for you; the service user may read it",
                                    "check as root: sudo laneagent doctor"))
            continue
        fix = problem.split("; run: ", 1)[1] if "; run: " in problem else f"edit {path} or fix the file it names"
        verdicts.append(Verdict(FAIL, "config", "config_file_unusable", f"{path}: {problem.split('; run: ')[0]}",
                                fix if fix.startswith("edit") else f"run: {fix}"))
    if not verdicts:
        verdicts.append(passed("config", f"{path} is valid: lane {cfg.lane.port_code}/{cfg.lane.lane_id}, "
                                         f"{len(cfg.readers)} reader(s), {len(cfg.backends)} back end(s)"))
    return cfg, verdicts


def _config_problem(path: str, problem: str) -> Verdict:
    if problem.startswith("file not found"):
        return Verdict(FAIL, "config", "config_missing", f"{path}: no such file",
                       f"create it: sudo install -m 0640 /opt/laneagent/agent.example.toml {path}, then edit it; "
                       "or pass --config PATH")
    if problem.startswith("permission denied"):
        return Verdict(FAIL, "config", "config_unreadable", f"{path}: permission denied",
                       "run as root or the service user: sudo laneagent doctor")
    key = problem.split(":", 1)[0]
    return Verdict(FAIL, "config", "config_invalid", f"{path}: {problem}",
                   f"edit {path}: fix `{key}` (config/agent.example.toml shows every key); "
                   "the daemon refuses to start until it is right")
