"""The watchdog is fed only while the work moves: a wedged store stops the pings.

The agent runs as a real process with a real notify socket (a datagram socket of the
test's, as systemd would provide); the store is wedged for real by another connection
holding SQLite's exclusive lock while cache messages keep arriving.
"""

import os
import socket
import sqlite3
import subprocess
import threading
import time


from tests.helpers import ROOT, agent_cmd, backend_toml, lane_toml
from tests.mqtt_probe import Probe


class NotifySocket:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def pings(self, since: float, until: float) -> int:
        return sum(1 for t, m in self.messages if m == "WATCHDOG=1" and since <= t <= until)

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_a_wedged_store_stops_the_watchdog_and_recovery_resumes_it(tmp_path, broker):
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml("cbsa", "CA", broker.port)))
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    with open(tmp_path / "agent.log", "ab") as log:
        agent = subprocess.Popen(agent_cmd(config), cwd=ROOT, env=env, stdout=log, stderr=log)
    probe = Probe(broker, ["border/0901/C3/#"])
    stop_traffic = threading.Event()

    def cache_traffic():  # work for the store: a cache upsert every 100 ms
        seq = 1
        while not stop_traffic.is_set():
            probe.publish("border/0901/cache", {"v": 1, "type": "cache", "source": "CA", "seq": seq,
                                                "op": "snapshot" if seq == 1 else "upsert", "records": []})
            seq += 1
            time.sleep(0.1)

    traffic = threading.Thread(target=cache_traffic, daemon=True)
    try:
        assert probe.wait("/status", 1, timeout=15)
        traffic.start()
        time.sleep(3)
        now = time.monotonic()
        assert any(m.startswith("READY=1") for _, m in notify.messages)
        assert notify.pings(now - 2.5, now) >= 3  # pinged every half WatchdogSec while healthy

        blocker = sqlite3.connect(tmp_path / "state" / "agent.db", timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")  # the store is wedged from here
        wedged = time.monotonic()
        time.sleep(13)
        assert notify.pings(wedged + 6.5, time.monotonic()) == 0
        blocker.execute("ROLLBACK")
        blocker.close()
        released = time.monotonic()
        time.sleep(4)
        assert notify.pings(released, time.monotonic()) >= 2
        assert "not feeding the watchdog" in (tmp_path / "agent.log").read_text()
    finally:
        stop_traffic.set()
        agent.terminate()
        agent.wait(20)
        probe.close()
        notify.close()
    assert any(m == "STOPPING=1" for _, m in notify.messages)
