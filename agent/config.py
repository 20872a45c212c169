"""The agent's TOML configuration (DESIGN 2.2): a schema that is also the reference.

`load(path, dialects)` returns a frozen `Config` or raises `ConfigError` carrying every
problem found, one line each as `key.path: message`, so a technician fixes them in one
pass. Nothing here touches the database or the serial ports. This is the base layer, so
it knows no reader dialect: the caller passes the dialects' rules as data (`DialectRule`:
a name and a check of a `[[readers]]` table of that dialect); the dialect registry does
that in `agent.readers.registry.load_config(path)`, the entry point everyone uses.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from agent.config_schema import (  # noqa: F401 - re-exported: agent.config is where callers look
    AGGREGATION,
    BACKEND,
    CACHE,
    FINDING_CODES,
    LANE,
    LANE_KINDS,
    METRICS,
    NUM,
    PROGRAMS,
    READER,
    REFERRAL,
    SECTIONS,
    SHARE_ITEMS,
    STORE,
    TLS,
    TOP,
    TYPE_NAMES,
    Check,
    DialectRule,
    _node,
)
from agent.errors import ConfigError

DEFAULT_PATH = "/etc/laneagent/agent.toml"


@dataclass(frozen=True)
class LaneConfig:
    port_code: str
    lane_id: str
    entering: str
    leaving: str
    eta_window_h: float = 12
    kind: str = "general"


DEFAULT_STORE_PATH = "/var/lib/laneagent/agent.db"
RUNTIME_DIR = "/run/laneagent"  # the unit's RuntimeDirectory=


@dataclass(frozen=True)
class StoreConfig:
    path: str = DEFAULT_STORE_PATH
    max_queue_mb: float = 512
    retention_days: float = 7
    max_message_kb: int = 1024


@dataclass(frozen=True)
class AggregationConfig:
    idle_close_s: float = 2.0
    max_passage_s: float = 30.0
    min_reads: int = 2
    min_rssi: float = -75
    rearm_s: float = 30.0  # our addition: a closed passage's tags count again after this long unseen


@dataclass(frozen=True)
class ReferralConfig:
    random_rate: float = 0.02
    refer_on: tuple[str, ...] = ("lookout_hit", "no_trip", "credential_revoked", "driver_not_on_trip")
    random_rate_trusted: float | None = None  # None: the same as random_rate (DESIGN 2.7)

    def __post_init__(self):
        if self.random_rate_trusted is None:
            object.__setattr__(self, "random_rate_trusted", self.random_rate)


@dataclass(frozen=True)
class ProgramsConfig:
    """The trust programmes (DESIGN 2.7): driver programmes, and the company programmes
    each country recognises (mutual recognition: the entering country's list decides)."""

    drivers: tuple[str, ...] = ()
    companies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def recognised(self, country: str) -> frozenset[str]:
        return frozenset(self.companies.get(country, ()))


@dataclass(frozen=True)
class CacheConfig:
    snapshot_timeout_s: float = 900  # a snapshot whose parts stop coming is dropped after this


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = ""  # "host:port" of the Prometheus /metrics endpoint; "" = off

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind, or None when metrics are off; "[::1]:9464" gives ("::1", 9464)."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ReaderConfig:
    name: str
    dialect: str
    url: str
    baudrate: int = 115200
    antennas: tuple[int, ...] = (1,)
    silence_timeout_s: float = 10
    region: str = "NA2"  # our addition: the reader's regulatory region
    read_power_dbm: float = 30.0  # our addition: conducted read power


@dataclass(frozen=True)
class TLSConfig:
    ca: str
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class BackendConfig:
    name: str
    country: str
    host: str
    port: int = 1883
    topic_prefix: str = "border"
    mqtt_version: str = "5"
    share: tuple[str, ...] = ()
    require_ack: bool = False
    ack_timeout_s: float = 60
    max_rate: float = 1000
    keepalive_s: int = 30
    tls: TLSConfig | None = None
    username: str | None = None
    password_file: str | None = None
    verify_key: str | None = None
    hosts: tuple[tuple[str, int], ...] = ()  # the nodes of a broker cluster; () = the one node host:port

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """Every broker node of this back end, in the order they are tried (one-node form included)."""
        return self.hosts or ((self.host, self.port),)


@dataclass(frozen=True)
class Config:
    path: str
    lane: LaneConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    referral: ReferralConfig = field(default_factory=ReferralConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    programs: ProgramsConfig | None = None  # None: nothing is trusted (DESIGN 2.7)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    readers: tuple[ReaderConfig, ...] = ()
    backends: tuple[BackendConfig, ...] = ()

    @property
    def runtime_dir(self) -> str:
        """Where state that only describes the present lives (DESIGN part 3: not on flash):
        systemd's RuntimeDirectory, /run/laneagent, when the store is the unit's state
        directory and it exists; beside the store otherwise (run by hand, tests). The
        daemon and the CLI apply the same rule, so both find the same file. systemd also names
        the unit's runtime directory in $RUNTIME_DIRECTORY; where that is set it wins (a unit
        with a store elsewhere; `RUNTIME_DIRECTORY=... laneagent status` finds its file)."""
        named = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if named:
            return named
        store_dir = os.path.dirname(os.path.abspath(self.store.path))
        if store_dir == os.path.dirname(DEFAULT_STORE_PATH) and os.path.isdir(RUNTIME_DIR):
            return RUNTIME_DIR
        return store_dir

    @property
    def status_path(self) -> str:
        """The file where the running daemon publishes its live state for `status`."""
        return os.path.join(self.runtime_dir, "status.json")

    def base_topic(self, backend: BackendConfig) -> str:
        """`B` of DESIGN 2.3 for one back end."""
        return f"{backend.topic_prefix}/{self.lane.port_code}/{self.lane.lane_id}"


def _check_table(table: Any, schema: dict, where: str, problems: list[str]) -> dict:
    """Validate one table; return the values that passed, to build the dataclass from."""
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return {}
    good: dict = {}
    for key in table:
        if key not in schema:
            problems.append(f"{where}.{key}: unknown key (allowed: {', '.join(schema)})")
    for key, (kind, required, check) in schema.items():
        if key not in table:
            if required:
                problems.append(f"{where}.{key}: missing (required)")
            continue
        value = table[key]
        # bool is an int in Python; a `true` where a number belongs is a mistake.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            problems.append(f"{where}.{key}: must be {TYPE_NAMES.get(kind, kind)}, not {type(value).__name__} {value!r}")
            continue
        if isinstance(value, list) and kind is list and key in ("refer_on", "share"):
            if any(not isinstance(i, str) for i in value):
                problems.append(f"{where}.{key}: must be a list of strings")
                continue
        error = check(value) if check else None
        if error:
            problems.append(f"{where}.{key}: {error}")
            continue
        good[key] = tuple(value) if isinstance(value, list) else value
    return good


def _array(doc: dict, key: str, schema: dict, problems: list[str]) -> list[tuple[str, dict]]:
    items = doc.get(key, [])
    if not isinstance(items, list):
        problems.append(f"{key}: must be an array of tables ([[{key}]])")
        return []
    return [(f"{key}[{i}]", _check_table(item, schema, f"{key}[{i}]", problems)) for i, item in enumerate(items)]


def _check_dialects(readers: list[tuple[str, dict]], dialects, problems: list[str]) -> None:
    rules = {rule.name: rule for rule in dialects or ()}
    for where, item in readers:
        name = item.get("dialect")
        if name is None:
            continue
        if dialects is None:  # never let a name pass unchecked
            problems.append(f"{where}.dialect: {name!r} cannot be checked: the configuration was read without "
                            "the reader dialects (read it with agent.readers.registry.load_config)")
            continue
        rule = rules.get(name)
        if rule is None:
            problems.append(f"{where}.dialect: {name!r} is not one of {', '.join(rules)}")
            continue
        for key, message in rule.check(item):
            problems.append(f"{where}.{key}: {message}")


def _check_nodes(doc: dict, where: str, item: dict, problems: list[str]) -> None:
    """One node (host, port) or a cluster (hosts), never both; hosts become (host, port) pairs and
    host/port the first of them, so code that names one broker names the node tried first."""
    index = int(where[where.index("[") + 1:-1])
    raw = doc["backends"][index] if isinstance(doc["backends"][index], dict) else {}
    if "hosts" in raw:
        both = [k for k in ("host", "port") if k in raw]
        if both:
            problems.append(f"{where}.hosts: give either hosts = [\"host:port\", ...] (a cluster) or host/port "
                            f"(one broker), not both (remove {' and '.join(both)})")
        if "hosts" in item:
            item["hosts"] = tuple(_node(x) for x in item["hosts"])
            item["host"], item["port"] = item["hosts"][0]
    elif "host" not in raw:
        problems.append(f"{where}.host: missing (required, or hosts = [\"host:port\", ...] for a cluster)")


def parse(doc: dict, path: str = "<config>", *, dialects=None) -> Config:
    """Build a Config from a parsed TOML document, or raise ConfigError with every problem.
    `dialects`: the `DialectRule`s of the reader dialects there are; without them a
    document with `[[readers]]` is refused (a dialect name is never taken unchecked)."""
    problems: list[str] = []
    for key in doc:
        if key not in TOP:
            problems.append(f"{key}: unknown section (allowed: {', '.join(TOP)})")
    if "lane" not in doc:
        problems.append("lane: missing section [lane]")
    lane = _check_table(doc.get("lane", {}), LANE, "lane", problems)
    store = _check_table(doc.get("store", {}), STORE, "store", problems)
    aggregation = _check_table(doc.get("aggregation", {}), AGGREGATION, "aggregation", problems)
    referral = _check_table(doc.get("referral", {}), REFERRAL, "referral", problems)
    cache = _check_table(doc.get("cache", {}), CACHE, "cache", problems)
    programs = _check_programs(doc, lane, problems)
    metrics = _check_table(doc.get("metrics", {}), METRICS, "metrics", problems)
    readers = _array(doc, "readers", READER, problems)
    backends = _array(doc, "backends", BACKEND, problems)
    _check_dialects(readers, dialects, problems)

    if lane.get("entering") and lane.get("entering") == lane.get("leaving"):
        problems.append("lane.leaving: must differ from lane.entering")
    if not backends:
        problems.append("backends: at least one [[backends]] table is required")
    for kind, items in (("readers", readers), ("backends", backends)):
        seen: dict[str, str] = {}
        for where, item in items:
            name = item.get("name")
            if name in seen:
                problems.append(f"{where}.name: duplicate name {name!r} (also {seen[name]})")
            elif name:
                seen[name] = where
    countries = {lane.get("entering"), lane.get("leaving")}
    for where, item in backends:
        if "country" in item and None not in countries and item["country"] not in countries:
            problems.append(
                f"{where}.country: {item['country']!r} is neither lane.entering ({lane['entering']}) "
                f"nor lane.leaving ({lane['leaving']})")
        _check_nodes(doc, where, item, problems)
        if "tls" in item:
            tls = _check_table(item["tls"], TLS, f"{where}.tls", problems)
            item["tls"] = TLSConfig(**tls) if "ca" in tls else None
            if ("cert" in tls) != ("key" in tls):
                problems.append(f"{where}.tls: cert and key go together")
    agg_idle, agg_max = aggregation.get("idle_close_s", 2.0), aggregation.get("max_passage_s", 30.0)
    if agg_max <= agg_idle:
        problems.append("aggregation.max_passage_s: must be longer than aggregation.idle_close_s")
    if problems:
        raise ConfigError(path, problems)
    return Config(
        path=path,
        lane=LaneConfig(**lane),
        store=StoreConfig(**store),
        aggregation=AggregationConfig(**aggregation),
        referral=ReferralConfig(**referral),
        cache=CacheConfig(**cache),
        programs=programs,
        metrics=MetricsConfig(**metrics),
        readers=tuple(ReaderConfig(**item) for _, item in readers),
        backends=tuple(BackendConfig(**item) for _, item in backends),
    )


def _check_programs(doc: dict, lane: dict, problems: list[str]) -> ProgramsConfig | None:
    """[programs]: absent means nothing is trusted; a FAST lane cannot work without it, and
    a table that recognises no company programme for the entering country could never
    trust a carrier (say `CA = []` to mean that on purpose)."""
    if "programs" not in doc:
        if lane.get("kind") == "fast":
            problems.append("lane.kind: \"fast\" needs a [programs] table (DESIGN 2.7): without it no crossing "
                            "is trusted and every truck would be not_fast_eligible")
        return None
    table = _check_table(doc["programs"], PROGRAMS, "programs", problems)
    companies = {c: tuple(names) for c, names in table.get("companies", {}).items()}
    entering = lane.get("entering")
    if entering and not any(p.startswith("programs.companies") for p in problems) and entering not in companies:
        problems.append(f"programs.companies: names no programmes for lane.entering ({entering}), so no carrier "
                        f"could ever be trusted; write {entering} = [] if that is meant")
    return ProgramsConfig(drivers=tuple(table.get("drivers", ())), companies=companies)


def default_path() -> str:
    return os.environ.get("LANEAGENT_CONFIG") or DEFAULT_PATH


def load(path: str | None = None, *, dialects=None) -> Config:
    """Read and validate a config file; ConfigError says what is wrong and where. `dialects`:
    see `parse`; `agent.readers.registry.load_config(path)` passes the registry's."""
    path = path or default_path()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, ["file not found (copy config/agent.example.toml there, or pass --config PATH)"])
    except PermissionError:
        raise ConfigError(path, ["permission denied (run as the laneagent user, or with sudo)"])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"not valid TOML: {e}"])
    return parse(doc, path, dialects=dialects)
