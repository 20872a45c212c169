"""The daemon: wires readers, core, store and links together and keeps them honest.

Threads: one per reader session, the core (the one writer), one per back-end link,
and this main thread, which handles signals, alarms, the status file that `laneagent
status` reads, and systemd's notify protocol. The watchdog is fed only while the
work really moves (see `Daemon.healthy`); a wedged part stops the pings and systemd
restarts us.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

from agent import __version__, systemd
from agent.clock import ClockWatch
from agent.config import Config
from agent.core import LaneCore
from agent.diagnostics import traffic
from agent.lane.event import alarm_alert
from agent.readers import registry
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.store.writer import StoreWriter
from agent.sync.downlink import COMMANDS
from agent.sync.link import BackendLink
from agent.sync.tls import CertificateWatch

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
CORE_STALL_S = 5.0
LINK_STALL_S = 10.0
BACKEND_ALARM_AFTER_S = 10.0
BUDGET_EVERY_S = 10.0
CLOCK_ALARM_FOR_S = 600.0  # a clock jump stays an alarm this long, so a technician sees it
TRAFFIC_DUMP_EVERY_S = 300.0  # raw reader traffic for `laneagent diag`; SIGUSR2 dumps at once


class Daemon:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.started_ms = int(time.time() * 1000)
        self.writer = StoreWriter(cfg.store.path)
        self.core = LaneCore(cfg, self.writer)
        self.links = [BackendLink(cfg, b, self.core.submit, health=self.health_report, birth=self.birth)
                      for b in cfg.backends]
        for link in self.links:  # adapter: how the core answers the links (replaced at merge)
            self.core.on_committed.append(link.wake)
            self.core.resync[link.backend.name] = link.request_resync
        self.core.run_command = self.run_command
        self.sessions = [registry.open_session(r, self.core.submit_read, self._reader_state) for r in cfg.readers]
        self.alarms: dict[str, dict] = {}
        self.clock = ClockWatch()
        self.certificates = CertificateWatch(cfg)  # re-reads the TLS certificates hourly
        self._last_jump_mono: float | None = None
        self._next_budget_mono = 0.0
        self.backlog_bytes = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._dump_traffic = threading.Event()
        self._next_traffic_mono = time.monotonic() + TRAFFIC_DUMP_EVERY_S

    # --- lifecycle ----------------------------------------------------------------------------
    def run(self) -> int:
        if self.writer.recovery:
            r = self.writer.recovery
            self._raise_alarm("database_recovered", f"corrupt database moved to {r['moved_to']}; "
                                                    f"events continue at seq {r['continues_at_seq']}")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        signal.signal(signal.SIGUSR1, lambda *_: self.retry_now())  # `laneagent queue retry`
        signal.signal(signal.SIGUSR2, lambda *_: self._dump_traffic.set())  # `laneagent diag`
        self.core.start()
        for link in self.links:
            link.start()
        for session in self.sessions:
            session.start()
        systemd.notify(f"READY=1\nSTATUS=lane {self.cfg.lane.port_code}/{self.cfg.lane.lane_id} running")
        log.info("laneagent %s running: lane %s/%s, %d reader(s), %d back end(s), store %s", __version__,
                 self.cfg.lane.port_code, self.cfg.lane.lane_id, len(self.sessions), len(self.links),
                 self.cfg.store.path)
        ping_every = systemd.watchdog_interval_s()
        next_ping = 0.0
        while not self._stop.wait(STATUS_EVERY_S if ping_every is None else min(STATUS_EVERY_S, ping_every)):
            self._update_alarms()
            self._write_status()
            self._maybe_dump_traffic()
            if ping_every is not None and time.monotonic() >= next_ping:
                problems = self.problems()
                if not problems:
                    systemd.notify("WATCHDOG=1")
                    next_ping = time.monotonic() + ping_every
                else:
                    log.error("not feeding the watchdog: %s", "; ".join(problems))
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        log.info("stopping: readers first, then the store, then the links")
        for session in self.sessions:
            session.stop(timeout=5.0)
        self.core.stop()
        for link in self.links:
            link.stop()
        self._write_status(state="stopped")
        self._maybe_dump_traffic(force=True)
        self.writer.close()
        log.info("stopped")

    def command(self, link: BackendLink, msg: dict) -> dict:
        """A signed back-end command (runs on the core thread); ValueError = refused."""
        name, args = msg["command"], msg.get("args", {})
        if name == "ping":
            return {"pong": True, "at_ms": int(time.time() * 1000)}
        if name == "status":
            return {**self.health(), "problems": self.problems()}
        if name == "diag":
            return {**self.health(), "problems": self.problems(), "counters": dict(self.core.counters),
                    "inbox": self.core.inbox.qsize(), "threads": threading.active_count()}
        if name == "resync":
            source = link.backend.country
            row = self.writer.conn.execute("SELECT seq FROM cache_sources WHERE source = ?", (source,)).fetchone()
            self.core.resync_pending.add(source)
            link.request_resync(source, row[0] if row else 0)
            return {"requested": source, "have_seq": row[0] if row else 0}
        if name == "set_random_rate":
            rate = args.get("rate")
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 0.2:
                raise ValueError("set_random_rate needs args.rate between 0 and 0.2")
            old, self.core.random_rate = self.core.random_rate, float(rate)
            log.warning("random referral rate changed by back end %s: %s -> %s", link.backend.name, old, rate)
            return {"random_rate": self.core.random_rate, "was": old}
        raise ValueError(f"unknown command {name!r}")

    def run_command(self, backend: str, msg: dict) -> None:
        """Adapter (replaced at merge): run an accepted command, on the core thread as before,
        and answer it through its link."""
        link = next(link for link in self.links if link.backend.name == backend)
        try:
            if msg.get("command") not in COMMANDS:
                raise ValueError(f"unknown command {msg.get('command')!r} (known: {', '.join(COMMANDS)})")
            result = {"ok": True, "result": self.command(link, msg)}
        except (ValueError, TypeError) as e:
            result = {"ok": False, "error": str(e)}
        link.send_command_result(msg["id"], msg.get("command"), result)

    def retry_now(self) -> None:
        log.info("retry requested: links reconnect and re-offer every undelivered item")
        for link in self.links:
            link.retry_now()

    # --- health ---------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why the daemon is wedged, if it is: the watchdog is fed only when this is empty."""
        now = time.monotonic()
        out = []
        if not self.core.alive or now - self.core.last_loop_mono > CORE_STALL_S:
            out.append("core loop stalled")
        elif self.core.inbox.qsize() and now - self.core.last_commit_mono > CORE_STALL_S:
            out.append("store not committing")
        for link in self.links:
            if now - link.progress_mono > LINK_STALL_S:
                out.append(f"link {link.backend.name} wedged")
        for session, rcfg in zip(self.sessions, self.cfg.readers):
            # A reader that is down is alarmed and retried, not wedged; one that claims to be
            # up but has proved nothing for twice its silence timeout has a stuck thread.
            if session.snapshot()["state"] == "up" and now - session.alive_mono > 2 * rcfg.silence_timeout_s:
                out.append(f"reader {rcfg.name} session stuck")
        return out

    def _reader_state(self, name: str, state: str, detail: str) -> None:
        # The session logs its own state changes; here they become alarms.
        if state == "down":
            self._raise_alarm(f"reader_down:{name}", detail)
        elif state == "up":
            self._clear_alarm(f"reader_down:{name}")

    def _update_alarms(self) -> None:
        now = time.monotonic()
        jump = self.clock.observe()
        if jump is not None:
            log.warning("wall clock jumped by %+.1f s (NTP step or RTC reset); seq and passages are unaffected", jump)
            self._last_jump_mono = now
            self._clear_alarm("clock_jump")  # raise afresh with this jump's size
            self._raise_alarm("clock_jump", f"wall clock jumped by {jump:+.1f} s")
        elif self._last_jump_mono is not None and now - self._last_jump_mono > CLOCK_ALARM_FOR_S:
            self._clear_alarm("clock_jump")
            self._last_jump_mono = None
        if not ClockWatch.sane():
            self._raise_alarm("clock_invalid", "wall clock is before 2020: set the time (timedatectl, NTP)")
        else:
            self._clear_alarm("clock_invalid")
        if self.core.store_error:
            self._raise_alarm("store_unwritable", self.core.store_error)
        else:
            self._clear_alarm("store_unwritable")
        self.certificates.update(self._raise_alarm, self._clear_alarm)
        if now >= self._next_budget_mono:
            self._next_budget_mono = now + BUDGET_EVERY_S
            self._check_budget()
        for link in self.links:
            key = f"backend_down:{link.backend.name}"
            if link.connected:
                self._clear_alarm(key)
                link.down_since = None
            else:
                link.down_since = getattr(link, "down_since", None) or now
                if now - link.down_since >= BACKEND_ALARM_AFTER_S:
                    self._raise_alarm(key, link.last_error or "not connected")

    def _check_budget(self) -> None:
        """Alarm (and keep working) when the undelivered backlog exceeds store.max_queue_mb."""
        try:
            conn = open_reader(self.cfg.store.path)
            try:
                self.backlog_bytes = conn.execute(
                    "SELECT coalesce(sum(bytes), 0) FROM deliveries WHERE delivered_ms IS NULL").fetchone()[0]
            finally:
                conn.close()
        except Exception as e:  # a figure for an alarm; never let it stop the daemon
            log.warning("cannot measure the backlog: %s", e)
            return
        budget = self.cfg.store.max_queue_mb * 1024 * 1024
        if self.backlog_bytes > budget:
            self._raise_alarm("backlog_over_budget", f"undelivered backlog {self.backlog_bytes / 1e6:.1f} MB exceeds "
                                                     f"store.max_queue_mb ({self.cfg.store.max_queue_mb} MB)")
        else:
            self._clear_alarm("backlog_over_budget")

    def _raise_alarm(self, key: str, detail: str) -> None:
        with self._lock:
            if key in self.alarms:
                return
            self.alarms[key] = {"alarm": key, "since_ms": int(time.time() * 1000), "detail": detail}
        log.warning("alarm raised: %s (%s)", key, detail)
        to = [b.name for b in self.cfg.backends if "alerts" in b.share]
        if to:
            self.core.submit_alert(alarm_alert(key.split(":")[0], int(time.time() * 1000), subject=key,
                                               state="raised", message=detail[:200]), to)

    def _clear_alarm(self, key: str) -> None:
        with self._lock:
            if self.alarms.pop(key, None) is None:
                return
        log.info("alarm cleared: %s", key)
        to = [b.name for b in self.cfg.backends if "alerts" in b.share]
        if to:
            self.core.submit_alert(alarm_alert(key.split(":")[0], int(time.time() * 1000), subject=key,
                                               state="cleared"), to)

    # --- figures for status, health and birth ---------------------------------------------------
    def birth(self) -> dict:
        next_seq, head = self.writer_state()
        return {"seq": next_seq - 1, "hash": head, "started_ms": self.started_ms}

    def writer_state(self) -> tuple[int, str]:
        conn = open_reader(self.cfg.store.path)
        try:
            return conn.execute("SELECT next_seq, head_hash FROM lane_state WHERE id = 1").fetchone()
        finally:
            conn.close()

    def health_report(self) -> dict:
        """What goes out on B/health (every 30 s): the status figures, plus the chain head,
        so a back end can detect truncation or rollback, and the backlog and gaps."""
        conn = open_reader(self.cfg.store.path)
        try:
            next_seq, head = conn.execute("SELECT next_seq, head_hash FROM lane_state WHERE id = 1").fetchone()
            outbox = Outbox(conn)
            backlog = {b.name: outbox.backlog(b.name) for b in self.cfg.backends}
            gaps = outbox.gaps(10)
        finally:
            conn.close()
        return {**self.health(), "chain": {"seq": next_seq - 1, "hash": head}, "backlog": backlog, "gaps": gaps}

    def health(self) -> dict:
        return {
            "readers": [s.snapshot() for s in self.sessions],
            "backends": [{**link.snapshot(), "certificates": self.certificates.figures(link.backend.name)}
                         for link in self.links],
            "counters": dict(self.core.counters),
            "random_rate": self.core.random_rate,
            "alarms": list(self.alarms.values()),
            "clock": self.clock.figures(),
            "backlog_bytes": self.backlog_bytes,
        }

    def _maybe_dump_traffic(self, force: bool = False) -> None:
        """Raw reader traffic to traffic-<reader>.hex beside status.json: asked for (SIGUSR2), due, or at stop."""
        now = time.monotonic()
        if not (force or self._dump_traffic.is_set() or now >= self._next_traffic_mono):
            return
        self._dump_traffic.clear()
        self._next_traffic_mono = now + TRAFFIC_DUMP_EVERY_S
        readers = {r.name: f"{r.dialect} on {r.url} at {r.baudrate} baud" for r in self.cfg.readers}
        traffic.dump_all(os.path.dirname(self.cfg.status_path), lambda name: readers.get(name, ""))

    def _write_status(self, state: str = "running") -> None:
        doc = {"pid": os.getpid(), "state": state, "version": __version__, "started_ms": self.started_ms,
               "updated_ms": int(time.time() * 1000), "problems": self.problems() if state == "running" else [],
               **self.health()}
        path = self.cfg.status_path
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f, default=str)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write %s: %s", path, e)
