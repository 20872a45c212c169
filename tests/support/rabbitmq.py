"""A real 3-node RabbitMQ cluster with the MQTT plugin, on loopback ports, for the tests.

Debian's `rabbitmq-server` (3.10 in Debian 12: MQTT 3.1.1 only). Each node has its own
node name, AMQP, MQTT and distribution ports, and its data, log and config under the
test's directory; every node shares one Erlang cookie through its own HOME. Nodes 2 and 3
join node 1 with `rabbitmqctl join_cluster`. The config is the reference one
(config/rabbitmq/rabbitmq.conf: quorum queues for MQTT sessions, a 7-day subscription
TTL, no anonymous login) with the ports filled in. `kill(i)` is a real SIGKILL of the
node's whole process group; `start(i)` brings it back on the same ports and data, where it
rejoins the cluster. `stop()` stops every node and leaves nothing running but epmd (the
Erlang port mapper, shared by every Erlang program on the host and started on demand).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from simulators.mosquitto import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
REFERENCE_CONF = ROOT / "config" / "rabbitmq" / "rabbitmq.conf"
SBIN = Path("/usr/lib/rabbitmq/bin")
USER, PASSWORD = "lane", "lane-secret"  # the tests' MQTT user (the reference config admits no anonymous one)
BOOT_TIMEOUT_S = 90.0
ERL = shutil.which("erl") or "/usr/lib/erlang/bin/erl"
RESTART_TIMEOUT_S = 240.0  # a whole cluster booting again, on two shared cores


def find_rabbitmq() -> str | None:
    """Why RabbitMQ cannot run here, or None when it can."""
    if not (SBIN / "rabbitmq-server").exists():
        return "rabbitmq-server is not installed (make rabbitmq, or: apt-get install -y rabbitmq-server)"
    if not shutil.which("erl") and not Path("/usr/lib/erlang/bin/erl").exists():
        return "Erlang (erl) is missing: apt-get install -y rabbitmq-server pulls it in"
    return None


class RabbitNode:
    def __init__(self, base: Path, name: str, cookie_home: Path):
        self.name = f"{name}@localhost"
        self.dir = base / name
        self.mqtt_port, self.amqp_port, self.dist_port = free_port(), free_port(), free_port()
        self.host = "127.0.0.1"
        self.port = self.mqtt_port  # what Probe and the agent's config look at
        self.proc: subprocess.Popen | None = None
        for sub in ("data", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = REFERENCE_CONF.read_text()
        conf = conf.replace("mqtt.listeners.tcp.default = 1883", f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}")
        conf += (f"\nlisteners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
                 "listeners.ssl = none\n" "mqtt.listeners.ssl = none\n" "log.console = false\n"
                 "log.file.level = info\n")
        (self.dir / "rabbitmq.conf").write_text(conf)
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.env = {**os.environ, "HOME": str(cookie_home), "RABBITMQ_NODENAME": self.name,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.amqp_port),
                    "RABBITMQ_DIST_PORT": str(self.dist_port),
                    "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                    "RABBITMQ_MNESIA_BASE": str(self.dir / "data"), "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                    "RABBITMQ_PID_FILE": str(self.dir / "pid"), "RABBITMQ_ALLOW_INPUT": "",
                    "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config")}

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        out = subprocess.run([str(SBIN / "rabbitmqctl"), "-n", self.name, *args], env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.name} {' '.join(args)}: {out.stderr.strip() or out.stdout}")
        return out.stdout

    def try_ctl(self, *args: str, timeout: float = 30.0) -> str | None:
        """rabbitmqctl's answer, or None when the node does not answer (yet)."""
        try:
            return self.ctl(*args, timeout=timeout)
        except (RuntimeError, subprocess.TimeoutExpired):
            return None

    def await_booted(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Until the node has finished booting (plugins included), or raise saying why not."""
        out = subprocess.run([str(SBIN / "rabbitmqctl"), "-n", self.name, "await_startup", "--timeout",
                              str(int(max(1, timeout)))], env=self.env, capture_output=True, text=True,
                             timeout=timeout + 30)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name} did not finish booting within {timeout:.0f} s: "
                               f"{out.stderr.strip() or out.stdout} {self.log_tail()}")

    def quorum_members_on_disk(self) -> set[str]:
        """The quorum queues whose Ra member this node has registered *on disk*.

        Ra keeps the name -> UID map of a node's quorum queue members in a DETS file
        (quorum/<node>/names.dets) that reaches the disk lazily (auto_save, 500 ms after the
        last access). A queue SIGKILLed whole before that has lost its registration on
        every node: RabbitMQ 3.10 then starts new, empty members under new UIDs at boot,
        and Ra never starts an election among members that are all new, so the queue has no
        leader for good, its old log orphaned. Read from a copy, without touching the node.
        """
        names: set[str] = set()
        for path in (self.dir / "data").glob("*/quorum/*/names.dets"):
            copy = self.dir / "names-probe.dets"
            shutil.copyfile(path, copy)
            # read_write: a copy of a file in use is "not properly closed", and only a writable
            # open repairs it (the copy, never the node's own file)
            code = (f'{{ok, T}} = dets:open_file(probe, [{{file, "{copy}"}}, {{access, read_write}}]), '
                    '[io:format("~s~n", [N]) || {N, _} <- dets:match_object(T, \'_\')], halt().')
            out = subprocess.run([ERL, "-noshell", "-eval", code], env={**self.env, "ERL_CRASH_DUMP_SECONDS": "0"},
                                 cwd=self.dir, capture_output=True, text=True, timeout=30)
            names |= {line.strip().removeprefix("%2F_") for line in out.stdout.splitlines() if line.strip()}
        return names

    def start(self) -> "RabbitNode":
        log = open(self.dir / "log" / "stdout.log", "ab")
        self.proc = subprocess.Popen([str(SBIN / "rabbitmq-server")], env=self.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def wait_listening(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.mqtt_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name}: MQTT not listening on {self.mqtt_port} within {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the node's whole process group (beam and its helpers), as a power cut would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        text = ""
        for path in sorted((self.dir / "log").glob("*.log")):
            text += path.read_text(errors="replace")[-n:]
        return text[-n:]


class RabbitCluster:
    def __init__(self, base: Path, nodes: int = 3):
        base.mkdir(parents=True, exist_ok=True)
        home = base / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(f"LANEAGENTTEST{os.getpid()}{int(time.time())}")
        cookie.chmod(0o400)
        tag = f"lt{os.getpid()}x{int(time.time()) % 100000}"
        self.nodes = [RabbitNode(base, f"{tag}n{i + 1}", home) for i in range(nodes)]

    def start(self) -> "RabbitCluster":
        try:
            for node in self.nodes:  # boot together: two cores are shared, but boots overlap well
                node.start()
            for node in self.nodes:
                node.wait_listening()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.name)
                node.ctl("start_app")
                node.wait_listening()
            first.ctl("add_user", USER, PASSWORD)
            first.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        except Exception:
            self.stop()
            raise
        return self

    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{n.mqtt_port}" for n in self.nodes]

    def running_nodes(self) -> list[str]:
        out = self.nodes[0].ctl("cluster_status", "--formatter", "json")
        import json
        return sorted(json.loads(out)["running_nodes"])

    def restart_after_outage(self, timeout: float = RESTART_TIMEOUT_S) -> None:
        """Boot every node of a cluster that went down whole (all SIGKILLed), and see it serve MQTT.

        All nodes start together: after a SIGKILL each one waits for its peers' Mnesia tables
        (none knows it was the last one down), so a node started alone would wait out
        mnesia_table_loading_retry_timeout x retries and fail. RabbitMQ 3.10's MQTT plugin then
        deadlocks on its client-ID tracker (the `mqtt_node` Ra cluster in the `coordination`
        Ra system): at boot each node asks its peers' tracker members for the membership
        *before* restarting its own member, and a member only answers once a leader is
        elected, which needs a majority of members restarted; the plugin waits 100 s per try and
        the nodes fail to boot ("BOOT FAILED ... {mqtt_node, ...}, {leader_call, {state_query,
        members}}, 100000"). The way out, as an operator would do it: restart each node's tracker
        member from outside (`rabbitmqctl eval 'ra:restart_server(coordination, {mqtt_node,
        node()}).'`) as soon as the node answers; two of three elect a leader, the blocked boots
        go on. Then every node must be running and accepting MQTT logins.
        """
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        kicked: set[str] = set()
        while len(kicked) < len(self.nodes):
            for node in self.nodes:
                if node.name in kicked:
                    continue
                if node.proc and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited {node.proc.returncode} while restarting: "
                                       f"{node.log_tail()}")
                answer = node.try_ctl("eval", "ra:restart_server(coordination, {mqtt_node, node()}).")
                if answer is not None and ("ok" == answer.strip() or "already_started" in answer
                                           or "name_not_registered" in answer):
                    kicked.add(node.name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the client-ID trackers did not restart within {timeout:.0f} s "
                                   f"(restarted on {sorted(kicked)})")
            time.sleep(0.5)
        for node in self.nodes:
            node.wait_listening(timeout=max(1.0, deadline - time.monotonic()))
            node.await_booted(timeout=max(1.0, deadline - time.monotonic()))

    def quorum_queues_durable(self, *queues: str) -> bool:
        """True when every node has these quorum queues' members registered on disk (see
        RabbitNode.quorum_members_on_disk): a whole-cluster power cut keeps them."""
        return all(set(queues) <= node.quorum_members_on_disk() for node in self.nodes)

    def node_of(self, port: int) -> RabbitNode:
        return next(n for n in self.nodes if n.mqtt_port == port)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
