"""Backlog drain: N stored events to two real brokers, beside bare paho and beside a mosquitto bridge.

Beside bare paho (the bar, DESIGN part 4): the same work with nothing but paho, one
plain QoS 1 publish loop per broker, both at once in this process (as our two links
do), same payload size and in-flight window. Our rate / the baseline's is the figure,
over PAIRS rounds with the order alternating (single runs of either moved by up to
a fifth from one run to the next on this machine); CPU seconds per 1,000 events come
from this process's rusage over each run.

Beside the peer an integrator would build instead (issue 13): the application publishes
into a local mosquitto with persistence, which bridges to both back ends. Both peers
are measured the same way after an outage: the back ends' brokers are stopped, the
backlog is in the peer (our outbox; the local broker's queues), the brokers come back,
and a subscriber process per back end (persistent session, `sink.py`) says when the
last distinct event arrived: events/s per back end and seconds from broker back to last
event received; CPU per 1,000 events is the peer's process (the daemon; the local
mosquitto) over that time. Then the same with `kill -9` of the peer while the back ends
are down: events lost = events never received. The bridge is killed 2 s after the
application's last PUBACK, with mosquitto's default autosave (1800 s) and with 1 s.
LANEAGENT_DRAIN_N sets N for the outage runs (default: N of the bare-paho run).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from agent import config
from agent.core import LaneCore
from agent.lane.disclosure import view_for
from agent.lane.event import GENESIS, canonical, seal
from agent.store.db import open_reader
from agent.store.outbox import Outbox
from agent.store.writer import StoreWriter
from agent.sync.connection import INFLIGHT_WINDOW
from simulators.mosquitto import Mosquitto
from tests.helpers import ROOT, agent_cmd, backend_toml, lane_toml
from tests.sync.wiring import links_for

SECTIONS_SAMPLE = {
    "tags": [{"epc": "E2801160600002054C4B1A7F", "role": "driver", "antenna": 1, "reader": "booth", "count": 12,
              "rssi_max": -48, "first_ms": 1, "last_ms": 2}],
    "driver": [{"id": "DRV-0001", "source": "CA", "name": "Alex Martin", "status": "valid"}],
    "conveyance": {"id": "TRK-0001", "source": "CA", "plate": "AB 1234", "carrier": "NORTHLINE"},
    "equipment": [], "trip": {"id": "TRIP-1", "source": "CA", "carrier": "NORTHLINE", "eta_ms": 1},
    "shipments": [{"id": "SHP-1", "description": "lumber"}], "findings": [],
    "referral": {"refer": False, "reasons": [], "random": False},
}
BACKENDS = (("cbsa", "CA", "ca"), ("cbp", "US", "us"))  # name, country, the bridge's local topic prefix
EVENTS_TOPIC = "border/0901/C3/events"
OUTAGE_S = 3.0  # the back ends' brokers are away this long before they come back
DONE_TIMEOUT_S = 300.0  # broker back -> every event received, at most
QUIET_S = 10.0  # a kill run is over when nothing new arrived for this long


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill_backlog(writer: StoreWriter, n: int, cfg: config.Config) -> int:
    """n sealed events owed to every back end of `cfg` as the core owes them (a `View`: the
    payload is cut from the stored event at send time); returns the mean size of a full
    event (the bare-paho baseline publishes that many bytes)."""
    head = GENESIS
    total = 0
    with writer.transaction():
        for seq in range(1, n + 1):
            event = seal({"v": 1, "type": "crossing", "event_id": f"bench-{seq}", "seq": seq, "port": "0901",
                          "lane": "C3", "entering": "CA", "leaving": "US", "started_ms": seq, "ended_ms": seq,
                          **SECTIONS_SAMPLE}, head)
            head = event["hash"]
            total += len(canonical(event))
            writer.add_event(event, {b.name: view_for(b, cfg.lane) for b in cfg.backends}, int(time.time() * 1000))
    return total // max(n, 1)


def pending(outbox: Outbox) -> int:
    """Events still owed to any back end (the outbox's own figures)."""
    return sum(outbox.backlog(name)["events"] for name, _, _ in BACKENDS)


# --- beside bare paho -------------------------------------------------------------------------
def bare_paho(brokers: list[Mosquitto], n: int, size: int) -> float:
    """Events/s per broker of plain QoS 1 publish loops, one thread per broker, all at once."""
    rates: list[float] = []
    threads = [threading.Thread(target=lambda b=b: rates.append(_bare_loop(b, n, size))) for b in brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return min(rates)


def _bare_loop(broker: Mosquitto, n: int, size: int) -> float:
    """QoS 1 publishes with the same bounded in-flight window as production's link: an
    unbounded loop queues all n in paho at once and stalls at 100,000 (issue 13)."""
    return n / publish_all(broker, f"bench-bare-{broker.port}", (("bench/bare", b"x" * size) for _ in range(n)), n)


def publish_all(broker: Mosquitto, client_id: str, messages, n: int) -> float:
    """Publish (topic, payload) pairs at QoS 1 within INFLIGHT_WINDOW; seconds until every PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(0)  # as production's link: the window is bounded below, not by paho
    client.max_queued_messages_set(0)
    acked = 0
    room = threading.Condition()

    def on_publish(*_):
        nonlocal acked
        with room:
            acked += 1
            room.notify()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    start = time.perf_counter()
    for sent, (topic, payload) in enumerate(messages):
        with room:
            room.wait_for(lambda: sent - acked < INFLIGHT_WINDOW, timeout=30)
        client.publish(topic, payload, qos=1)
    with room:
        room.wait_for(lambda: acked >= n, timeout=120)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return elapsed


def lane_config(db: Path, ca_port: int = 1883, us_port: int = 1884) -> config.Config:
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(db)},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "port": ca_port, "max_rate": 0,
                      "share": list(config.SHARE_ITEMS)},
                     {"name": "cbp", "country": "US", "host": "127.0.0.1", "port": us_port, "max_rate": 0,
                      "share": ["tags", "findings", "referral"]}]})


def filled_db(path: Path, n: int) -> tuple[Path, int]:
    """A database holding n events owed to both back ends, closed (each run copies it), and the
    mean size of a full event. The payloads do not depend on the brokers' ports."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = StoreWriter(str(path))
    size = fill_backlog(writer, n, lane_config(path))
    writer.close()
    return path, size


PAIRS = 2  # rounds of bare paho and ours, the order alternating: a drift in the machine's speed cancels out


def beside_bare_paho(tmp: Path, filled: Path, n: int, size: int) -> dict:
    """Our links + core in this process vs bare paho, on the same two brokers, in PAIRS rounds
    (bare first, then ours first). The ratio is of the rounds' total times; each round is
    reported too, so the spread shows."""
    rounds = [_round(tmp / f"round-{i}", filled, n, size, ours_first=i % 2 == 1) for i in range(PAIRS)]
    ours_s, bare_s = sum(r["ours_s"] for r in rounds), sum(r["bare_s"] for r in rounds)
    ours_cpu, bare_cpu = sum(r["ours_cpu_s"] for r in rounds), sum(r["bare_cpu_s"] for r in rounds)
    per_backend, baseline = PAIRS * n / ours_s, PAIRS * n / bare_s
    return {"events": n, "payload_bytes": size, "backends": 2, "rounds": rounds, "seconds": round(ours_s / PAIRS, 2),
            "drain_events_per_s_per_backend": round(per_backend),
            "bare_paho_events_per_s_per_broker": round(baseline),
            "ratio": round(per_backend / baseline, 2),
            "round_ratios": [round(r["bare_s"] / r["ours_s"], 2) for r in rounds],
            "cpu_s_per_1000_events": round(1000 * ours_cpu / (PAIRS * n), 3),
            "bare_paho_cpu_s_per_1000_events": round(1000 * bare_cpu / (PAIRS * n), 3)}


def _round(tmp: Path, filled: Path, n: int, size: int, ours_first: bool) -> dict:
    with Mosquitto(tmp / "ca", persistent=False) as ca, Mosquitto(tmp / "us", persistent=False) as us:
        out = {}
        for who in (("ours", "bare") if ours_first else ("bare", "ours")):
            cpu0 = cpu_s()
            if who == "bare":
                out["bare_s"] = n / bare_paho([ca, us], n, size)
            else:
                out["ours_s"] = _our_drain(lane_config(tmp / "agent.db", ca.port, us.port), filled, n)
            out[f"{who}_cpu_s"] = cpu_s() - cpu0
    return {k: round(v, 3) for k, v in out.items()}


def _our_drain(cfg: config.Config, filled: Path, n: int) -> float:
    """Seconds for our core and two links to have every event of a copy of `filled` PUBACKed."""
    shutil.copy(filled, cfg.store.path)
    writer = StoreWriter(cfg.store.path)
    core = LaneCore(cfg, writer)
    links = links_for(cfg, core)
    core.start()
    start = time.perf_counter()
    for link in links:
        link.start()
    # Done at the last PUBACK, as the baseline is (the links' own figures: no SQL in this
    # process while it is measured; counting the outbox every 0.2 s cost 2 s of CPU per 20,000).
    while min(link.snapshot()["acked"] for link in links) < n:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    outbox = Outbox(open_reader(cfg.store.path))
    while pending(outbox) > 0:  # the marks, before the links stop (not timed)
        time.sleep(0.2)
    for link in links:
        link.stop()
    core.stop()
    outbox.conn.close()
    writer.close()
    return elapsed


# --- after an outage, beside a mosquitto bridge ----------------------------------------------------
class BackEnds:
    """The two back ends' brokers (persistent), each with a sink subscribed before the outage."""

    def __init__(self, tmp: Path, n: int):
        self.brokers = [Mosquitto(tmp / f"up-{prefix}", persistent=True).start() for _, _, prefix in BACKENDS]
        self.sinks: list[tuple[subprocess.Popen, queue.Queue]] = []
        for broker, (name, _, _) in zip(self.brokers, BACKENDS):
            sink = subprocess.Popen([sys.executable, "-m", "tests.bench.sink", broker.host, str(broker.port),
                                     EVENTS_TOPIC, f"sink-{name}", str(n)], cwd=ROOT, stdout=subprocess.PIPE,
                                    text=True, start_new_session=True)
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=lambda s=sink, q=lines: [q.put(json.loads(x)) for x in s.stdout if x.strip()],
                             daemon=True).start()
            if lines.get(timeout=30).get("ready") is not True:
                raise RuntimeError("a sink did not subscribe")
            self.sinks.append((sink, lines))
        time.sleep(1.5)  # the brokers save the sinks' sessions (autosave 1 s)

    def down(self) -> None:
        for broker in self.brokers:
            broker.stop()

    def up(self) -> float:
        """Start the brokers again; the wall time they came back."""
        back = time.time()
        for broker in self.brokers:
            broker.start()
        return back

    def wait_done(self, timeout: float) -> float | None:
        """Wall time the last sink had every event, or None if one never did within `timeout`."""
        done = []
        deadline = time.monotonic() + timeout
        for _, lines in self.sinks:
            try:
                done.append(lines.get(timeout=max(0.0, deadline - time.monotonic()))["done"])
            except queue.Empty:
                return None
        return max(done)

    def close(self) -> list[dict]:
        """Stop the sinks (their final counts: distinct events received) and the brokers."""
        finals = []
        for sink, lines in self.sinks:
            sink.send_signal(signal.SIGTERM)
            sink.wait(10)
            final = {"unique": 0}
            while True:
                try:
                    line = lines.get(timeout=5)
                except queue.Empty:
                    break
                if "unique" in line:
                    final = line
                    break
            finals.append(final)
        for broker in self.brokers:
            broker.stop()
        return finals


def _outage_figures(n: int, back: float, done: float | None, cpu: float, finals: list[dict] | None = None) -> dict:
    out = {"events": n}
    if done is not None:
        seconds = done - back
        out.update({"broker_back_to_last_received_s": round(seconds, 2),
                    "events_per_s_per_backend": round(n / seconds), "cpu_s_per_1000_events": round(1000 * cpu / n, 3)})
    if finals is not None:
        out["lost"] = n - min(f["unique"] for f in finals)
    return out


def laneagent_outage(tmp: Path, filled: Path, n: int, kill: bool) -> dict:
    """The real daemon, started with the backlog in its outbox while both back ends are down."""
    work = tmp / ("agent-kill" if kill else "agent")
    (work / "state").mkdir(parents=True)
    shutil.copy(filled, work / "state" / "agent.db")
    backends = BackEnds(work, n)
    backends.down()
    toml = work / "agent.toml"
    toml.write_text(lane_toml(work / "state" / "agent.db", backends="".join(
        backend_toml(name, country, broker.port, share=share)
        for (name, country, _), broker, share in zip(BACKENDS, backends.brokers,
                                                     (None, '["tags", "findings", "referral"]')))))
    log = open(work / "agent.log", "ab")
    daemon = subprocess.Popen(agent_cmd(toml), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    try:
        time.sleep(OUTAGE_S)
        if kill:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
            daemon = subprocess.Popen(agent_cmd(toml), cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
            time.sleep(1.0)
        cpu0 = proc_cpu_s(daemon.pid)
        back = backends.up()
        done = backends.wait_done(QUIET_S + n / 2000 if kill else DONE_TIMEOUT_S)
        cpu = proc_cpu_s(daemon.pid) - cpu0
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(20)
        log.close()
        finals = backends.close()
    return _outage_figures(n, back, done, cpu, finals if kill else None)


BRIDGE_CONF = """
connection to-{prefix}
address 127.0.0.1:{port}
topic events out 1 {prefix}/ border/0901/C3/
cleansession false
remote_clientid bridge-{prefix}
restart_timeout 1
notifications false
"""


def bridge_outage(tmp: Path, filled: Path, n: int, kill: bool, autosave_s: int = 1) -> dict:
    """App -> local mosquitto (persistence) -> bridge to both back ends, the app having published
    the same payloads (read from the same outbox) while both back ends were down."""
    work = tmp / f"bridge-{'kill' if kill else 'drain'}-{autosave_s}"
    work.mkdir()
    backends = BackEnds(work, n)
    backends.down()
    bridges = "".join(BRIDGE_CONF.format(prefix=prefix, port=broker.port)
                      for (_, _, prefix), broker in zip(BACKENDS, backends.brokers))
    local = Mosquitto(work / "local", persistent=True, extra_conf=f"autosave_interval {autosave_s}\n{bridges}")
    local.start()
    try:
        outbox = Outbox(open_reader(str(filled)))
        payloads = {name: [p for _, p in outbox.pending(name, "event", 0, n)] for name, _, _ in BACKENDS}
        outbox.conn.close()
        messages = ((f"{prefix}/events", payloads[name][i]) for i in range(n) for name, _, prefix in BACKENDS)
        publish_all(local, "bench-app", messages, 2 * n)
        time.sleep(2.0 if kill else max(0.0, OUTAGE_S - 1.0))
        if kill:
            local.kill()
            local.start()
            time.sleep(1.0)
        cpu0 = proc_cpu_s(local.proc.pid)
        back = backends.up()
        done = backends.wait_done(QUIET_S + n / 2000 if kill else DONE_TIMEOUT_S)
        cpu = proc_cpu_s(local.proc.pid) - cpu0
    finally:
        local.stop()
        finals = backends.close()
    return _outage_figures(n, back, done, cpu, finals if kill else None)


def run(n: int = 20_000, outage_n: int | None = None) -> dict:
    """The bare-paho figure at n; the outage runs at LANEAGENT_DRAIN_N (default n); the kill -9
    runs at up to 10,000 (what matters there is how many are lost, not how fast)."""
    outage_n = outage_n or int(os.environ.get("LANEAGENT_DRAIN_N", n))
    kill_n = min(outage_n, 10_000)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        filled, size = filled_db(tmp / "filled" / "agent.db", outage_n)
        bare, bare_size = (filled, size) if n == outage_n else filled_db(tmp / "bare" / "agent.db", n)
        figures = beside_bare_paho(tmp, bare, n, bare_size)
        small = filled if kill_n == outage_n else filled_db(tmp / "small" / "agent.db", kill_n)[0]
        ours, bridge = laneagent_outage(tmp, filled, outage_n, kill=False), bridge_outage(tmp, filled, outage_n,
                                                                                          kill=False)
        figures["outage"] = {"laneagent": ours, "bridge": bridge}
        if "cpu_s_per_1000_events" in ours and "cpu_s_per_1000_events" in bridge:
            figures["outage"]["rate_ratio_vs_bridge"] = round(
                ours["events_per_s_per_backend"] / bridge["events_per_s_per_backend"], 2)
            figures["outage"]["cpu_ratio_vs_bridge"] = round(
                ours["cpu_s_per_1000_events"] / max(bridge["cpu_s_per_1000_events"], 1e-6), 1)
        figures["kill_9"] = {"laneagent": laneagent_outage(tmp, small, kill_n, kill=True),
                             "bridge_autosave_1800s": bridge_outage(tmp, small, kill_n, kill=True, autosave_s=1800),
                             "bridge_autosave_1s": bridge_outage(tmp, small, kill_n, kill=True, autosave_s=1)}
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000), indent=2))
