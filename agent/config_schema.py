"""The schema of the agent's configuration (DESIGN 2.2): every key, its type, whether it is
required, and the check of its value; the names the contract fixes (sections, finding
codes, lane kinds). `agent/config.py` builds a `Config` from a document with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

SECTIONS = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral")
SHARE_ITEMS = SECTIONS + ("alerts", "foreign_alerts")
FINDING_CODES = (
    "lookout_hit", "no_trip", "driver_not_on_trip", "equipment_not_on_trip", "no_conveyance_tag",
    "no_driver_card", "unknown_tag", "credential_expired", "credential_revoked", "multiple_trips",
    "not_fast_eligible",
)
LANE_KINDS = ("general", "fast")  # a "fast" lane checks FAST eligibility (DESIGN 2.7)


# --- the schema -----------------------------------------------------------------------
# Each key: (expected type(s), required, extra check returning an error or None).
Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class DialectRule:
    """What the config needs to know of one reader dialect: its name, and a check of a
    `[[readers]]` table naming it (values already of the schema's types) that returns
    (key, message) pairs, one per problem."""

    name: str
    check: Callable[[dict], list[tuple[str, str]]]


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def _country(v: Any) -> str | None:
    return None if re.fullmatch(r"[A-Z]{2}", v) else f"{v!r} is not an ISO 3166 alpha-2 code like \"CA\""


def _one_of(choices: tuple[str, ...]) -> Check:
    return lambda v: None if v in choices else f"{v!r} is not one of {', '.join(choices)}"


def _all_of(choices: tuple[str, ...]) -> Check:
    def check(items: list) -> str | None:
        bad = [i for i in items if i not in choices]
        return f"unknown {', '.join(map(repr, bad))}; allowed: {', '.join(choices)}" if bad else None
    return check


def _topic_word(v: str) -> str | None:
    # '.' too: RabbitMQ's MQTT plugin maps '.' to a topic level, so "C.3" would not be one word there.
    if v and not re.search(r"[/+#.\s]", v):
        return None
    return f"{v!r} must be non-empty without '/', '+', '#', '.' or spaces (a broker may read '.' as a topic level)"


def _node(v: str) -> tuple[str, int] | None:
    """"host:port" or "[v6]:port" -> (host, port), or None when it is neither."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]/]+):(\d{1,5})", v)
    if not m:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return (host, int(port)) if 1 <= int(port) <= 65535 else None


def _hosts(v: list) -> str | None:
    if not v:
        return "must name at least one node as \"host:port\""
    bad = [x for x in v if not isinstance(x, str) or _node(x) is None]
    if bad:
        return f"{', '.join(map(repr, bad))}: each node is \"host:port\" (\"[v6 address]:port\"), port 1 to 65535"
    if len(set(v)) != len(v):
        return "names a node twice"
    return None


def _name(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else f"{v!r} may hold only letters, digits, '_', '.', '-'"


def _antennas(v: list) -> str | None:
    if not v:
        return "must list at least one antenna"
    if any(not isinstance(a, int) or isinstance(a, bool) or not 1 <= a <= 16 for a in v):
        return "antennas are port numbers from 1 to 16"
    return None


def _rate(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be between 0 and 1"


NUM = (int, float)
LANE = {
    "port_code": (str, True, _topic_word),
    "lane_id": (str, True, _topic_word),
    "entering": (str, True, _country),
    "leaving": (str, True, _country),
    "eta_window_h": (NUM, False, _positive),
    "kind": (str, False, _one_of(LANE_KINDS)),
}
STORE = {
    "path": (str, False, None),
    "max_queue_mb": (NUM, False, _positive),
    "retention_days": (NUM, False, _positive),
    "max_message_kb": (int, False, _positive),
}
AGGREGATION = {
    "idle_close_s": (NUM, False, _positive),
    "max_passage_s": (NUM, False, _positive),
    "min_reads": (int, False, _positive),
    "min_rssi": (NUM, False, None),
    "rearm_s": (NUM, False, _positive),
}
REFERRAL = {
    "random_rate": (NUM, False, _rate),
    "refer_on": (list, False, _all_of(FINDING_CODES)),
    "random_rate_trusted": (NUM, False, _rate),
}


def _programme_names(v: list) -> str | None:
    return None if all(isinstance(p, str) and p for p in v) else "must be a list of programme names (strings)"


def _companies(v: dict) -> str | None:
    for country, names in v.items():
        if _country(country):
            return f"{country!r} is not an ISO 3166 alpha-2 code like \"CA\""
        if not isinstance(names, list) or _programme_names(names):
            return f"{country}: must be a list of programme names (strings)"
    return None


PROGRAMS = {
    "drivers": (list, False, _programme_names),
    "companies": (dict, False, _companies),
}
READER = {
    "name": (str, True, _name),
    "dialect": (str, True, None),  # checked against the dialect rules the caller passes
    "url": (str, True, None),
    "baudrate": (int, False, _positive),
    "antennas": (list, False, _antennas),
    "silence_timeout_s": (NUM, False, _positive),
    "region": (str, False, None),  # each dialect's rule knows its regions
    "read_power_dbm": (NUM, False, lambda v: None if 0 <= v <= 33 else "must be between 0 and 33 dBm"),
}
TLS = {"ca": (str, True, None), "cert": (str, False, None), "key": (str, False, None)}
BACKEND = {
    "name": (str, True, _name),
    "country": (str, True, _country),
    "host": (str, False, None),  # required unless hosts: checked in parse()
    "hosts": (list, False, _hosts),
    "port": (int, False, lambda v: None if 1 <= v <= 65535 else "must be a TCP port, 1 to 65535"),
    "topic_prefix": (str, False, _topic_word),
    "mqtt_version": (str, False, _one_of(("5", "3.1.1"))),
    "share": (list, False, _all_of(SHARE_ITEMS)),
    "require_ack": (bool, False, None),
    "ack_timeout_s": (NUM, False, _positive),
    "max_rate": (NUM, False, _non_negative),
    "keepalive_s": (int, False, _positive),
    "tls": (dict, False, None),
    "username": (str, False, None),
    "password_file": (str, False, None),
    "verify_key": (str, False, None),
}
CACHE = {"snapshot_timeout_s": (NUM, False, _positive)}


def _listen(v: str) -> str | None:
    """"" (off) or "host:port"; an IPv6 host goes in brackets: "[::1]:9464"."""
    if v == "":
        return None
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or (":" in host and not (
            host.startswith("[") and host.endswith("]"))) or re.search(r"\s", v):
        return f"{v!r} is not \"host:port\" (e.g. \"127.0.0.1:9464\", \"[::1]:9464\"), nor \"\" (off)"
    return None


METRICS = {"listen": (str, False, _listen)}
TOP = {"lane": dict, "store": dict, "aggregation": dict, "referral": dict, "cache": dict, "programs": dict,
       "metrics": dict, "readers": list, "backends": list}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a table", NUM: "a number"}
