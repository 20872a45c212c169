"""Idle cost: the real daemon with two connected readers (keep-alives only) and two brokers.

`laneagent run` is a subprocess; two ThingMagic simulators on ptys send keep-alives only
(no tag in the field); two real mosquitto brokers. Once everything is connected and has
settled, the daemon's own /proc figures are sampled at the start and the end of the
window: CPU (user + sys of all threads, % of one core), wake-ups (voluntary context
switches summed over its threads, per second) and bytes written (/proc/PID/io
write_bytes, per second: what reaches the disk). The layout is the unit's: the store on
disk, the status file in a runtime directory on tmpfs (systemd's RuntimeDirectory=,
named in $RUNTIME_DIRECTORY; here under /dev/shm). Run by hand, with the status file
beside the store, its heartbeat adds one rewrite every 30 s (4-20 KB written each, as
measured: 0.5-0.8 KB/s). The window is 60 s (DESIGN part 4); LANEAGENT_IDLE_S shortens
it while iterating.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from simulators.mosquitto import Mosquitto
from tests.helpers import backend_toml, lane_toml, reader_toml
from tests.lane_harness import Agent, ReaderSim

RUNTIME_TMPFS = "/dev/shm"  # tmpfs, as /run is
SETTLE_S = 5.0  # after both readers are up and both back ends connected
TICK_S = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict:
    """CPU seconds, voluntary context switches (all threads) and bytes written, now."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / TICK_S  # utime, stime (fields 14, 15)
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                switches += next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except (OSError, StopIteration):
            pass  # a thread that ended meanwhile
    with open(f"/proc/{pid}/io") as f:
        written = next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))
    return {"cpu_s": cpu_s, "switches": switches, "written": written, "mono": time.monotonic()}


def per_thread_switches(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/status") as f:
                n = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except (OSError, StopIteration):
            continue
        out[f"{name}:{task}"] = n
    return out


def _wait_connected(status_path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads(status_path.read_text())
        except (OSError, ValueError):
            doc = {}
        readers, backends = doc.get("readers", []), doc.get("backends", [])
        if len(readers) == 2 and all(r["state"] == "up" for r in readers) \
                and len(backends) == 2 and all(b["connected"] for b in backends):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the lane did not come up within {timeout:g} s")


def run(seconds: float | None = None) -> dict:
    seconds = float(seconds or os.environ.get("LANEAGENT_IDLE_S", 60))
    with tempfile.TemporaryDirectory() as tmp_name, tempfile.TemporaryDirectory(dir=RUNTIME_TMPFS) as runtime_name:
        tmp, runtime = Path(tmp_name), Path(runtime_name)
        (tmp / "r1").mkdir()
        (tmp / "r2").mkdir()
        with Mosquitto(tmp / "ca", persistent=False) as ca, Mosquitto(tmp / "us", persistent=False) as us:
            sims = [ReaderSim(tmp / "r1", []), ReaderSim(tmp / "r2", [])]
            agent = None
            try:
                config = tmp / "agent.toml"
                config.write_text(lane_toml(
                    tmp / "state" / "agent.db",
                    readers=reader_toml(sims[0].path, "gate", silence=10.0) + reader_toml(sims[1].path, "booth",
                                                                                           silence=10.0),
                    backends=backend_toml("cbsa", "CA", ca.port) + backend_toml("cbp", "US", us.port)))
                agent = Agent(tmp, config, env={"RUNTIME_DIRECTORY": str(runtime)}).start()
                _wait_connected(runtime / "status.json")
                time.sleep(SETTLE_S)
                pid = agent.proc.pid
                before, threads_before = proc_figures(pid), per_thread_switches(pid)
                time.sleep(seconds)
                after, threads_after = proc_figures(pid), per_thread_switches(pid)
                if agent.proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited: {agent.log_text()[-2000:]}")
            finally:
                if agent is not None:
                    agent.stop()
                for sim in sims:
                    sim.stop()
    span = after["mono"] - before["mono"]
    threads = {name: round((n - threads_before.get(name, 0)) / span, 1)
               for name, n in threads_after.items()}
    return {"seconds": round(span, 1), "readers": 2, "backends": 2, "status_file_on": "tmpfs (the unit's layout)",
            "cpu_percent_of_one_core": round(100 * (after["cpu_s"] - before["cpu_s"]) / span, 2),
            "wakeups_per_s": round((after["switches"] - before["switches"]) / span, 1),
            "written_bytes_per_s": round((after["written"] - before["written"]) / span, 1),
            "wakeups_per_s_by_thread": threads}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
