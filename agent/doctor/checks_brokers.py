"""Doctor: each back end's broker, one step at a time, so the failing step names the cause.

Name lookup (DNS), TCP connect (refused and timed out told apart), our certificates'
expiry, the TLS handshake (its error in plain words through `agent.sync.tls.explain`),
then an MQTT CONNECT with the configured credentials, whose CONNACK says whether they
are accepted. Doctor connects under its own client id with a clean session, so the
daemon's persistent session and its queued downlink are never touched. While
connected it looks for a broker clock on `$SYS` (EMQX-style `datetime`, or
`$SYS/broker/time`); mosquitto publishes none, and its uptime says nothing about the
wall clock, so without one the clock check relies on the host's own evidence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import BackendConfig, Config
from agent.doctor.verdict import FAIL, WARN, Verdict, passed
from agent.sync import tls as tls_mod

CLOCK_TOPICS = ("$SYS/broker/time", "$SYS/brokers/+/datetime")
CLOCK_WAIT_S = 0.3
BAD_CREDENTIALS = ("bad user name or password", "not authorized", "not authorised", "bad username")


def check(cfg: Config, index: int, timeout: float, clocks: list) -> list[Verdict]:
    """Every node of the back end, each through every step: a cluster with one dead node
    works, but the operator must hear which node is down before a second one goes."""
    backend = cfg.backends[index]
    if not backend.hosts:
        return _check_node(cfg, backend, f"backends[{index}]", f"back end {backend.name}", timeout, clocks)
    verdicts = []
    for j, (host, port) in enumerate(backend.hosts):
        node = dataclasses.replace(backend, host=host, port=port)
        verdicts += _check_node(cfg, node, f"backends[{index}]", f"back end {backend.name} node {host}:{port}",
                                timeout, clocks, node_key=f"backends[{index}].hosts[{j}]", certificates=j == 0)
    return verdicts


def _check_node(cfg: Config, backend: BackendConfig, key: str, subject: str, timeout: float, clocks: list,
                node_key: str | None = None, certificates: bool = True) -> list[Verdict]:
    where = f"{backend.host}:{backend.port}"
    node_key = node_key or f"{key}.host/{key}.port"
    failure = _resolve(cfg, backend, subject, node_key, timeout) or _tcp(cfg, backend, subject, node_key, timeout)
    if failure:
        return [failure]
    verdicts = _certificates(cfg, backend, key) if certificates else []  # ours: the same for every node
    if any(v.status == FAIL for v in verdicts):
        return verdicts  # the broker will refuse an expired certificate: one cause, one line
    files = (backend.tls.ca, backend.tls.cert, backend.tls.key) if backend.tls else ()
    unreadable = [p for p in files if p and not os.access(p, os.R_OK)]
    if backend.password_file and not os.access(backend.password_file, os.R_OK):
        unreadable.append(backend.password_file)
    if unreadable:  # the config line already says which file; guessing on without it would mislead
        missing = [p for p in unreadable if not os.path.exists(p)]
        why = (f"{', '.join(missing)} missing (see the config line)" if missing
               else f"{', '.join(unreadable)} not readable for you")
        return verdicts + [Verdict(WARN, subject, "not_checked" if missing else "cannot_check_as_user",
                                   f"{where} reachable; TLS and credentials not checked: {why}",
                                   f"fix {key} in {cfg.path}" if missing else "check as root: sudo laneagent doctor")]
    context = None
    tls_note = "plaintext (no tls configured)"
    if backend.tls:
        try:
            context = tls_mod.client_context(backend.tls)
        except ValueError as e:
            return verdicts + [Verdict(FAIL, subject, "tls_material", str(e), f"fix {key}.tls in {cfg.path}")]
        finding, tls_note = _handshake(cfg, backend, subject, key, context, timeout)
        if finding is not None:
            verdicts.append(finding)
            if finding.status == FAIL:
                return verdicts
    failure, figures = _mqtt(cfg, backend, subject, key, context, timeout)
    if failure:
        return verdicts + [failure]
    if figures.get("clock_offset_s") is not None:
        clocks.append((backend.name, figures["clock_offset_s"]))
    who = f"as {backend.username}" if backend.username else "anonymously"
    return verdicts + [passed(subject, f"{where} reachable, {tls_note}, MQTT {backend.mqtt_version} CONNECT "
                                       f"accepted {who} in {figures['connack_ms']:.0f} ms")]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _resolve(cfg: Config, backend: BackendConfig, subject: str, node_key: str, timeout: float) -> Verdict | None:
    if _is_ip(backend.host):
        return None
    result: dict = {}

    def lookup() -> None:
        try:
            result["addrs"] = socket.getaddrinfo(backend.host, backend.port, type=socket.SOCK_STREAM)
        except OSError as e:
            result["error"] = e

    # getaddrinfo has no timeout of its own; a dead DNS server would hold doctor for 30 s.
    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    fix = (f"check {node_key} in {cfg.path} for a typo; check the DNS servers in /etc/resolv.conf "
           f"(`getent hosts {backend.host}`); or use the broker's IP address")
    if thread.is_alive():
        return Verdict(FAIL, subject, "dns_failure",
                       f"DNS: no answer for {backend.host} within {timeout:g} s (no DNS server reachable)", fix)
    if "error" in result:
        return Verdict(FAIL, subject, "dns_failure",
                       f"DNS: cannot resolve {backend.host}: "
                       f"{getattr(result['error'], 'strerror', None) or result['error']}",
                       fix)
    return None


def _tcp(cfg: Config, backend: BackendConfig, subject: str, node_key: str, timeout: float) -> Verdict | None:
    where = f"{backend.host}:{backend.port}"
    try:
        with socket.create_connection((backend.host, backend.port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return Verdict(FAIL, subject, "connection_refused",
                       f"{where} refused the connection: the host is up but no broker listens on port {backend.port}",
                       f"ask the back end whether its broker runs; check {node_key} in {cfg.path} "
                       "(1883 plaintext, 8883 TLS are usual)")
    except (socket.timeout, TimeoutError):
        return Verdict(FAIL, subject, "connect_timeout",
                       f"{where} did not answer within {timeout:g} s: packets are dropped on the way "
                       "(firewall, VPN down, wrong address or route)",
                       f"check the lane's network and VPN; `ping {backend.host}`; check {node_key} in {cfg.path}")
    except OSError as e:
        return Verdict(FAIL, subject, "network_unreachable", f"{where}: {e.strerror or e}",
                       "check the booth's network link and routes: ip addr; ip route")


def _certificates(cfg: Config, backend: BackendConfig, key: str) -> list[Verdict]:
    out = []
    subject = f"back end {backend.name}"
    for fig in tls_mod.certificate_figures(backend):
        path, name = fig["path"], f"{key}.tls.{fig['file']}"
        renew = ("get a renewed certificate from the back end's PKI and put it at "
                 f"{path} (or point {name} in {cfg.path} at it), then: sudo systemctl restart laneagent")
        if fig["state"] == "expired":
            out.append(Verdict(FAIL, subject, "certificate_expired",
                               f"{name} {path} expired {-fig['days_left']:.1f} days ago ({fig['subject']}); "
                               "the broker will refuse the connection", renew))
        elif fig["state"] == "warning":
            out.append(Verdict(WARN, subject, "certificate_expiring",
                               f"{name} {path} expires in {fig['days_left']:.1f} days ({fig['subject']})", renew))
        elif fig["state"] == "unreadable" and os.access(path, os.R_OK):
            out.append(Verdict(FAIL, subject, "certificate_unreadable", f"{name} {path}: {fig['error']}",
                               f"put the PEM certificate there, or fix {name} in {cfg.path}"))
    return out


def _handshake(cfg: Config, backend: BackendConfig, subject: str, key: str, context: ssl.SSLContext,
               timeout: float) -> tuple[Verdict | None, str]:
    try:
        with socket.create_connection((backend.host, backend.port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=backend.host) as conn:
                version, peer = conn.version(), conn.getpeercert()
    except (ssl.SSLError, OSError) as e:
        text = tls_mod.explain(e, backend.tls)
        low = str(e).lower()
        if "not yet valid" in low:
            return Verdict(FAIL, subject, "clock_off", f"{text}: this booth's clock is probably behind",
                           "set the clock (sudo timedatectl set-ntp true; `timedatectl`), then retry"), ""
        cause = "certificate_expired" if "expired" in low else "tls_failed"
        return Verdict(FAIL, subject, cause, f"{backend.host}:{backend.port}: {text}",
                       f"compare {key}.tls in {cfg.path} with what the back end issued; "
                       f"`openssl s_client -connect {backend.host}:{backend.port} -CAfile {backend.tls.ca}` shows "
                       "the broker's side"), ""
    note = f"TLS {version.replace('TLSv', '')}"
    after = peer.get("notAfter") if peer else None
    if after:
        left = (ssl.cert_time_to_seconds(after) - time.time()) / 86400
        note += f", broker certificate valid {left:.0f} more days"
        if left <= tls_mod.WARN_DAYS:
            return Verdict(WARN, subject, "certificate_expiring",
                           f"the broker's own certificate expires in {left:.1f} days",
                           "tell the back end's operators: their broker certificate needs renewing"), note
    return None, note


def _mqtt(cfg: Config, backend: BackendConfig, subject: str, key: str, context, timeout: float,
          version: str | None = None) -> tuple[Verdict | None, dict]:
    where = f"{backend.host}:{backend.port}"
    version = version or backend.mqtt_version
    v5 = version == "5"
    # Our own client id: the daemon's persistent session must not be taken over.
    client_id = f"laneagent-doctor-{cfg.lane.port_code}-{cfg.lane.lane_id}-{backend.name}-{os.getpid()}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else True,
                         reconnect_on_failure=False)
    if context is not None:
        client.tls_set_context(context)
    if backend.username:
        password = None
        if backend.password_file:
            with open(backend.password_file) as f:
                password = f.read().strip()
        client.username_pw_set(backend.username, password)
    state: dict = {}
    done = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        state["rc"] = reason_code
        state["connack_mono"] = time.monotonic()
        if not reason_code.is_failure:
            c.subscribe([(t, 0) for t in CLOCK_TOPICS])
            state["sub_mono"] = time.monotonic()
        done.set()

    def on_message(c, userdata, message):
        seen = parse_broker_time(message.payload)
        if seen is not None and "clock" not in state:
            state["clock"] = (seen, time.time())

    client.on_connect, client.on_message = on_connect, on_message
    client.connect_timeout = timeout
    start = time.monotonic()
    try:
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(backend.host, backend.port, 30, clean_start=True, properties=props)
        else:
            client.connect(backend.host, backend.port, 30)
        while not done.is_set() and time.monotonic() - start < timeout:
            client.loop(0.05)
            if not client.is_connected() and client.socket() is None:
                state["closed"] = True
                break
        if "rc" in state and not state["rc"].is_failure:
            until = time.monotonic() + CLOCK_WAIT_S
            while time.monotonic() < until and "clock" not in state:
                client.loop(0.05)
    except (OSError, ssl.SSLError, ValueError) as e:
        return Verdict(FAIL, subject, "mqtt_failed", f"{where}: MQTT connect failed: {e}",
                       f"check {key} in {cfg.path}"), {}
    finally:
        try:
            client.disconnect()
            client.loop(0.05)
        except Exception:  # closing a half-open client: nothing left to save
            pass
    rc = state.get("rc")
    if rc is None and v5 and version == backend.mqtt_version and state.get("closed"):
        # Closed on our MQTT 5 CONNECT: ask again in 3.1.1 so the line names the fix, not a guess.
        older, _ = _mqtt(cfg, backend, subject, key, context, timeout, version="3.1.1")
        if older is None:
            return Verdict(FAIL, subject, "mqtt_version",
                           f"{where} closed the connection on our MQTT 5 CONNECT and accepts MQTT 3.1.1 "
                           "(RabbitMQ 3.x speaks only 3.1.1)",
                           f"set {key}.mqtt_version = \"3.1.1\" in {cfg.path}"), {}
    if rc is None:
        return Verdict(FAIL, subject, "no_connack",
                       f"{where} accepted TCP{' and TLS' if context else ''} but sent no MQTT CONNACK within "
                       f"{timeout:g} s: this port is not an MQTT broker{'' if context else ', or it expects TLS'}",
                       f"check {key}.port and {key}.tls in {cfg.path} against what the back end gave you"), {}
    if rc.is_failure:
        text = str(rc)
        if any(b in text.lower() for b in BAD_CREDENTIALS):
            return Verdict(FAIL, subject, "bad_credentials",
                           f"{where} refused our credentials: {text} (user {backend.username or '(none)'})",
                           f"check {key}.username and the password in {key}.password_file "
                           f"({backend.password_file or 'not set'}) in {cfg.path} with the back end; "
                           "the file holds the password alone, mode 0600"), {}
        return Verdict(FAIL, subject, "connect_refused", f"{where} refused the MQTT connection: {text}",
                       f"tell the back end's operators; check {key}.mqtt_version in {cfg.path}"), {}
    figures = {"connack_ms": (state["connack_mono"] - start) * 1000}
    if "clock" in state:
        broker_s, at = state["clock"]
        figures["clock_offset_s"] = at - broker_s
    return None, figures


def parse_broker_time(payload: bytes) -> float | None:
    """A broker's clock from a `$SYS` payload: Unix seconds (or ms), or ISO 8601 with a zone."""
    text = payload.decode(errors="replace").strip()
    try:
        value = float(text)
        return value / 1000 if value > 1e11 else value
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None  # a local time of unknown zone proves nothing
    return stamp.timestamp()
