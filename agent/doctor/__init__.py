"""`laneagent doctor`'s checks: each says PASS, WARN or FAIL, why in plain words, and the fix.

`diagnose(config_path)` runs them all and returns `Verdict`s in a fixed order: the
config first (nothing else can run without it), then the daemon (its state decides
whether a reader port may be opened: DESIGN 2.7 forbids touching a port the daemon
holds), then readers and back ends (in parallel, each with its own timeout, so one
dead broker costs one timeout and not one per check), then disk, database and clock.
Each verdict carries a `cause` code (`port_missing`, `connection_refused`, ...) that
tests and `--json` users can match on; the check modules are `checks_*.py`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
DEFAULT_TIMEOUT_S = 5.0


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


def diagnose(config_path: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> list[Verdict]:
    """Every check doctor makes, in order; never raises for a fault it is meant to find."""
    from agent.doctor import checks_brokers, checks_config, checks_daemon, checks_host, checks_readers

    cfg, verdicts = checks_config.check(config_path)
    if cfg is None:
        return verdicts
    daemon, found = checks_daemon.check(cfg)
    verdicts += found
    broker_clocks: list[tuple[str, float]] = []
    # Readers and back ends wait on hardware and networks: run them side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(cfg.readers) + len(cfg.backends))) as pool:
        readers = [pool.submit(_guarded, checks_readers.check, f"reader {r.name}", cfg, i, daemon, timeout)
                   for i, r in enumerate(cfg.readers)]
        backends = [pool.submit(_guarded, checks_brokers.check, f"back end {b.name}", cfg, i, timeout, broker_clocks)
                    for i, b in enumerate(cfg.backends)]
        for future in readers + backends:
            verdicts += future.result()
    verdicts += _guarded(checks_host.check, "host", cfg, daemon, broker_clocks)
    return verdicts


def _guarded(check, subject: str, *args) -> list[Verdict]:
    """A bug in one check is a FAIL line for that check, not a crashed doctor."""
    try:
        return check(*args)
    except Exception as e:  # doctor runs when things are broken; it must always finish
        log.debug("check %s failed", subject, exc_info=True)
        return [Verdict(FAIL, subject, "doctor_error", f"the check itself failed: {e!r}",
                        "report this with `laneagent diag --out diag.tar.gz`")]


def exit_code(verdicts: list[Verdict]) -> int:
    return 1 if any(v.status == FAIL for v in verdicts) else 0


def counts(verdicts: list[Verdict]) -> dict:
    return {s.lower(): sum(1 for v in verdicts if v.status == s) for s in (PASS, WARN, FAIL)}
