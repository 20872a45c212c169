"""`laneagent doctor`'s checks: each says PASS, WARN or FAIL, why in plain words, and the fix.

`diagnose(config_path)` runs them all and returns `Verdict`s in a fixed order: the
config first (nothing else can run without it), then the daemon (its state decides
whether a reader port may be opened: DESIGN 2.7 forbids touching a port the daemon
holds), then readers and back ends (in parallel, each with its own timeout, so one
dead broker costs one timeout and not one per check), then disk, database and clock.
Each verdict carries a `cause` code (`port_missing`, `connection_refused`, ...) that
tests and `--json` users can match on; the check modules are `checks_*.py`, and what
they all return (`Verdict`, PASS/WARN/FAIL) is in `verdict.py`, so that they need
nothing from this package module.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from agent.doctor import checks_brokers, checks_config, checks_daemon, checks_host, checks_readers
from agent.doctor.verdict import FAIL, PASS, WARN, Verdict, counts, exit_code, passed

__all__ = ["DEFAULT_TIMEOUT_S", "FAIL", "PASS", "WARN", "Verdict", "counts", "diagnose", "exit_code", "passed"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0


def diagnose(config_path: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> list[Verdict]:
    """Every check doctor makes, in order; never raises for a fault it is meant to find."""
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
