"""Mutual TLS to a real mosquitto run from the reference config (config/mosquitto/).

Every certificate is made by the test (tests/support/pki.py). Connections go through
a `Tap`, a TCP relay that records the first byte each client sends: 0x16 is a TLS
ClientHello, 0x10 would be a plaintext MQTT CONNECT. The links run in-process (like
tests/sync/test_sync.py) so each failure's `last_error` and log lines can be read directly;
the last test runs the agent as a process for the certificate figures and alarms.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import socket
import ssl
import threading
import time

import cbor2
import pytest

from agent import config
from agent.config import TLSConfig
from agent.core import LaneCore
from agent.readers.report import TagReport
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter
from agent.sync import tls
from tests.helpers import backend_toml, cli, lane_toml, wait_for
from tests.lane_harness import Agent
from simulators.mosquitto import free_port
from tests.support.pki import PKI, Peer, reference_acl, reference_broker_conf
from tests.sync.wiring import links_for

TLS_HANDSHAKE, MQTT_CONNECT = 0x16, 0x10
NOW = dt.datetime.now(dt.UTC)


class Tap:
    """A TCP relay to `target_port` that records the first byte of every connection."""

    def __init__(self, target_port: int, bind: str = "127.0.0.1"):
        self.server = socket.create_server((bind, 0))
        self.host, self.port = bind, self.server.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self.first_bytes: list[int] = []
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.socks += [client, upstream]
            threading.Thread(target=self._copy, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self._copy, args=(client, upstream, True), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    with self.lock:
                        self.first_bytes.append(data[0])
                    record = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self.first_bytes)

    def close(self) -> None:
        self.server.close()
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca, other = PKI(base / "ca"), PKI(base / "other", name="Unrelated CA")
    return {
        "ca": ca, "other": other,
        "server": ca.issue("server", "localhost", server=True, dns=("localhost",), ips=("127.0.0.1",)),
        "backend": ca.issue("backend", "backend-cbsa"),
        "c3": ca.issue("c3", "0901/C3"),
        "expired": ca.issue("expired", "0901/C3", not_before=NOW - dt.timedelta(days=400),
                            not_after=NOW - dt.timedelta(days=2)),
        "stranger": other.issue("stranger", "0901/C3"),
    }


@pytest.fixture
def tls_broker(broker_factory, pki, tmp_path):
    acl = tmp_path / "laneagent.acl"
    acl.write_text(reference_acl({"0901": ["C3", "C4"]}))
    port = free_port()
    conf = reference_broker_conf(port, pki["ca"].ca_path, pki["server"], acl) + "log_type notice\n"
    broker = broker_factory(extra_conf=conf)
    broker.tls_port = port
    return broker


@pytest.fixture
def taps():
    made: list[Tap] = []

    def make(target_port: int, bind: str = "127.0.0.1") -> Tap:
        made.append(Tap(target_port, bind))
        return made[-1]

    yield make
    for tap in made:
        tap.close()


class Lane:
    """The core and one TLS link, in-process."""

    def __init__(self, tmp_path, host: str, port: int, tls_table: dict, extra: dict | None = None):
        self.cfg = config.parse({
            "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
            "store": {"path": str(tmp_path / "agent.db")},
            "aggregation": {"idle_close_s": 0.3, "max_passage_s": 10.0},
            "referral": {"random_rate": 0.0},
            "backends": [{"name": "cbsa", "country": "CA", "host": host, "port": port, "share": ["tags"],
                          "max_rate": 0, "tls": tls_table, **(extra or {})}],
        })
        self.writer = StoreWriter(self.cfg.store.path)
        self.core = LaneCore(self.cfg, self.writer)
        [self.link] = links_for(self.cfg, self.core)
        self.core.start()
        self.link.start()

    def stop(self) -> None:
        self.link.stop()
        self.core.stop()
        self.writer.close()


def material(pki, who: str | None = "c3", ca: str = "ca") -> dict:
    table = {"ca": str(pki[ca].ca_path)}
    if who:
        table |= {"cert": str(pki[who].cert), "key": str(pki[who].key)}
    return table


# --- the client context ---------------------------------------------------------------------
def test_client_context_is_tls12_plus_our_ca_only_hostname_checked(pki):
    ctx = tls.client_context(TLSConfig(**material(pki)))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # Only the back end's CA: never the system's public ones.
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Test Border CA"),),)]


def test_unusable_key_pair_is_refused_naming_the_files(pki):
    with pytest.raises(ValueError, match=r"tls.cert .*c3.crt / tls.key .*expired.key: cannot load the pair"):
        tls.client_context(TLSConfig(str(pki["ca"].ca_path), str(pki["c3"].cert), str(pki["expired"].key)))
    with pytest.raises(ValueError, match=r"tls.ca .*c3.key: not a usable PEM CA"):
        tls.client_context(TLSConfig(str(pki["c3"].key)))


# --- a good connection ----------------------------------------------------------------------
def test_lane_connects_with_its_certificate_and_events_birth_and_downlink_flow(tmp_path, pki, tls_broker, taps):
    backend = Peer(tls_broker.tls_port, pki["ca"].ca_path, pki["backend"], subscribe=("border/0901/C3/#",))
    tap = taps(tls_broker.tls_port)
    lane = Lane(tmp_path, "127.0.0.1", tap.port, material(pki))
    try:
        wait_for(lambda: lane.link.connected, what=f"the TLS link ({lane.link.last_error})")
        assert lane.link.connection.client.socket().version() in ("TLSv1.2", "TLSv1.3")
        birth = cbor2.loads(backend.wait(lambda: backend.on("border/0901/C3/status"), "birth")[0])
        assert birth["state"] == "online"
        for _ in range(3):
            lane.core.submit_read("booth", TagReport("thingmagic", "E200000000000000000000A1", 1, rssi=-50),
                                  time.monotonic(), int(time.time() * 1000))
        event = cbor2.loads(backend.wait(lambda: backend.on("border/0901/C3/events"), "the event")[0])
        assert event["seq"] == 1 and event["tags"][0]["epc"] == "E200000000000000000000A1"
        # Downlink under the ACL: the port's cache reaches the lane.
        backend.publish("border/0901/cache", cbor2.dumps({"v": 1, "type": "cache", "source": "CA", "seq": 1,
                                                          "op": "snapshot", "records": []}))
        wait_for(lambda: StoreReader(lane.writer.path).cache_sources(), what="the cache snapshot applied")
        assert lane.link.last_error is None
        assert set(tap.first_bytes) == {TLS_HANDSHAKE}
        assert "as 0901/C3 (p5" in tls_broker.log_text()  # the broker knows us by our certificate's CN
    finally:
        lane.stop()
        backend.close()


def mosquitto_password_line(user: str, password: str) -> str:
    """A password_file line in mosquitto's "$6$" form: SHA-512 over password + salt."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def test_username_and_password_file_are_sent_over_tls(tmp_path, pki, broker_factory):
    passwd = tmp_path / "passwd"
    passwd.write_text(mosquitto_password_line("lane-0901-C3", "s3cret-pw"))
    port = free_port()
    broker_factory(extra_conf=f"allow_anonymous false\npassword_file {passwd}\nlistener {port} 127.0.0.1\n"
                              f"certfile {pki['server'].cert}\nkeyfile {pki['server'].key}\n")
    for password, works in (("s3cret-pw", True), ("guessed", False)):
        secret = tmp_path / f"password-{works}"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        lane = Lane(tmp_path / str(works), "127.0.0.1", port, material(pki, who=None),
                    {"username": "lane-0901-C3", "password_file": str(secret)})
        try:
            if works:
                wait_for(lambda link=lane.link: link.connected, what=f"the password-authenticated link ({lane.link.last_error})")
            else:
                wait_for(lambda link=lane.link: link.last_error, what="the refusal")
                time.sleep(0.5)
                assert not lane.link.connected and "guessed" not in lane.link.last_error
        finally:
            lane.stop()


# --- failures: a clear error, logged once, and never a plaintext CONNECT ------------------------
FAILURES = {
    # case: (material, dial 127.0.0.2?, expected in last_error)
    "wrong_ca": ({"ca": "other"}, False, "certificate verify failed: self-signed certificate in certificate chain"),
    "wrong_hostname": ({}, True, "IP address mismatch, certificate is not valid for '127.0.0.2'"),
    "no_client_certificate": ({"who": None}, False, "TLS: the broker requires a client certificate: set tls.cert"),
    "expired_client_certificate": ({"who": "expired"}, False, "TLS: our client certificate tls.cert"),
    "certificate_from_another_ca": ({"who": "stranger"}, False, "TLS: the broker does not trust the CA"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_tls_failure_is_clear_logged_once_and_never_plaintext(case, tmp_path, pki, tls_broker, taps, caplog):
    kwargs, other_address, expected = FAILURES[case]
    tap = taps(tls_broker.tls_port, bind="127.0.0.2" if other_address else "127.0.0.1")
    with caplog.at_level(logging.WARNING, logger="agent.sync"):
        lane = Lane(tmp_path, tap.host, tap.port, material(pki, **kwargs))
        try:
            attempts = 3
            for n in range(1, attempts + 1):
                wait_for(lambda n=n: tap.connections >= n and lane.link.last_error, what=f"attempt {n}")
                lane.link.retry_now()  # skip the back-off
            wait_for(lambda: expected in (lane.link.last_error or ""), what=f"{expected!r}, have {lane.link.last_error!r}")
            assert not lane.link.connected
        finally:
            lane.stop()
    assert set(tap.first_bytes) == {TLS_HANDSHAKE}, "a plaintext CONNECT went out"
    said = [r.getMessage() for r in caplog.records if expected in r.getMessage()]
    assert len(said) == 1, said  # once, however many attempts
    assert "New client connected" not in tls_broker.log_text()


def test_plaintext_listener_gets_a_client_hello_never_a_connect(tmp_path, pki, tls_broker, taps, caplog):
    tap = taps(tls_broker.port)  # the broker's plaintext listener
    lane = Lane(tmp_path, tap.host, tap.port, material(pki))
    try:
        for n in (1, 2, 3):
            wait_for(lambda n=n: tap.connections >= n and lane.link.last_error, what=f"attempt {n}")
            lane.link.retry_now()
        assert "cannot connect to 127.0.0.1" in lane.link.last_error and not lane.link.connected
    finally:
        lane.stop()
    assert set(tap.first_bytes) == {TLS_HANDSHAKE} and MQTT_CONNECT not in tap.first_bytes
    assert "New client connected" not in tls_broker.log_text()


# --- certificate expiry ---------------------------------------------------------------------------
def test_days_left_counts_the_earliest_certificate_in_the_file(pki, tmp_path):
    soon = pki["ca"].issue("soon", "0901/C3", not_after=NOW + dt.timedelta(days=10))
    assert tls.days_left(str(soon.cert)) == pytest.approx(10, abs=0.01)
    assert tls.days_left(str(soon.cert), now=NOW + dt.timedelta(days=4)) == pytest.approx(6, abs=0.01)
    assert tls.days_left(str(pki["expired"].cert)) == pytest.approx(-2, abs=0.01)
    assert tls.days_left(str(pki["ca"].ca_path)) == pytest.approx(3650 - 1, abs=1.01)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki["c3"].cert.read_bytes() + soon.cert.read_bytes())
    assert tls.days_left(str(bundle)) == pytest.approx(10, abs=0.01)
    with pytest.raises(FileNotFoundError):
        tls.days_left(str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError):
        tls.days_left(str(soon.key))  # a key, not a certificate


def expiry_config(pki, tmp_path, certs: dict[str, str]):
    return config.parse({
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
        "store": {"path": str(tmp_path / "agent.db")},
        "backends": [{"name": name, "country": "CA", "host": "127.0.0.1", "tls": material(pki, who)}
                     for name, who in certs.items()] + [{"name": "plain", "country": "US", "host": "127.0.0.1"}],
    })


def test_certificate_alarms_warn_within_30_days_and_alarm_when_expired(pki, tmp_path):
    pki = {**pki, "soon": pki["ca"].issue("soon", "0901/C3", not_after=NOW + dt.timedelta(days=10)),
           "gone": pki["ca"].issue("gone", "0901/C3")}
    cfg = expiry_config(pki, tmp_path, {"good": "c3", "due": "soon", "old": "expired", "lost": "gone"})
    pki["gone"].cert.unlink()
    found = {key: (severity, detail) for key, detail, severity in tls.certificate_alarms(cfg)}
    assert set(found) == {"cert_expiring:due:cert", "cert_expired:old:cert", "cert_unreadable:lost:cert"}
    severity, detail = found["cert_expiring:due:cert"]
    assert severity == "warning" and "tls.cert" in detail and "expires in 10.0 days" in detail
    assert found["cert_expired:old:cert"][0] == "alarm"
    assert "expired 2.0 days ago (CN=0901/C3)" in found["cert_expired:old:cert"][1]
    assert found["cert_unreadable:lost:cert"][0] == "alarm"
    figures = {f["file"]: f for f in tls.certificate_figures(cfg.backends[1])}
    assert figures["cert"]["state"] == "warning" and figures["cert"]["days_left"] == pytest.approx(10, abs=0.1)
    assert figures["ca"]["state"] == "ok" and figures["ca"]["subject"] == "CN=Test Border CA"
    assert tls.certificate_figures(cfg.backends[-1]) == []  # no tls, no figures


def test_certificate_watch_raises_and_clears_alarms_at_most_once_per_period(pki, tmp_path):
    pki = {**pki, "renewed": pki["ca"].issue("renewed", "0901/C3", not_before=NOW - dt.timedelta(days=9),
                                             not_after=NOW - dt.timedelta(days=1))}
    cfg = expiry_config(pki, tmp_path, {"cbsa": "renewed"})
    alarms: dict[str, str] = {}
    watch = tls.CertificateWatch(cfg, every_s=3600)
    watch.update(alarms.__setitem__, alarms.pop)
    assert list(alarms) == ["cert_expired:cbsa:cert"]
    assert watch.figures("cbsa")[1]["state"] == "expired"
    pki["renewed"].cert.write_bytes(pki["c3"].cert.read_bytes())  # renewed on disk
    watch.update(alarms.__setitem__, alarms.pop)
    assert list(alarms) == ["cert_expired:cbsa:cert"]  # not re-read within the hour
    watch._next_mono = 0.0
    watch.update(alarms.__setitem__, alarms.pop)
    assert alarms == {} and watch.figures("cbsa")[1]["state"] == "ok"


def test_explain_names_the_cause(pki):
    assert "requires a client certificate" in tls.explain(
        "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)")
    assert "not signed by our tls.ca" in tls.explain(
        "certificate verify failed: unable to get local issuer certificate")
    assert "plaintext listener" in tls.explain("[SSL: WRONG_VERSION_NUMBER] wrong version number")
    expired = TLSConfig(**material(pki, "expired"))
    assert "our client certificate tls.cert" in tls.explain("EOF occurred in violation of protocol", expired)
    assert "closed the session" in tls.explain("EOF occurred in violation of protocol", TLSConfig(**material(pki)))


# --- the daemon: figures in status and health, alarms, one log line ---------------------------------
def test_agent_process_reports_certificate_expiry_and_a_clear_tls_error(tmp_path, pki, tls_broker, taps):
    soon = pki["ca"].issue("soon", "0901/C3", not_after=NOW + dt.timedelta(days=10))
    tap = taps(tls_broker.tls_port)
    tables = {n: "{ " + ", ".join(f'{k} = "{v}"' for k, v in t.items()) + " }" for n, t in
              (("cbsa", {"ca": pki["ca"].ca_path, "cert": soon.cert, "key": soon.key}),
               ("cbp", material(pki, "expired")))}
    conf = tmp_path / "agent.toml"
    conf.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=(
        backend_toml("cbsa", "CA", tls_broker.tls_port, extra=f"tls = {tables['cbsa']}")
        + backend_toml("cbp", "US", tap.port, extra=f"tls = {tables['cbp']}"))))
    backend = Peer(tls_broker.tls_port, pki["ca"].ca_path, pki["backend"], subscribe=("border/0901/C3/status",))
    agent = Agent(tmp_path, conf).start()
    try:
        backend.wait(lambda: backend.on("border/0901/C3/status"), "the birth over TLS")
        for _ in range(2):  # two more attempts on the expired certificate: still one log line
            attempts = tap.connections
            agent.proc.send_signal(signal.SIGUSR1)  # `laneagent queue retry`: reconnect now
            wait_for(lambda seen=attempts: tap.connections > seen, what="another attempt")

        def status():
            doc = json.loads(cli("--config", str(conf), "status", "--json")[1])
            cbp = next(b for b in doc["backends"] if b["name"] == "cbp")
            return doc if "expired" in (cbp.get("last_error") or "") else None
        doc = wait_for(status, what="the status file to show the TLS error")
        cbsa, cbp = ({f["file"]: f for f in b["certificates"]} for b in doc["backends"])
        assert cbsa["cert"]["state"] == "warning" and cbsa["cert"]["days_left"] == pytest.approx(10, abs=0.1)
        assert cbp["cert"]["state"] == "expired" and cbsa["ca"]["state"] == "ok"
        assert [b["connected"] for b in doc["backends"]] == [True, False]
        assert {a["alarm"] for a in doc["alarms"]} >= {"cert_expired:cbp:cert"}
        assert "cert_expiring:cbsa:cert" not in {a["alarm"] for a in doc["alarms"]}  # a warning, not an alarm
    finally:
        agent.stop()
        backend.close()
    log = agent.log_text()
    assert log.count("certificate renewal due: back end cbsa tls.cert") == 1
    assert log.count("TLS: our client certificate tls.cert") == 1, log
    assert set(tap.first_bytes) == {TLS_HANDSHAKE}
