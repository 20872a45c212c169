"""A whole lane for the benches, as real processes: a simulated reader on a pty (in this
process, so its tally is at hand), `laneagent run` as a child process, two mosquitto
brokers, and one subscriber per broker that stamps each event with `time.monotonic()`
when it arrives (the same system-wide clock the daemon's trace uses, agent/trace.py).

Used by latency_bench.py and line_rate_bench.py. Nothing is mocked; the daemon reads the
pty through pyserial like a USB reader.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
import threading
import time
import uuid
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt

from agent import trace
from simulators.mosquitto import Mosquitto
from simulators.reader.runner import SimulatedReader
from simulators.scenario import parse_scenario
from tests.helpers import ROOT, agent_cmd, backend_toml, lane_toml

BACKENDS = (("cbsa", "CA"), ("cbp", "US"))
SHARE = '["tags", "findings", "referral", "alerts"]'


class Subscriber:
    """Every event a broker delivers: (monotonic on arrival, seq, tag EPCs)."""

    def __init__(self, broker: Mosquitto):
        self.events: list[tuple[float, int, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("border/+/+/events", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()  # first: the moment of arrival, before decoding
        body = cbor2.loads(message.payload)
        with self._lock:
            self.events.append((now, body["seq"], tuple(t["epc"] for t in body.get("tags", ()))))

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class LaneRig:
    """Start with `with LaneRig(...) as rig:`; everything is stopped on the way out."""

    def __init__(self, dialect: str, scenario: dict, *, baudrate: int = 115200, antennas=(1,), trace_on: bool = True,
                 reader_options: dict | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="lane-rig-"))
        self.dialect, self.baudrate, self.antennas = dialect, baudrate, list(antennas)
        self.scenario = parse_scenario(scenario)
        self.reader_options = reader_options or {}
        self.trace_path = self.dir / "trace.txt" if trace_on else None
        self.brokers: list[Mosquitto] = []
        self.subscribers: list[Subscriber] = []
        self.sim: SimulatedReader | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def db_path(self) -> Path:
        return self.dir / "state" / "agent.db"

    def __enter__(self) -> "LaneRig":
        if threading.current_thread() is threading.main_thread():
            # `timeout` or a Ctrl-C'd make sends SIGTERM: unwind, so the daemon and brokers
            # started below (their own sessions) are stopped, not orphaned.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            for name, _ in BACKENDS:
                self.brokers.append(Mosquitto(self.dir / f"broker-{name}", persistent=False).start())
            self.subscribers = [Subscriber(b) for b in self.brokers]
            for s in self.subscribers:
                s.ready.wait(10)
            self.sim = SimulatedReader(self.dialect, self.scenario, **self.reader_options).start()
            config = self.dir / "agent.toml"
            reader = (f'[[readers]]\nname = "booth"\ndialect = "{self.dialect}"\nurl = "{self.sim.device}"\n'
                      f"baudrate = {self.baudrate}\nantennas = {self.antennas}\nsilence_timeout_s = 5\n")
            backends = "".join(backend_toml(name, country, b.port, share=SHARE)
                               for (name, country), b in zip(BACKENDS, self.brokers))
            config.write_text(lane_toml(self.db_path, readers=reader, backends=backends))
            self.idle_close_s = tomllib.loads(config.read_text())["aggregation"]["idle_close_s"]
            env = dict(os.environ)
            env.pop(trace.ENV, None)
            if self.trace_path:
                env[trace.ENV] = str(self.trace_path)
            with open(self.dir / "agent.log", "ab") as log:
                self.proc = subprocess.Popen(agent_cmd(config), cwd=ROOT, stdout=log, stderr=log, env=env,
                                             start_new_session=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_streaming(self, timeout: float = 120.0) -> float:
        """Until the daemon has set the simulated reader streaming (a loaded machine can take
        many seconds to start it); returns the simulator's clock then (scenario seconds)."""
        deadline = time.monotonic() + timeout
        while not getattr(self.sim.model, "streaming", False):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the daemon did not start the reader: {self.log_text()[-2000:]}")
            time.sleep(0.05)
        return self.sim.elapsed()

    def wait_events(self, n: int, timeout: float) -> bool:
        """Until every subscriber has `n` events (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.count() >= n for s in self.subscribers):
                return True
            time.sleep(0.05)
        return False

    def stop_daemon(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def query(self, sql: str) -> list:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def trace(self) -> list[tuple[float, str, list[str]]]:
        return trace.read(str(self.trace_path)) if self.trace_path and self.trace_path.exists() else []

    def log_text(self) -> str:
        return (self.dir / "agent.log").read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        self.stop_daemon()
        if self.sim is not None:
            self.sim.stop()
        for s in self.subscribers:
            s.close()
        for b in self.brokers:
            b.stop()
