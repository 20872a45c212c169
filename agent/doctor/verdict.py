"""What every doctor check returns: a PASS, WARN or FAIL verdict with its cause and its fix.

Shared by the check modules (`checks_*.py`) and by `diagnose`, which runs them; it
imports nothing of doctor, so the checks and the package that runs them do not import
each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass(frozen=True)
class Verdict:
    status: str  # PASS | WARN | FAIL
    subject: str  # what was checked: "config", "reader booth", "back end cbsa", "disk", ...
    cause: str  # a stable code: "ok" for a pass, else what is wrong ("port_missing", ...)
    message: str  # the finding in plain words, naming the file, key or device
    fix: str = ""  # what to do: a command to run, a file and key to change

    def to_dict(self) -> dict:
        return asdict(self)


def passed(subject: str, message: str) -> Verdict:
    return Verdict(PASS, subject, "ok", message)


def exit_code(verdicts: list[Verdict]) -> int:
    return 1 if any(v.status == FAIL for v in verdicts) else 0


def counts(verdicts: list[Verdict]) -> dict:
    return {s.lower(): sum(1 for v in verdicts if v.status == s) for s in (PASS, WARN, FAIL)}
