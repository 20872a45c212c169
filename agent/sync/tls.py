"""TLS to the back ends' brokers: the client context, certificate expiry, and plain-words errors.

`client_context` builds the one SSLContext a link uses: TLS 1.2 or newer, only the
back end's CA trusted (never the system store), hostname checked, our certificate
and key presented. `days_left` and `certificate_figures` read a PEM file's expiry;
`certificate_alarms(cfg)` turns them into (key, detail, severity) for the daemon and
`laneagent doctor`; `CertificateWatch` is the daemon's hourly hook. `explain` says
what an OpenSSL error means for a technician at the booth.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable

from cryptography import x509

from agent.config import BackendConfig, Config, TLSConfig

log = logging.getLogger(__name__)

WARN_DAYS = 30
CHECK_EVERY_S = 3600.0
MIN_VERSION = ssl.TLSVersion.TLSv1_2
# OpenSSL's reason -> what it means at the booth and what to do about it.
_HINTS = (
    ("certificate required", "the broker requires a client certificate: set tls.cert and tls.key"),
    ("certificate expired", "the broker refused our client certificate as expired: renew tls.cert"),
    ("certificate revoked", "the broker says our client certificate is revoked: get a new one from the back end"),
    ("unknown ca", "the broker does not trust the CA that issued our client certificate (tls.cert)"),
    ("bad certificate", "the broker refused our client certificate (tls.cert)"),
    ("hostname mismatch", "the broker's certificate is not valid for the host name we dialled (backends[].host)"),
    ("ip address mismatch", "the broker's certificate is not valid for the address we dialled (backends[].host)"),
    ("unable to get local issuer", "the broker's certificate is not signed by our tls.ca"),
    ("self-signed certificate", "the broker's certificate is not signed by our tls.ca"),
    ("self signed certificate", "the broker's certificate is not signed by our tls.ca"),  # OpenSSL 1.1 wording
    ("certificate has expired", "the broker's certificate (or our tls.ca) has expired"),
    ("wrong version number", "the broker did not answer in TLS: is this port a plaintext listener?"),
    ("unsupported protocol", "the broker offers only TLS older than 1.2, which we refuse"),
)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho 2.2 drops the socket unclosed (one fd per attempt until GC)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def client_context(tls: TLSConfig) -> ssl.SSLContext:
    """The context for one back end; ValueError (naming the file) when its material is unusable."""
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname are on; we only add to it.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = MIN_VERSION
    ctx.sslsocket_class = _ClosingSSLSocket
    try:
        # cafile alone: the system's public CAs are never trusted for a back end.
        ctx.load_verify_locations(cafile=tls.ca)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"tls.ca {tls.ca}: not a usable PEM CA certificate ({e})") from None
    if tls.cert:
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"tls.cert {tls.cert} / tls.key {tls.key}: cannot load the pair "
                             f"(not PEM, encrypted, or the key does not match the certificate: {e})") from None
    return ctx


def explain(error: str | BaseException, tls: TLSConfig | None = None) -> str:
    """A TLS failure in plain words, with OpenSSL's own text after it for the specialist.

    With `tls`, an expired client certificate of ours is named first: a broker may
    refuse it by just closing the connection, which OpenSSL reports only as an EOF.
    """
    text = str(error)
    low = text.lower()
    # "certificate verify failed" is our verdict on the broker; anything else may be its verdict on us.
    if tls and tls.cert and "certificate verify failed" not in low:
        try:
            left = days_left(tls.cert)
        except (OSError, ValueError):
            left = None
        if left is not None and left <= 0:
            return (f"TLS: our client certificate tls.cert {tls.cert} expired {-left:.1f} days ago "
                    f"and the broker refused the session: renew it ({text})")
    for needle, hint in _HINTS:
        if needle in low:
            return f"TLS: {hint} ({text})"
    if "eof occurred" in low or "connection reset" in low:
        return f"TLS: the broker closed the session during or right after the handshake (see its log) ({text})"
    return f"TLS: {text}"


# --- certificate expiry ----------------------------------------------------------------------
def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file; ValueError when there is none."""
    with open(path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    if not certs:
        raise ValueError(f"{path}: no PEM certificate in it")
    return certs


def days_left(path: str, now: dt.datetime | None = None) -> float:
    """Days until the earliest not_valid_after in a PEM file (negative once expired).

    The earliest one counts: a chain or a CA bundle stops working when any of it expires.
    Raises OSError (unreadable) or ValueError (no certificate in it).
    """
    expires = min(c.not_valid_after_utc for c in load_certificates(path))
    return (expires - _now(now)).total_seconds() / 86400


def certificate_figures(backend: BackendConfig, now: dt.datetime | None = None,
                        warn_days: float = WARN_DAYS) -> list[dict]:
    """One dict per certificate file of a back end: file, path, subject, not_after_ms, days_left, state.

    state: "ok", "warning" (expires within warn_days), "expired", or "unreadable" (with
    error). An empty list when the back end has no tls.
    """
    if not backend.tls:
        return []
    out = []
    for name, path in (("ca", backend.tls.ca), ("cert", backend.tls.cert)):
        if not path:
            continue
        try:
            certs = load_certificates(path)
        except (OSError, ValueError) as e:
            out.append({"file": name, "path": path, "state": "unreadable", "error": str(e)})
            continue
        first = min(certs, key=lambda c: c.not_valid_after_utc)
        left = (first.not_valid_after_utc - _now(now)).total_seconds() / 86400
        out.append({"file": name, "path": path, "subject": first.subject.rfc4514_string(),
                    "not_after_ms": int(first.not_valid_after_utc.timestamp() * 1000), "days_left": round(left, 1),
                    "state": "expired" if left <= 0 else "warning" if left <= warn_days else "ok"})
    return out


def certificate_alarms(cfg: Config, now: dt.datetime | None = None,
                       warn_days: float = WARN_DAYS) -> list[tuple[str, str, str]]:
    """(key, detail, severity) for every back-end certificate that needs a person.

    severity "alarm": expired or unreadable; "warning": expires within warn_days. Keys
    are stable per file and state, e.g. "cert_expired:cbsa:cert", "cert_expiring:cbsa:ca",
    "cert_unreadable:cbsa:cert". Certificates that are fine give nothing.
    """
    out = []
    for backend in cfg.backends:
        for fig in certificate_figures(backend, now, warn_days):
            where = f"back end {backend.name} tls.{fig['file']} {fig['path']}"
            if fig["state"] == "unreadable":
                out.append((f"cert_unreadable:{backend.name}:{fig['file']}", f"{where}: {fig['error']}", "alarm"))
            elif fig["state"] == "expired":
                out.append((f"cert_expired:{backend.name}:{fig['file']}",
                            f"{where} expired {-fig['days_left']:.1f} days ago ({fig['subject']})", "alarm"))
            elif fig["state"] == "warning":
                out.append((f"cert_expiring:{backend.name}:{fig['file']}",
                            f"{where} expires in {fig['days_left']:.1f} days ({fig['subject']})", "warning"))
    return out


class CertificateWatch:
    """The daemon's hook: re-reads the certificate files at most once per `every_s`.

    Expired or unreadable certificates become alarms through the daemon's own
    raise/clear functions; warnings are logged when they first appear and shown in
    health per back end (`figures`), so a renewal due in 30 days does not make the lane
    look degraded. A certificate renewed on disk clears its alarm at the next check.
    """

    def __init__(self, cfg: Config, every_s: float = CHECK_EVERY_S):
        self.cfg, self.every_s = cfg, every_s
        self._next_mono = 0.0
        self._raised: set[str] = set()
        self._warned: set[str] = set()
        self._figures: dict[str, list[dict]] = {}

    def update(self, raise_alarm: Callable[[str, str], None], clear_alarm: Callable[[str], None]) -> None:
        if time.monotonic() < self._next_mono or not any(b.tls for b in self.cfg.backends):
            return
        self._next_mono = time.monotonic() + self.every_s
        self._figures = {b.name: certificate_figures(b) for b in self.cfg.backends}
        found = certificate_alarms(self.cfg)
        alarms = {key: detail for key, detail, severity in found if severity == "alarm"}
        for key, detail in alarms.items():
            raise_alarm(key, detail)
        for key in self._raised - alarms.keys():
            clear_alarm(key)
        self._raised = set(alarms)
        warnings = {key: detail for key, detail, severity in found if severity == "warning"}
        for key in warnings.keys() - self._warned:
            log.warning("certificate renewal due: %s", warnings[key])
        self._warned = set(warnings)

    def figures(self, backend: str) -> list[dict]:
        """The last check's figures for one back end, days_left brought up to now."""
        now_ms = time.time() * 1000
        out = []
        for fig in self._figures.get(backend, []):
            if "not_after_ms" in fig:
                left = (fig["not_after_ms"] - now_ms) / 86_400_000
                fig = {**fig, "days_left": round(left, 1),
                       "state": "expired" if left <= 0 else "warning" if left <= WARN_DAYS else "ok"}
            out.append(fig)
        return out
