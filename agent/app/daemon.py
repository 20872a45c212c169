"""The daemon: wires readers, core, store and links together, and runs their lifecycle.

Threads: one per reader session, the core (the one writer), one per back-end link, one
for back-end commands, and this main thread, which handles signals, the alarm rules,
the status file that `laneagent status` reads (written when it changes), the raw-traffic dumps and systemd's
notify protocol. Each part owns its state; this class only wires and drives them.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time

from agent import __version__, systemd
from agent.app.alarm_rules import AlarmRules
from agent.app.alarms import Alarms
from agent.app.commands import Commands
from agent.app.figures import Figures
from agent.app.metrics import MetricsServer
from agent.app.status_writer import StatusWriter
from agent.app.watchdog import Watchdog
from agent.config import Config
from agent.core import LaneCore
from agent.diagnostics import traffic
from agent.readers import registry
from agent.statusfile import StatusFile
from agent.store.db import open_reader
from agent.store.integrity import IntegrityCheck
from agent.store.writer import StoreWriter
from agent.sync.link import BackendLink

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # the main loop's turn: alarm rules, status document, watchdog
TRAFFIC_DUMP_EVERY_S = 300.0  # raw reader traffic for `laneagent diag`; SIGUSR2 dumps at once


class Daemon:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.writer = StoreWriter(cfg.store.path)
        self.links_by_name: dict[str, BackendLink] = {}
        self.core = LaneCore(cfg, self.writer, on_command=lambda cmd: self.commands.submit(cmd))
        self.alarms = Alarms(cfg, self.core.submit_alert)
        self.links = [BackendLink(cfg, b, self.core.submit, health=lambda: self.figures.health_report(),
                                  birth=lambda: self.figures.birth()) for b in cfg.backends]
        self.links_by_name.update((link.backend.name, link) for link in self.links)
        for link in self.links:
            self.core.on_committed.append(link.wake)
            self.core.resync[link.backend.name] = link.request_resync
        self.rules = AlarmRules(cfg, self.alarms, self.core, self.links)
        self.sessions = [registry.open_session(r, self.core.submit_read, self.rules.reader_state,
                                               wrap_transport=self._tap(r.name)) for r in cfg.readers]
        self.watchdog = Watchdog(cfg, self.core, self.links, self.sessions)
        self.figures = Figures(cfg, self.core, self.links, self.sessions, self.alarms, self.rules)
        self.commands = Commands(cfg.store.path, self.core, self.links_by_name, self.figures.health,
                                 self.watchdog.problems)
        self.status = StatusWriter(StatusFile(cfg.status_path))
        self.metrics = MetricsServer(cfg, self.figures, self.alarms)
        # What the signal handlers asked for. A handler runs on this thread between any two
        # bytecodes, so it only adds to this set: one that took a lock (Event.set) could
        # deadlock against the very wait it interrupted (seen: a SIGTERM that never stopped).
        self._asked: set[str] = set()
        self._wake: socket.socket | None = None  # a byte here wakes the main loop (signals, the check)
        self.integrity = IntegrityCheck(cfg.store.path, lambda: open_reader(cfg.store.path, probe=False),
                                        self._corrupt)
        self.exit_code = 0
        self._dump_traffic = False
        self._next_traffic_mono = time.monotonic() + TRAFFIC_DUMP_EVERY_S

    @staticmethod
    def _tap(name: str):
        ring = traffic.ring_for(name)  # the port's recent traffic, for `laneagent diag`
        return lambda transport: traffic.TrafficTap(transport, ring)

    # --- lifecycle ----------------------------------------------------------------------------
    def run(self) -> int:
        if self.writer.recovery:
            r = self.writer.recovery
            self.alarms.raise_("database_recovered", f"corrupt database moved to {r['moved_to']}; "
                                                     f"events continue at seq {r['continues_at_seq']}")
        wake_r, wake_w = socket.socketpair()  # a signal's byte wakes the wait below at once
        for sock in (wake_r, wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        self._wake = wake_w
        for sig, asked in ((signal.SIGTERM, "stop"), (signal.SIGINT, "stop"),
                           (signal.SIGUSR1, "retry"),  # `laneagent queue retry`
                           (signal.SIGUSR2, "dump")):  # `laneagent diag`
            signal.signal(sig, lambda *_, asked=asked: self._asked.add(asked))
        self.metrics.start()  # bound before READY: a scrape never finds a half-started lane refused
        self.core.start()
        self.commands.start()
        for part in self.links + self.sessions:
            part.start()
        systemd.notify(f"READY=1\nSTATUS=lane {self.cfg.lane.port_code}/{self.cfg.lane.lane_id} running")
        log.info("laneagent %s running: lane %s/%s, %d reader(s), %d back end(s), store %s", __version__,
                 self.cfg.lane.port_code, self.cfg.lane.lane_id, len(self.sessions), len(self.links),
                 self.cfg.store.path)
        self.integrity.start()  # reads the whole file: after READY, beside the lane
        every = STATUS_EVERY_S if self.watchdog.every_s is None else min(STATUS_EVERY_S, self.watchdog.every_s)
        try:
            while self._turn(wake_r, every):
                self.rules.update()
                self._write_status(asked=self._dump_traffic)  # `diag` (SIGUSR2) reads it next
                self._maybe_dump_traffic()
                self.watchdog.feed()
        finally:
            signal.set_wakeup_fd(-1)
            self._wake = None
            wake_r.close()
            wake_w.close()
        self.shutdown()
        return self.exit_code

    def _turn(self, wake: socket.socket, every: float) -> bool:
        """Sleep until a signal or `every` s; act on what the signals asked. False: stop."""
        select.select([wake], [], [], every)
        try:
            while wake.recv(64):
                pass
        except BlockingIOError:
            pass
        asked, self._asked = self._asked, set()
        if "retry" in asked:
            self.retry_now()
        if "dump" in asked:
            self._dump_traffic = True
        if "corrupt" in asked:
            self.alarms.raise_("database_corrupt", f"{self.cfg.store.path} failed its integrity check "
                                                   f"({self.integrity.result}); restarting to move it aside")
            self.exit_code = 1  # systemd restarts the daemon; the start moves the file aside
            asked.add("stop")
        if "stop" in asked:
            self._asked.add("stop")  # stays asked
            return False
        return True

    def _corrupt(self, detail: str) -> None:
        """From the integrity check's thread: only note it and wake the main loop."""
        self._asked.add("corrupt")
        wake = self._wake
        if wake is not None:
            try:
                wake.send(b"c")
            except OSError:
                pass  # the loop is stopping anyway

    def shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        log.info("stopping: readers first, then the store, then the links")
        self.metrics.stop()
        for session in self.sessions:
            session.stop(timeout=5.0)
        self.core.stop()
        self.commands.stop()
        for link in self.links:
            link.stop()
        self._write_status(state="stopped")
        self._maybe_dump_traffic(force=True)
        self.writer.close()
        log.info("stopped")

    def retry_now(self) -> None:
        log.info("retry requested: links reconnect and re-offer every undelivered item")
        for link in self.links:
            link.retry_now()

    def _maybe_dump_traffic(self, force: bool = False) -> None:
        """Raw reader traffic to traffic-<reader>.hex beside status.json: asked for (SIGUSR2), due, or at stop."""
        now = time.monotonic()
        if not (force or self._dump_traffic or now >= self._next_traffic_mono):
            return
        self._dump_traffic = False
        self._next_traffic_mono = now + TRAFFIC_DUMP_EVERY_S
        readers = {r.name: f"{r.dialect} on {r.url} at {r.baudrate} baud" for r in self.cfg.readers}
        traffic.dump_all(os.path.dirname(self.cfg.status_path), lambda name: readers.get(name, ""))

    def _write_status(self, state: str = "running", asked: bool = False) -> None:
        """Built every second (the watchdog's problems, the alarms); written when it changed."""
        try:
            self.status.offer(self.figures.status_doc(state, self.watchdog.problems() if state == "running"
                                                      else []), force=asked or state != "running")
        except OSError as e:
            log.warning("cannot write %s: %s", self.cfg.status_path, e)
