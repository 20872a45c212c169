"""`laneagent doctor` against real faults: each test creates one and checks doctor names it, and no other.

Real pseudo-terminals from the reader simulator, real mosquitto brokers (one with a
password file, one with TLS and certificates made here), a real blackhole (a listener
whose accept queue is full, so SYNs are dropped), a real unresolvable name, real files
overwritten with garbage, a small tmpfs filled up, real agent processes.
"""

import datetime as dt
import grp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from agent.doctor import checks_brokers, checks_host
from agent.store.writer import StoreWriter
from simulators.reader.runner import SimulatedReader
from tests.helpers import ROOT, backend_toml, cli, lane_toml, payloads, reader_toml, wait_for
from tests.lane_harness import Agent
from tests.support.certs import make_ca

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def write_config(tmp_path, backends, readers="", store=None, extra=""):
    path = tmp_path / "agent.toml"
    text = lane_toml(store or tmp_path / "state" / "agent.db", readers=readers, backends=backends)
    path.write_text(text.replace("[aggregation]", extra + "\n[aggregation]") if extra else text)
    return path


def make_db(path):
    StoreWriter(str(path)).close()


def doctor(config, *extra):
    code, out, err = cli("--config", str(config), "doctor", "--json", "--timeout", "1", *extra)
    doc = json.loads(out)
    assert code == doc["exit"], err
    return code, doc


def failures(doc):
    return {(c["subject"], c["cause"]) for c in doc["checks"] if c["status"] == "FAIL"}


def statuses(doc, subject):
    return [(c["status"], c["cause"]) for c in doc["checks"] if c["subject"] == subject]


@pytest.fixture
def lane(tmp_path, broker):
    """A healthy lane but for the fault a test adds: a real broker, a database, no daemon."""
    make_db(tmp_path / "state" / "agent.db")
    return {"tmp": tmp_path, "backend": backend_toml("cbsa", "CA", broker.port), "broker": broker}


@pytest.fixture
def sim():
    started = []

    def start(dialect="thingmagic", **options):
        reader = SimulatedReader(dialect, **options).start()
        started.append(reader)
        return reader

    yield start
    for reader in started:
        reader.stop()


def as_installed(device):
    """What the udev rule of an installed booth gives a reader's port (group dialout, 0660):
    doctor judges a pty exactly as it judges any serial port."""
    try:
        os.chown(device, -1, grp.getgrnam("dialout").gr_gid)
    except (KeyError, PermissionError):
        pass  # no dialout group here, or not root: the port stays the user's own
    os.chmod(device, 0o660)
    return device


def test_a_healthy_lane_has_no_failure_and_says_the_daemon_is_not_running(lane, sim):
    reader = sim()
    as_installed(reader.device)
    config = write_config(lane["tmp"], lane["backend"], reader_toml(reader.device))
    code, doc = doctor(config)
    assert code == 0 and failures(doc) == set()
    assert statuses(doc, "daemon") == [("WARN", "daemon_not_running")]
    assert statuses(doc, "reader booth") == [("PASS", "ok")]
    assert "M6e" in next(c["message"] for c in doc["checks"] if c["subject"] == "reader booth")
    assert statuses(doc, "back end cbsa") == [("PASS", "ok")]
    assert statuses(doc, "database") == [("PASS", "ok")]
    code, out, _ = cli("--config", str(config), "doctor", "--timeout", "1")
    assert code == 0 and "PASS  reader booth" in out and "fix: start it: sudo systemctl start laneagent" in out


def test_invalid_config_names_the_key(lane):
    config = write_config(lane["tmp"], lane["backend"], extra="colour = \"blue\"")
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("config", "config_invalid")}
    [check] = doc["checks"]
    assert "store.colour: unknown key" in check["message"] and str(config) in check["fix"]


def test_missing_config_file(tmp_path):
    code, doc = doctor(tmp_path / "nowhere.toml")
    assert code == 1 and failures(doc) == {("config", "config_missing")}


def test_port_held_by_another_program(lane, sim):
    """A pty is a serial port like any other: a program that has it open holds it."""
    reader = sim()
    config = write_config(lane["tmp"], lane["backend"], reader_toml(as_installed(reader.device)))
    holder = subprocess.Popen([sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY); "
                                                     "print('open', flush=True); sys.stdin.read()", reader.device],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        code, doc = doctor(config)
        assert code == 1 and failures(doc) == {("reader booth", "port_busy")}
        check = next(c for c in doc["checks"] if c["cause"] == "port_busy")
        assert f"pid {holder.pid}" in check["message"] and f"kill {holder.pid}" in check["fix"]
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    assert doctor(config)[0] == 0  # let go: the reader answers again


def test_port_that_was_removed(lane, sim):
    link = lane["tmp"] / "rfid-booth"
    reader = sim(link=str(link))
    config = write_config(lane["tmp"], lane["backend"], reader_toml(str(link)))
    assert doctor(config)[0] == 0
    reader.stop()  # unplugged: the pty and its udev-style link are gone
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("reader booth", "port_missing")}
    assert "readers[0].url" in next(c["fix"] for c in doc["checks"] if c["cause"] == "port_missing")


def test_port_without_permission(lane, sim):
    """As an unprivileged user (nobody, via setuid when the tests run as root; else the pty
    is chmod 000, which only root could bypass) doctor says whose permission is missing."""
    reader = sim()
    public = tempfile.mkdtemp(prefix="doctor-perm-")
    try:
        os.chmod(public, 0o755)
        config = os.path.join(public, "agent.toml")
        with open(config, "w") as f:
            f.write(lane_toml(os.path.join(public, "state", "agent.db"), readers=reader_toml(reader.device),
                              backends=lane["backend"]))
        os.chmod(config, 0o644)
        if os.geteuid() == 0:
            # /root holds the interpreter, so drop privileges only after everything is imported.
            script = ("import os, sys, encodings.idna; import agent.cli.main as m; "
                      "from agent.doctor import checks_brokers, checks_config, checks_daemon, checks_host, checks_readers; "
                      "os.setgroups([]); os.setgid(65534); os.setuid(65534); "
                      "sys.exit(m.main(sys.argv[1:]))")
            argv = [sys.executable, "-c", script]
        else:
            os.chmod(reader.device, 0)
            argv = [sys.executable, "-m", "agent"]
        run = subprocess.run(argv + ["--config", config, "doctor", "--json", "--timeout", "1"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        doc = json.loads(run.stdout)
        assert run.returncode == 1, run.stderr
        assert failures(doc) == {("reader booth", "port_permission")}
        check = next(c for c in doc["checks"] if c["cause"] == "port_permission")
        assert reader.device in check["message"] and "nobody" in check["message"] and "dialout" in check["fix"]
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_wrong_baud_rate_says_the_right_one(lane, sim):
    reader = sim(baudrate=57600)
    config = write_config(lane["tmp"], lane["backend"], reader_toml(reader.device))
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("reader booth", "wrong_baud")}
    assert "readers[0].baudrate = 57600" in next(c["fix"] for c in doc["checks"] if c["cause"] == "wrong_baud")


def test_wrong_dialect_says_what_the_reader_speaks(lane, sim):
    reader = sim("r2000")
    config = write_config(lane["tmp"], lane["backend"], reader_toml(reader.device))
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("reader booth", "wrong_dialect")}
    assert 'readers[0].dialect = "r2000"' in next(c["fix"] for c in doc["checks"] if c["cause"] == "wrong_dialect")


def test_reader_that_answers_nothing(lane, sim):
    reader = sim()
    reader.mute()
    config = write_config(lane["tmp"], lane["backend"], reader_toml(reader.device))
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("reader booth", "reader_silent")}


def test_stopped_broker_is_connection_refused(lane, broker_factory):
    stopped = broker_factory("stopped")
    stopped.stop()
    config = write_config(lane["tmp"], lane["backend"] + backend_toml("cbp", "US", stopped.port))
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("back end cbp", "connection_refused")}


def test_unresolvable_broker_name_is_dns(lane):
    backend = backend_toml("cbp", "US", 1883).replace('host = "127.0.0.1"', 'host = "broker.lane-c3.invalid"')
    code, doc = doctor(write_config(lane["tmp"], lane["backend"] + backend))
    assert code == 1 and failures(doc) == {("back end cbp", "dns_failure")}


def test_blackholed_broker_is_a_timeout(lane):
    # A listener whose accept queue is full: the kernel drops further SYNs, as a firewall would.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))
        try:
            start = time.monotonic()
            code, doc = doctor(write_config(lane["tmp"], lane["backend"] + backend_toml("cbp", "US", port)))
            assert time.monotonic() - start < 5
        finally:
            filler.close()
    assert code == 1 and failures(doc) == {("back end cbp", "connect_timeout")}


@pytest.mark.skipif(not MOSQUITTO_PASSWD, reason="mosquitto_passwd is not installed (apt-get install mosquitto)")
def test_bad_credentials_are_told_from_a_network_fault(lane, broker_factory):
    passwords = lane["tmp"] / "mosquitto.passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwords), "lane-c3", "right-password"], check=True)
    passwords.chmod(0o644)
    secured = broker_factory("secured", extra_conf=f"allow_anonymous false\npassword_file {passwords}")
    secret = lane["tmp"] / "cbp.password"
    secret.write_text("wrong-password\n")
    secret.chmod(0o600)
    extra = f'username = "lane-c3"\npassword_file = "{secret}"'
    for version in ("5", "3.1.1"):
        backend = backend_toml("cbp", "US", secured.port, extra=extra + f'\nmqtt_version = "{version}"')
        code, doc = doctor(write_config(lane["tmp"], lane["backend"] + backend))
        assert code == 1 and failures(doc) == {("back end cbp", "bad_credentials")}, version
    secret.write_text("right-password\n")
    code, doc = doctor(write_config(lane["tmp"], lane["backend"] + backend))
    assert code == 0 and statuses(doc, "back end cbp") == [("PASS", "ok")]


def tls_lane(lane, broker_factory, client_days=365, server_days=365):
    now = dt.datetime.now(dt.timezone.utc)
    ca = make_ca(lane["tmp"] / "pki")
    server = ca.issue("broker", server=True, not_after=now + dt.timedelta(days=server_days),
                      not_before=now - dt.timedelta(days=400))
    client = ca.issue("lane", not_after=now + dt.timedelta(days=client_days), not_before=now - dt.timedelta(days=400))
    broker = broker_factory(f"tls-{client_days}-{server_days}", extra_conf=(
        f"cafile {ca.path}\ncertfile {server.cert}\nkeyfile {server.key}\nrequire_certificate true"))
    tls = f'tls = {{ ca = "{ca.path}", cert = "{client.cert}", key = "{client.key}" }}'
    return write_config(lane["tmp"], lane["backend"] + backend_toml("cbp", "US", broker.port, extra=tls))


def test_expired_client_certificate(lane, broker_factory):
    code, doc = doctor(tls_lane(lane, broker_factory, client_days=-2))
    assert code == 1 and failures(doc) == {("back end cbp", "certificate_expired")}
    check = next(c for c in doc["checks"] if c["cause"] == "certificate_expired")
    assert "backends[1].tls.cert" in check["message"] and "expired 2.0 days ago" in check["message"]


def test_expired_broker_certificate(lane, broker_factory):
    code, doc = doctor(tls_lane(lane, broker_factory, server_days=-1))
    assert code == 1 and failures(doc) == {("back end cbp", "certificate_expired")}
    assert "expired" in next(c["message"] for c in doc["checks"] if c["cause"] == "certificate_expired")


def test_certificate_expiring_soon_is_a_warning_and_tls_works(lane, broker_factory):
    code, doc = doctor(tls_lane(lane, broker_factory, client_days=12))
    assert code == 0 and failures(doc) == set()
    assert statuses(doc, "back end cbp") == [("WARN", "certificate_expiring"), ("PASS", "ok")]
    assert "TLS 1." in [c["message"] for c in doc["checks"] if c["subject"] == "back end cbp"][1]


def test_missing_certificate_file_is_one_config_line(lane, broker_factory):
    config = tls_lane(lane, broker_factory)
    (lane["tmp"] / "pki" / "lane.crt").unlink()
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("config", "config_file_unusable")}
    assert statuses(doc, "back end cbp") == [("WARN", "not_checked")]


def test_corrupt_database(lane):
    config = write_config(lane["tmp"], lane["backend"])
    db = lane["tmp"] / "state" / "agent.db"
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.remove(f"{db}{suffix}")
    db.write_bytes(os.urandom(8192))
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("database", "database_corrupt")}
    assert "corrupt-<time>" in next(c["fix"] for c in doc["checks"] if c["cause"] == "database_corrupt")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_nearly_full_disk(lane, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        make_db(small / "state" / "agent.db")
        config = write_config(tmp_path, lane["backend"], store=small / "state" / "agent.db",
                              extra="max_queue_mb = 1")
        assert ("disk", "disk_full") in failures(doctor(config)[1])  # 8 MB is below the 100 MB floor anyway
        with open(small / "filler", "wb") as f:
            f.write(b"\0" * (7 * 1024 * 1024 + 768 * 1024))
        code, doc = doctor(config)
        assert code == 1 and failures(doc) == {("disk", "disk_full")}
    finally:
        subprocess.run(["umount", str(small)])


def add_event(writer, seq, created_ms, backends=("cbsa",), **sections):
    event = {"v": 1, "type": "crossing", "event_id": f"e-{seq}", "seq": seq, "started_ms": created_ms - 3000,
             "ended_ms": created_ms - 100, "hash": f"{seq:064x}", "tags": [], "findings": [],
             "referral": {"refer": False, "reasons": [], "random": False}, **sections}
    with writer.transaction():
        writer.add_event(event, payloads(event, backends), created_ms)


def test_backlog_over_its_budget(lane):
    writer = StoreWriter(str(lane["tmp"] / "state" / "agent.db"))
    try:
        for seq in range(1, 40):
            add_event(writer, seq, int(time.time() * 1000), driver=[{"id": "D", "pad": "x" * 500}])
    finally:
        writer.close()
    config = write_config(lane["tmp"], lane["backend"], extra="max_queue_mb = 0.01")
    code, doc = doctor(config)
    assert code == 1 and failures(doc) == {("disk", "backlog_over_budget")}


def test_clock_behind_the_database(lane):
    writer = StoreWriter(str(lane["tmp"] / "state" / "agent.db"))
    try:
        add_event(writer, 1, int(time.time() * 1000) + 2 * 3600_000)  # stored when the clock was 2 h later
    finally:
        writer.close()
    code, doc = doctor(write_config(lane["tmp"], lane["backend"]))
    assert code == 1 and failures(doc) == {("clock", "clock_off")}
    assert "2.0 h" in next(c["message"] for c in doc["checks"] if c["cause"] == "clock_off")


def test_clock_reset_to_1970_and_broker_time(lane, monkeypatch):
    monkeypatch.setattr(checks_host, "wall_time", lambda: 86400.0)  # an RTC with a dead battery
    code, doc = doctor(write_config(lane["tmp"], lane["backend"]))
    assert code == 1 and failures(doc) == {("clock", "clock_off")}
    # A broker that publishes its clock: EMQX-style ISO time, or Unix seconds.
    assert checks_brokers.parse_broker_time(b"2024-05-01T12:00:00Z") == 1714564800.0
    assert checks_brokers.parse_broker_time(b"1714564800123") == pytest.approx(1714564800.123)
    assert checks_brokers.parse_broker_time(b"2024-05-01 12:00:00") is None  # no zone: proves nothing


def test_status_file_of_a_dead_daemon(lane):
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = lane["tmp"] / "state" / "status.json"
    state.write_text(json.dumps({"pid": dead.pid, "state": "running", "updated_ms": int(time.time() * 1000) - 60_000,
                                 "readers": [], "backends": []}))
    code, doc = doctor(write_config(lane["tmp"], lane["backend"]))
    assert code == 0 and failures(doc) == set()
    [(status, cause)] = statuses(doc, "daemon")
    assert (status, cause) == ("WARN", "daemon_not_running")
    assert f"pid {dead.pid}" in next(c["message"] for c in doc["checks"] if c["subject"] == "daemon")


def test_two_daemons_on_one_database(lane):
    config = write_config(lane["tmp"], lane["backend"])
    agents = [Agent(lane["tmp"], config).start() for _ in range(2)]
    try:
        status = lane["tmp"] / "state" / "status.json"
        assert wait_for(lambda: status.exists() and json.loads(status.read_text()).get("state") == "running")
        code, doc = doctor(config)
        assert code == 1 and failures(doc) == {("daemon", "daemon_twice")}, doc
        check = next(c for c in doc["checks"] if c["cause"] == "daemon_twice")
        assert all(str(a.proc.pid) in check["message"] for a in agents)
    finally:
        for agent in agents:
            agent.stop()


def test_running_daemon_holds_the_port_and_doctor_asks_it(lane, sim):
    reader = sim()
    config = write_config(lane["tmp"], lane["backend"], reader_toml(reader.device))
    agent = Agent(lane["tmp"], config).start()
    try:
        status = lane["tmp"] / "state" / "status.json"

        def reader_up():
            try:
                return json.loads(status.read_text())["readers"][0]["state"] == "up"
            except (OSError, ValueError, KeyError, IndexError):
                return False

        assert wait_for(reader_up), agent.log_text()
        commands = len(reader.model.commands)
        code, doc = doctor(config)
        assert code == 0 and failures(doc) == set()
        assert statuses(doc, "daemon") == [("PASS", "ok")]
        assert "port not opened" in next(c["message"] for c in doc["checks"] if c["subject"] == "reader booth")
        assert len(reader.model.commands) == commands  # doctor sent the reader nothing
        reader.mute()  # the reader hangs: the daemon sees it go silent, doctor reports what the daemon sees
        assert wait_for(lambda: not reader_up() and json.loads(status.read_text())["readers"][0]["state"] == "down")
        code, doc = doctor(config)
        assert code == 1 and failures(doc) == {("reader booth", "reader_down")}
        assert "no report and no keep-alive" in next(c["message"] for c in doc["checks"] if c["cause"] == "reader_down")
        agent.kill(signal.SIGTERM)
    finally:
        agent.stop()
