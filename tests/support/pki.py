"""A throw-away certificate authority for TLS tests, and the reference broker config templated.

Every certificate is made here with `cryptography` (EC P-256 keys: fast to generate),
written as PEM with keys 0600, shaped like a real deployment's: a CA with
basicConstraints and keyUsage, a server certificate with subjectAltNames, client
certificates whose CN is the lane's identity ("{port}/{lane}", see
config/mosquitto/README.md). `reference_broker_conf` turns config/mosquitto/ into a
config for a test broker by replacing its production paths and port; `Peer` is a
paho client with a certificate, to play a back end or a misbehaving lane.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "config" / "mosquitto"
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    cn: str


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # the agent's preflight refuses a key others can read


class PKI:
    """One CA in `directory`; `issue` signs server and client certificates with it."""

    def __init__(self, directory: Path, name: str = "Test Border CA", days: int = 3650):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - DAY).not_valid_after(now + days * DAY)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(ski, critical=False)
                   .sign(self.key, hashes.SHA256()))
        self.ca_path = self.dir / "ca.crt"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, cn: str, *, server: bool = False, dns: tuple[str, ...] = (),
              ips: tuple[str, ...] = (), not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> Issued:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(self.ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before or now - DAY).not_valid_after(not_after or now + 365 * DAY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.dir / f"{name}.crt", self.dir / f"{name}.key", cn)
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


def reference_broker_conf(port: int, ca: Path, server: Issued, acl: Path, bind: str = "127.0.0.1") -> str:
    """config/mosquitto/mosquitto.conf with the test's paths and port (for `Mosquitto(extra_conf=...)`).

    Persistence, logging and the run-as user stay with the test broker class, which
    writes them for its own directory; everything about TLS, identity and the ACL is
    the reference file's own text.
    """
    own = ("persistence", "persistence_location", "log_dest", "log_type", "user", "pid_file")
    text = (REFERENCE / "mosquitto.conf").read_text()
    for prod, test in (("/etc/mosquitto/certs/lanes-ca.crt", ca), ("/etc/mosquitto/certs/broker.crt", server.cert),
                       ("/etc/mosquitto/certs/broker.key", server.key), ("/etc/mosquitto/laneagent.acl", acl)):
        assert prod in text, f"config/mosquitto/mosquitto.conf no longer names {prod}"
        text = text.replace(prod, str(test))
    lines = [line for line in text.splitlines() if line.split(" ", 1)[0] not in own]
    lines[lines.index("listener 8883")] = f"listener {port} {bind}"
    return "\n".join(lines) + "\n"


def reference_acl(lanes: dict[str, list[str]], backend_cn: str = "backend-cbsa") -> str:
    """config/mosquitto/laneagent.acl with its example lanes replaced by `lanes` ({port: [lane]})."""
    text = (REFERENCE / "laneagent.acl").read_text()
    head, _, _ = text.partition("# --- lanes")
    head = head.replace("user backend-cbsa", f"user {backend_cn}")
    blocks = [f"user {port}/{lane}\ntopic read border/{port}/cache\n" for port, ls in lanes.items() for lane in ls]
    return head + "# --- lanes (generated by the test)\n" + "\n".join(blocks)


class Peer:
    """A paho client with a certificate (a back end, or a lane played by hand) that records what it gets."""

    def __init__(self, port: int, ca: Path, who: Issued, client_id: str = "peer", subscribe: tuple[str, ...] = (),
                 protocol: int = mqtt.MQTTv5, host: str = "127.0.0.1"):
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, object] = {}  # mid -> PUBACK reason code
        self.granted: list = []
        self.disconnects = 0
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        ctx.load_cert_chain(who.cert, who.key)
        self.client.tls_set_context(ctx)
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *_: setattr(self, "disconnects", self.disconnects + 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in subscribe]) if subscribe else None
        self.client.connect(host, port)
        self.client.loop_start()
        if subscribe:
            self.wait(lambda: self.granted, "SUBACK")

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.messages.append((message.topic, message.payload))
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.acks[mid] = reason_code
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.granted.extend(reason_codes)
            self.cond.notify_all()

    def wait(self, condition, what: str, timeout: float = 10.0):
        with self.cond:
            if not self.cond.wait_for(condition, timeout):
                raise AssertionError(f"timed out waiting for {what}")
            return condition()

    def publish(self, topic: str, payload: bytes = b"x", qos: int = 1):
        """Publish and wait for the PUBACK; returns its reason code (MQTT 5) or Success (3.1.1)."""
        mid = self.client.publish(topic, payload, qos=qos).mid
        self.wait(lambda: mid in self.acks, f"PUBACK for {topic}")
        return self.acks[mid]

    def on(self, topic: str) -> list[bytes]:
        with self.cond:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
