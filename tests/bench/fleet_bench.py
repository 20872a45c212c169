"""`make fleet` (python -m tests.bench.fleet_bench [--lanes N]): N real lanes against a 3-node RabbitMQ cluster.

A benchmark, not a test (DESIGN part 4, `fleet`): nothing is asserted; it prints a table and
writes fleet-results.json. What runs, all real:

- the cluster of tests/support/rabbitmq.py (3 nodes on loopback, the reference config:
  quorum session queues, no anonymous login);
- N lanes, each a real `laneagent run` process with its own config, SQLite database and
  a simulated ThingMagic reader on its own pty (the readers share one interpreter:
  simulators/reader_farm.py); two back ends per lane, `cbsa` (CA, topic prefix `ca`) and
  `cbp` (US, prefix `us`), both on the one cluster here (two countries would run two),
  MQTT 3.1.1, `hosts` = the three nodes (each lane's list rotated so the lanes spread over
  the nodes), `require_ack = true` as the README recommends for clusters;
- per back end, the country's side as it would consume at scale: competing AMQP consumers
  (pika) on one shared durable quorum queue bound to `amq.topic` with `<prefix>.*.*.events`,
  each consumer on its own node; every event is checked by simulators/backend/verify.py's
  ChainVerifier (digests, hash, prev_hash link to its neighbours, `seq` gaps, duplicates
  by `event_id`), acked to the lane on `<prefix>.<port>.<lane>.acks`, then acked to RabbitMQ.

Each lane sees one truck (two tags) every `--interval` seconds, lanes staggered, for
`--traffic` seconds. A third of the way in, node 1 is SIGKILLed; two thirds in it is started
again and rejoins. After the traffic the run waits for every event each agent made (its
own database, read after it stops) to reach both back ends.

Latency: passage closed -> first received by a consumer, where "closed" is the event's
`ended_ms` (the last read, agent clock) + `idle_close_s` (the agent closes a passage when
that long passes without a read); one clock, one machine.

Limits: on two cores the lanes' interpreters, the readers, three Erlang VMs and the
consumers share the CPU; the run samples /proc and names what limited it. The lanes stand
for N separate booth computers, so their agents run at `nice 10` by default (`--nice-lanes
0` to not): the parts a country runs (brokers, consumers) and the readers get the CPU first,
and what the broker does per lane is measured rather than the lanes' contention with it.
At the same priority, 100 agents (~2-4% of a core each) starve the three Erlang VMs on two
cores: the brokers miss CONNACKs (the agents' 10 s timeout) while the lanes start.
Needs: ~40 MB RSS per lane, ~150 MB per broker node, ~10 file descriptors per lane in the
reader farm and ~20 per lane overall (see `needs` in the JSON; ulimit -n is checked).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cbor2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simulators.backend.verify import ChainVerifier  # noqa: E402
from tests.support.rabbitmq import PASSWORD, USER, RabbitCluster, find_rabbitmq  # noqa: E402

PORT = "0901"
IDLE_CLOSE_S = 1.0
BACKENDS = (  # name, country, topic prefix, share
    ("cbsa", "CA", "ca", ["tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral"]),
    ("cbp", "US", "us", ["tags", "conveyance", "findings", "referral"]),
)
CONSUMERS_PER_BACKEND = 2
PREFETCH = 100
SAMPLE_S = 5.0
STAGGER_S_PER_LANE = 0.4  # lanes start this far apart
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- /proc sampling -------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_mb(pid: int) -> float | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return None


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Every SAMPLE_S: CPU seconds and RSS of each group of processes, and the machine's CPU."""

    def __init__(self, groups: dict[str, callable]):
        super().__init__(name="sampler", daemon=True)
        self.groups = groups  # name -> () -> list of pids
        self.stop_event = threading.Event()
        self.samples: list[dict] = []

    def sample(self) -> dict:
        out = {"t": time.monotonic(), "sys": system_cpu(), "mem_available_mb": mem_available_mb(), "groups": {}}
        for name, pids in self.groups.items():
            cpu, rss = {}, {}
            for pid in pids():
                c, r = proc_cpu_s(pid), proc_rss_mb(pid)
                if c is not None and r is not None:
                    cpu[pid], rss[pid] = c, r
            out["groups"][name] = {"cpu": cpu, "rss": rss}
        return out

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append(self.sample())
            self.stop_event.wait(SAMPLE_S)

    def window(self, t0: float, t1: float) -> dict:
        """CPU (% of one core) and RSS over the samples between t0 and t1, per group."""
        inside = [s for s in self.samples if t0 <= s["t"] <= t1]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        dt = b["t"] - a["t"]
        busy = (b["sys"][0] - a["sys"][0]) / max(1, b["sys"][1] - a["sys"][1]) * 100 * (os.cpu_count() or 1)
        result = {"seconds": round(dt, 1), "machine_cpu_pct_of_one_core": round(busy, 1),
                  "machine_cores": os.cpu_count(),
                  "mem_available_mb_min": round(min(s["mem_available_mb"] for s in inside)), "groups": {}}
        for name in b["groups"]:
            ga, gb = a["groups"].get(name, {"cpu": {}}), b["groups"][name]
            per_pid = {pid: (gb["cpu"][pid] - ga["cpu"][pid]) / dt * 100 for pid in gb["cpu"] if pid in ga["cpu"]}
            rss_per_sample = [sum(s["groups"][name]["rss"].values()) for s in inside if name in s["groups"]]
            rss_each = [r for s in inside if name in s["groups"] for r in s["groups"][name]["rss"].values()]
            result["groups"][name] = {
                "processes": len(gb["cpu"]),
                "cpu_pct_of_one_core_total": round(sum(per_pid.values()), 1),
                "cpu_pct_of_one_core_each_median": round(statistics.median(per_pid.values()), 2) if per_pid else None,
                "cpu_pct_of_one_core_each_max": round(max(per_pid.values()), 2) if per_pid else None,
                "rss_mb_total_max": round(max(rss_per_sample), 1) if rss_per_sample else None,
                "rss_mb_each_median": round(statistics.median(rss_each), 1) if rss_each else None,
                "rss_mb_each_max": round(max(rss_each), 1) if rss_each else None,
            }
        return result


# --- the lanes ------------------------------------------------------------------------------

def lane_ids(n: int) -> list[str]:
    return [f"F{i:04d}" for i in range(1, n + 1)]


def scenario(lane_index: int, n_lanes: int, lead_s: float, traffic_s: float, interval_s: float,
             rng: random.Random) -> dict:
    """One truck (a transponder and a driver card, both unknown to the cache) every interval_s,
    this lane's first one offset so that the lanes' trucks spread over the interval."""
    passes = []
    at = lead_s + interval_s * lane_index / n_lanes
    k = 0
    while at < lead_s + traffic_s:
        tags = [{"epc": f"E2{lane_index:06X}{k:06X}{rng.getrandbits(40):010X}", "antenna": 1, "rssi": -50},
                {"epc": f"E3{lane_index:06X}{k:06X}{rng.getrandbits(40):010X}", "antenna": 2, "rssi": -55}]
        passes.append({"at_s": round(at, 3), "dwell_s": 1.0, "label": f"truck {k}", "tags": tags})
        at += interval_s
        k += 1
    return {"read_rate_hz": 10, "repeat_every_s": 0, "keepalive_s": 1.0, "passes": passes}


def agent_toml(lane: str, store: Path, reader_link: Path, hosts: list[str], password_file: Path) -> str:
    backends = ""
    for name, country, prefix, share in BACKENDS:
        backends += f"""
[[backends]]
name = "{name}"
country = "{country}"
hosts = {json.dumps(hosts)}
topic_prefix = "{prefix}"
mqtt_version = "3.1.1"
share = {json.dumps(share)}
require_ack = true
max_rate = 0
username = "{USER}"
password_file = "{password_file}"
"""
    return f"""[lane]
port_code = "{PORT}"
lane_id = "{lane}"
entering = "CA"
leaving = "US"

[store]
path = "{store}"

[aggregation]
idle_close_s = {IDLE_CLOSE_S}
max_passage_s = 20.0

[referral]
random_rate = 0.0

[metrics]
listen = ""

[[readers]]
name = "booth"
dialect = "thingmagic"
url = "{reader_link}"
antennas = [1, 2]
silence_timeout_s = 10
{backends}"""


class Lane:
    def __init__(self, lane: str, workdir: Path):
        self.lane, self.dir = lane, workdir
        self.config = workdir / "agent.toml"
        self.db = workdir / "agent.db"
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict, nice: int = 0) -> None:
        with open(self.dir / "agent.log", "ab") as log:
            self.proc = subprocess.Popen([*(["nice", "-n", str(nice)] if nice else []),
                                          sys.executable, "-m", "agent", "--config", str(self.config), "run"],
                                         cwd=ROOT, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        self.terminate()
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def owed_seqs(self, backend: str) -> set[int]:
        """The seqs of the events this agent still owes that back end (not PUBACKed and acked)."""
        import sqlite3
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
                return {r[0] for r in conn.execute("SELECT item_id FROM deliveries WHERE delivered_ms IS NULL "
                                                   "AND item_type = 'event' AND backend = ?", (backend,))}
        except sqlite3.Error:
            return set()

    def owed(self) -> int:
        """Deliveries of events not yet delivered (PUBACK + the back end's ack), any back end."""
        import sqlite3
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM deliveries WHERE delivered_ms IS NULL "
                                    "AND item_type = 'event'").fetchone()[0]
        except sqlite3.Error:
            return -1

    def events_made(self) -> int:
        """The highest seq in the agent's own chain (its database, read after it stopped)."""
        import sqlite3
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT max(seq) FROM events").fetchone()
            return int(row[0] or 0)
        except sqlite3.Error:
            return -1


# --- the countries' consumers ---------------------------------------------------------------

class Country:
    """One back end's side: a shared quorum queue, competing consumers, one ChainVerifier."""

    def __init__(self, name: str, country: str, prefix: str, share: list[str], cluster: RabbitCluster):
        self.name, self.country, self.prefix = name, country, prefix
        self.queue = f"fleet-{name}-events"
        self.cluster = cluster
        self.verifier = ChainVerifier(country, share)
        self.lock = threading.Lock()
        self.latencies_ms: list[tuple[float, float]] = []  # (monotonic when received, latency ms)
        self.received = 0
        self.reconnects = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def declare(self) -> None:
        conn = self._connect(0)  # declared through node 1, so the queue's first leader is the node killed
        ch = conn.channel()
        ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(self.queue, "amq.topic", routing_key=f"{self.prefix}.*.*.events")
        conn.close()

    def _connect(self, index: int):
        import pika
        node = self.cluster.nodes[index % len(self.cluster.nodes)]
        params = pika.ConnectionParameters("127.0.0.1", node.amqp_port, credentials=pika.PlainCredentials(USER, PASSWORD),
                                           heartbeat=10, blocked_connection_timeout=30, connection_attempts=1,
                                           socket_timeout=3)
        return pika.BlockingConnection(params)

    def start(self) -> None:
        for i in range(CONSUMERS_PER_BACKEND):
            t = threading.Thread(target=self._consume, args=(i,), name=f"{self.name}-consumer-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def _consume(self, index: int) -> None:
        attempt = index  # consumers start on different nodes; consumer 0 on node 1, the one killed
        while not self.stopping.is_set():
            try:
                conn = self._connect(attempt)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=PREFETCH)
                ch.confirm_delivery()

                def on_message(ch, method, properties, body, self=self):
                    self._handle(ch, method, body)

                ch.basic_consume(self.queue, on_message)
                while not self.stopping.is_set():
                    conn.process_data_events(time_limit=0.5)
                conn.close()
            except Exception as e:  # noqa: BLE001 - any failure (pika's connector timeouts are not AMQPError): reconnect
                with self.lock:
                    self.reconnects += 1
                    if len(self.errors) < 20:
                        self.errors.append(f"{time.strftime('%H:%M:%S')} consumer {index}: {type(e).__name__}: {e}")
                attempt += 1
                self.stopping.wait(0.5)

    def _handle(self, ch, method, body: bytes) -> None:
        now_ms = time.time() * 1000
        try:
            event = cbor2.loads(body)
        except Exception as e:  # noqa: BLE001 - a bad payload is a finding, not a crash
            with self.lock:
                self.errors.append(f"undecodable event: {e}")
            ch.basic_ack(method.delivery_tag)
            return
        topic_lane = method.routing_key.split(".")[2] if method.routing_key.count(".") == 3 else None
        with self.lock:
            verdict = self.verifier.check(event, topic_lane)
            self.received += 1
            if not verdict.duplicate and isinstance(event, dict) and "ended_ms" in event:
                self.latencies_ms.append((time.monotonic(), now_ms - (event["ended_ms"] + IDLE_CLOSE_S * 1000)))
        if isinstance(event, dict) and "event_id" in event:
            ack = cbor2.dumps({"v": 1, "type": "ack", "event_ids": [event["event_id"]]})
            import pika
            # delivery_mode 2 is what makes it QoS 1 for the lane. Not an x-mqtt-publish-qos header:
            # RabbitMQ 3.10 wants it as a byte; pika sends an int as signedint, and the plugin then
            # crashes the lane's connection on that message at every reconnect (a poison message).
            ch.basic_publish("amq.topic", f"{self.prefix}.{event.get('port')}.{event.get('lane')}.acks", ack,
                             pika.BasicProperties(delivery_mode=2))
        ch.basic_ack(method.delivery_tag)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(5)

    def distinct(self) -> int:
        with self.lock:
            return len(self.verifier.events)


# --- the run --------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def needs(n: int) -> dict:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"fd_limit_of_this_process": soft, "fds_for_the_reader_farm": 4 * n + 50,
            "memory_mb_estimate": 45 * n + 3 * 200 + 300}


def run(n: int = 100, traffic_s: float = 240.0, interval_s: float = 12.0, keep: Path | None = None,
        out: Path = Path("fleet-results.json"), say=print, nice_lanes: int = 10) -> dict:
    why = find_rabbitmq()
    if why:
        result = {"status": f"not run: {why}"}
        out.write_text(json.dumps(result, indent=2))
        say(f"fleet: {result['status']}")
        return result
    started = time.monotonic()
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="laneagent-fleet-"))
    base.mkdir(parents=True, exist_ok=True)
    need = needs(n)
    if need["fds_for_the_reader_farm"] > need["fd_limit_of_this_process"]:
        raise SystemExit(f"fleet: {n} lanes need ~{need['fds_for_the_reader_farm']} file descriptors in the "
                         f"reader farm; ulimit -n is {need['fd_limit_of_this_process']}: raise it (ulimit -n 65536)")
    say(f"fleet: {n} lanes, a truck per lane every {interval_s:g} s for {traffic_s:g} s, 3-node RabbitMQ; in {base}")
    cluster = RabbitCluster(base / "rabbitmq")
    lanes: list[Lane] = []
    farm: subprocess.Popen | None = None
    countries: list[Country] = []
    sampler: Sampler | None = None
    result: dict = {"lanes": n, "traffic_s": traffic_s, "interval_s": interval_s, "lanes_niced": nice_lanes,
                    "needs": need}
    try:
        t = time.monotonic()
        cluster.start()
        result["cluster_boot_s"] = round(time.monotonic() - t, 1)
        say(f"  cluster up in {result['cluster_boot_s']} s: {', '.join(cluster.hosts())}")
        countries = [Country(name, country, prefix, share, cluster) for name, country, prefix, share in BACKENDS]
        for c in countries:
            c.declare()
            c.start()

        password_file = base / "password"
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        rng = random.Random(7)
        ids = lane_ids(n)
        # the lanes need time to start before their first truck: ~0.4 s of CPU each on a busy machine
        lead_s = 30.0 + 0.6 * n
        scen_dir, link_dir = base / "scenarios", base / "readers"
        scen_dir.mkdir(exist_ok=True)
        hosts = cluster.hosts()
        for i, lane in enumerate(ids):
            (scen_dir / f"{lane}.json").write_text(json.dumps(scenario(i, n, lead_s, traffic_s, interval_s, rng)))
            workdir = base / "lanes" / lane
            workdir.mkdir(parents=True, exist_ok=True)
            lanes.append(Lane(lane, workdir))
            rotated = hosts[i % 3:] + hosts[:i % 3]
            lanes[-1].config.write_text(agent_toml(lane, lanes[-1].db, link_dir / lane, rotated, password_file))
        planned = sum(len(json.loads((scen_dir / f"{lane}.json").read_text())["passes"]) for lane in ids)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        farm = subprocess.Popen([sys.executable, "-m", "simulators.reader_farm", "--link-dir", str(link_dir),
                                 *[str(scen_dir / f"{lane}.json") for lane in ids]], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=open(base / "reader_farm.log", "ab"), text=True,
                                start_new_session=True)
        line = farm.stdout.readline().strip()
        if not line.startswith("ready"):
            raise RuntimeError(f"reader farm: {line!r}; see {base / 'reader_farm.log'}")
        scenario_t0 = time.monotonic()
        # Lanes come online over a while, as a fleet does, not all in one second: a hundred
        # first SUBSCRIBEs at once on two cores time out creating their quorum session queues
        # (partition_parallel_timeout), leaving queues without members that lanes cannot use.
        stagger_s = min(lead_s / 2, STAGGER_S_PER_LANE * n)
        for i, lane in enumerate(lanes):
            _sleep_until(scenario_t0 + stagger_s * i / n)
            lane.start(env, nice_lanes)
        say(f"  {n} agents started over {time.monotonic() - scenario_t0:.1f} s; first trucks at +{lead_s:.0f} s; "
            f"{planned} trucks planned")

        def beam_pids():
            return [p for node in cluster.nodes if node.proc for p in group_pids(node.proc.pid)]

        sampler = Sampler({"agents": lambda: [la.proc.pid for la in lanes if la.proc and la.proc.poll() is None],
                           "brokers": beam_pids, "reader_farm": lambda: [farm.pid] if farm else [],
                           "consumers_and_bench": lambda: [os.getpid()]})
        sampler.start()

        traffic_t0 = scenario_t0 + lead_s
        kill_at, restart_at = traffic_t0 + traffic_s / 3, traffic_t0 + 2 * traffic_s / 3
        _sleep_until(kill_at)
        victim = cluster.nodes[0]
        kill_wall = time.time()
        victim.kill()
        result["node_killed"] = {"node": victim.name, "at_s_into_traffic": round(time.monotonic() - traffic_t0, 1)}
        say(f"  SIGKILL {victim.name} at +{result['node_killed']['at_s_into_traffic']} s into the traffic")
        _sleep_until(restart_at)
        t = time.monotonic()
        victim.start()
        result["node_restarted"] = {"at_s_into_traffic": round(t - traffic_t0, 1)}
        traffic_end = traffic_t0 + traffic_s + interval_s
        try:  # how long it takes to come back is a figure, not a reason to stop the run
            victim.wait_listening(timeout=max(60.0, traffic_end - time.monotonic()))
            victim.await_booted(timeout=max(30.0, traffic_end - time.monotonic()))
            result["node_restarted"]["boot_s"] = round(time.monotonic() - t, 1)
            say(f"  {victim.name} restarted, back in {result['node_restarted']['boot_s']} s")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            result["node_restarted"]["boot_s"] = None
            result["node_restarted"]["not_back_by_end_of_traffic"] = str(e)[:200]
            say(f"  {victim.name} restarted but not booted by the end of the traffic; waiting on")
        _sleep_until(traffic_end)
        window = sampler.window(traffic_t0, time.monotonic())

        if result["node_restarted"].get("boot_s") is None:
            try:
                victim.wait_listening(timeout=180)
                victim.await_booted(timeout=120)
                result["node_restarted"]["boot_s"] = round(time.monotonic() - t, 1)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                result["node_restarted"]["error"] = str(e)[:300]
            say(f"  {victim.name}: back {result['node_restarted'].get('boot_s')} s after its restart")
        # drain: every event of every lane at both back ends, or give up after a while
        drain_t0 = time.monotonic()
        expected_now = None
        while time.monotonic() - drain_t0 < 180:
            got = [c.distinct() for c in countries]
            if expected_now is not None and all(g >= expected_now for g in got):
                break
            expected_now = sum(_seq_now(la) for la in lanes)
            if all(g >= expected_now for g in got):
                break
            time.sleep(2)
        result["drain_after_traffic_s"] = round(time.monotonic() - drain_t0, 1)
        time.sleep(3)  # the last acks on their way to the lanes
        stop_all(lanes)
        made = {lane.lane: lane.events_made() for lane in lanes}
        result["events_still_owed_by_agents_at_stop"] = sum(max(0, lane.owed()) for lane in lanes)
        gaps = failovers(lanes, kill_wall)
        result["failover_after_the_kill_s"] = {"links_lost": len(gaps), "p50": pct(gaps, 0.5), "p90": pct(gaps, 0.9),
                                               "max": pct(gaps, 1.0)}
        for c in countries:
            c.stop()
        sampler.stop_event.set()

        total_made = sum(v for v in made.values() if v > 0)
        result["passages_planned"] = planned
        result["events_made_by_agents"] = total_made
        result["lanes_that_made_events"] = sum(1 for v in made.values() if v > 0)
        result["backends"] = {}
        all_lat: list[float] = []
        for c in countries:
            seqs = c.verifier.seqs()
            # Missing at the back end: still owed by the agent (in its outbox, delivered later
            # by the next run) is "late"; marked delivered by the agent yet never received is lost.
            lost = late = 0
            for lane_obj in lanes:
                if made[lane_obj.lane] <= 0:
                    continue
                missing = set(range(1, made[lane_obj.lane] + 1)) - set(seqs.get(lane_obj.lane, ()))
                owed = lane_obj.owed_seqs(c.name)
                late += len(missing & owed)
                lost += len(missing - owed)
            lat = [ms for _, ms in c.latencies_ms]
            all_lat += lat
            problems = c.verifier.problems()
            result["backends"][c.name] = {
                "events_received": c.received, "distinct_events": len(c.verifier.events), "lost": lost,
                "undelivered_at_end_still_owed_by_agents": late,
                "duplicates": c.verifier.duplicates, "chain_problems": len([p for p in problems if "missing seq" not in p]),
                "chain_problem_examples": problems[:5], "consumer_reconnects": c.reconnects,
                "consumer_errors": c.errors[:5],
                "latency_ms_p50": pct(lat, 0.50), "latency_ms_p99": pct(lat, 0.99), "latency_ms_max": pct(lat, 1.0),
            }
        result["lost"] = sum(b["lost"] for b in result["backends"].values())
        result["undelivered_at_end"] = sum(b["undelivered_at_end_still_owed_by_agents"]
                                           for b in result["backends"].values())
        result["duplicates"] = sum(b["duplicates"] for b in result["backends"].values())
        result["latency_ms_p50"], result["latency_ms_p99"] = pct(all_lat, 0.5), pct(all_lat, 0.99)
        result["resources_during_traffic"] = window
        result["limited_by"] = limited_by(window, n)
        result["per_lane"] = per_lane(window, n, total_made, traffic_s)
    finally:
        if sampler:
            sampler.stop_event.set()
        stop_all(lanes)
        if farm and farm.poll() is None:
            os.killpg(farm.pid, signal.SIGTERM)
            try:
                farm.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(farm.pid, signal.SIGKILL)
        for c in countries:
            c.stop()
        cluster.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(result, indent=2) + "\n")
    report(result, say)
    say(f"written: {out}")
    return result


def _sleep_until(t: float) -> None:
    while time.monotonic() < t:
        time.sleep(min(1.0, t - time.monotonic()))


def failovers(lanes: list[Lane], since: float) -> list[float]:
    """Seconds from each back-end link's "connection lost" after `since` (the kill) to its next
    "connected to", from the agents' logs (their one line per state change)."""
    import datetime
    import re
    pattern = re.compile(r"(\S+ \S+) \S+\s+agent\.sync\.connection: back end (\w+): (connection lost|connected to)")
    gaps = []
    for lane in lanes:
        lost: dict[str, float] = {}
        try:
            lines = (lane.dir / "agent.log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = pattern.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t < since:
                continue
            if m.group(3) == "connection lost":
                lost.setdefault(m.group(2), t)
            elif m.group(2) in lost:
                gaps.append(t - lost.pop(m.group(2)))
    return gaps


def stop_all(lanes: list[Lane]) -> None:
    for lane in lanes:
        lane.terminate()
    for lane in lanes:
        lane.stop()


def _seq_now(lane: Lane) -> int:
    """The lane's chain head while it runs (read-only, WAL mode)."""
    return max(0, lane.events_made())


def limited_by(window: dict, n: int) -> str:
    if not window:
        return "unknown (too few samples)"
    cores = window["machine_cores"] or 1
    busy = window["machine_cpu_pct_of_one_core"] / cores
    groups = {k: v["cpu_pct_of_one_core_total"] for k, v in window["groups"].items()}
    top = max(groups, key=groups.get)
    if window["mem_available_mb_min"] < 1024:
        return f"memory: {window['mem_available_mb_min']} MB left at the lowest"
    if busy >= 85:
        return (f"CPU: the machine was {busy:.0f}% busy on {cores} cores; the biggest user was {top} "
                f"({groups[top]:.0f}% of one core)")
    return (f"not saturated: the machine was {busy:.0f}% busy on {cores} cores (biggest user {top}, "
            f"{groups[top]:.0f}% of one core); the offered load ({n} lanes) was the limit")


def per_lane(window: dict, n: int, events: int, traffic_s: float) -> dict:
    if not window:
        return {}
    agents = window["groups"].get("agents", {})
    brokers = window["groups"].get("brokers", {})
    return {
        "agent_cpu_pct_of_one_core_median": agents.get("cpu_pct_of_one_core_each_median"),
        "agent_cpu_pct_of_one_core_max": agents.get("cpu_pct_of_one_core_each_max"),
        "agent_rss_mb_median": agents.get("rss_mb_each_median"),
        "agent_rss_mb_max": agents.get("rss_mb_each_max"),
        "broker_cpu_pct_of_one_core_per_lane": round(brokers.get("cpu_pct_of_one_core_total", 0) / n, 3),
        "broker_rss_mb_per_lane": round((brokers.get("rss_mb_total_max") or 0) / n, 2),
        "events_per_s_per_lane": round(events / traffic_s / n, 4),
        "mqtt_connections_per_lane": len(BACKENDS),
    }


def report(r: dict, say=print) -> None:
    say("\n| fleet figure | value |\n|---|---|")
    rows = [("lanes", r.get("lanes")), ("passages planned / events made by the agents",
                                        f"{r.get('passages_planned')} / {r.get('events_made_by_agents')}")]
    for name, b in r.get("backends", {}).items():
        rows.append((f"{name}: received (distinct) / lost / still owed at the end / duplicates / chain problems",
                     f"{b['events_received']} ({b['distinct_events']}) / {b['lost']} / "
                     f"{b.get('undelivered_at_end_still_owed_by_agents')} / {b['duplicates']} / {b['chain_problems']}"))
        rows.append((f"{name}: passage closed -> received p50 / p99 / max", f"{b['latency_ms_p50']} / "
                     f"{b['latency_ms_p99']} / {b['latency_ms_max']} ms"))
    rows.append(("lost (must be 0) / undelivered at the end, still owed", f"{r.get('lost')} / {r.get('undelivered_at_end')}"))
    pl = r.get("per_lane", {})
    rows.append(("per lane: agent RSS median / max", f"{pl.get('agent_rss_mb_median')} / {pl.get('agent_rss_mb_max')} MB"))
    rows.append(("per lane: agent CPU median / max", f"{pl.get('agent_cpu_pct_of_one_core_median')} / "
                 f"{pl.get('agent_cpu_pct_of_one_core_max')} % of one core"))
    for name, g in r.get("resources_during_traffic", {}).get("groups", {}).items():
        rows.append((f"{name}: CPU total / RSS total", f"{g['cpu_pct_of_one_core_total']} % of one core / "
                     f"{g['rss_mb_total_max']} MB"))
    rows.append(("node killed / restarted", f"{r.get('node_killed')} / {r.get('node_restarted')}"))
    rows.append(("lanes' links back on another node after the kill, s (p50 / p90 / max)",
                 str(r.get("failover_after_the_kill_s"))))
    rows.append(("limited by", r.get("limited_by")))
    rows.append(("bench seconds", r.get("bench_seconds")))
    for k, v in rows:
        say(f"| {k} | {v} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.fleet_bench", description=__doc__.splitlines()[0])
    p.add_argument("--lanes", "-n", type=int, default=int(os.environ.get("N") or 100))
    p.add_argument("--traffic", type=float, default=240.0, help="seconds of traffic (default 240)")
    p.add_argument("--interval", type=float, default=12.0, help="seconds between trucks in a lane (default 12)")
    p.add_argument("--keep", type=Path, help="keep the run directory (configs, logs, databases) here")
    p.add_argument("--out", type=Path, default=Path("fleet-results.json"))
    p.add_argument("--nice-lanes", type=int, default=10,
                   help="nice value of the lanes' agents (default 10; 0 = same priority as the brokers)")
    args = p.parse_args(argv)
    r = run(args.lanes, args.traffic, args.interval, args.keep, args.out, nice_lanes=args.nice_lanes)
    return 0 if r.get("lost") == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
