"""Prometheus metrics on `metrics.listen` (DESIGN 2.2, 2.7), served by `prometheus_client`.

Nothing is counted twice: a scrape reads the same figures `status` and `B/health` show
(`Figures.health()`: the sessions', links' and alarms' own snapshots and the core's
published copy) and the database through its own read-only connection, at the moment
of the scrape. So the gauges never disagree with `status`, and an idle Prometheus costs
the booth nothing. Counters kept by the daemon's parts (reads, decode failures) start
at 0 with the daemon, as Prometheus expects of a process; the two that describe the
lane's history (events, deliveries) are the database's totals, so they stay monotonic
across restarts. Label values are only names from the configuration (reader, back end,
broker node), codes from our own tables (decode failure, finding, reason, tier, alarm)
and cache sources: never an EPC, a record id or a person's name.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from agent import __version__
from agent.app.alarms import Alarms
from agent.app.figures import Figures
from agent.app.metrics_tally import Buckets, DeliveryLatency, EventTally, code_label
from agent.config import FINDING_CODES, Config
from agent.lane.facilitation import WINDOW_MS, facilitation
from agent.store.reader import StoreReader

log = logging.getLogger(__name__)

SOURCE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# Series exported at 0 from the start (Prometheus's advice: a series that appears only on its
# first increment hides that increment from rate()). Codes seen beyond these are added as they come.
DECODE_CODES = ("bad_checksum", "bad_length", "bad_syntax", "truncated", "bad_tag_crc")
# The core's counters (`status --json` .counters) exported as they are: key -> (name, help).
CORE_COUNTERS = {
    "reads": ("laneagent_reads_journaled_total", "Tag reports journaled by the core since the daemon started."),
    "stray_reads": ("laneagent_stray_reads_total", "Journaled reads no passage used (too few reads or too weak)."),
    "reads_lost": ("laneagent_reads_lost_total", "Reads the store could not keep (accounted for by gap alerts)."),
    "event_failures": ("laneagent_event_failures_total", "Passages whose event could not be built (alarmed)."),
    "items_set_aside": ("laneagent_items_set_aside_total", "Items set aside after failing repeatedly (alarmed)."),
    "store_write_failures": ("laneagent_store_write_failures_total", "Failed writes to the database."),
    "cache_messages": ("laneagent_cache_messages_total", "Cache messages applied from the back ends."),
    "cache_gaps": ("laneagent_cache_gaps_total", "Gaps found in a cache source's seq (a resync follows)."),
}


def _node(host) -> str:
    """A broker node from the configuration (`backends[].hosts`), as "host:port"."""
    return f"{host[0]}:{host[1]}" if isinstance(host, (tuple, list)) else str(host)


def _seconds(ms) -> float:
    return ms / 1000 if isinstance(ms, (int, float)) else 0.0


class LaneCollector(Collector):
    """Builds every laneagent_* family at scrape time; one scrape at a time (its lock)."""

    def __init__(self, cfg: Config, figures: Figures, wall_ms=lambda: int(time.time() * 1000)):
        self.cfg = cfg
        self.figures = figures
        self.wall_ms = wall_ms
        self.backends = [b.name for b in cfg.backends]
        self._lock = threading.Lock()
        with StoreReader(cfg.store.path) as store:
            self.tally = EventTally(after_seq=store.last_event_seq())
            self.latency = DeliveryLatency(self.backends)
            self.latency.prime(store)

    def describe(self):
        return []  # no collect() at registration: that would read the database before start

    def collect(self):
        with self._lock:
            health = self.figures.health()
            families = [self._info(), *self._readers(health), *self._core(health), *self._alarms(health),
                        *self._links(health)]
            try:
                with StoreReader(self.cfg.store.path) as store:
                    families += self._store(store)
                readable = 1
            except Exception as e:  # a scrape must answer even when the database cannot be read
                log.warning("metrics: cannot read the database: %s", e)
                readable = 0
            families.append(GaugeMetricFamily("laneagent_store_readable", "1 when this scrape could read the "
                                              "database (the store figures are missing when 0).", value=readable))
        return families

    # --- the daemon's own figures -------------------------------------------------------------
    def _info(self):
        info = GaugeMetricFamily("laneagent_info", "The lane this agent serves, and its version (always 1).",
                                 labels=["port", "lane", "entering", "leaving", "version"])
        lane = self.cfg.lane
        info.add_metric([lane.port_code, lane.lane_id, lane.entering, lane.leaving, __version__], 1)
        return info

    def _readers(self, health: dict):
        up = GaugeMetricFamily("laneagent_reader_up", "1 when the reader is up (status: state up).", labels=["reader"])
        reads = CounterMetricFamily("laneagent_reader_reads", "Tag reports decoded from the reader since the daemon "
                                    "started (status: reports).", labels=["reader"])
        fails = CounterMetricFamily("laneagent_reader_decode_failures", "Frames the reader's codec rejected, by "
                                    "error code, since the daemon started (status: decode_failures).",
                                    labels=["reader", "code"])
        reconnects = CounterMetricFamily("laneagent_reader_reconnects", "Times the reader came back after being "
                                         "down.", labels=["reader"])
        last = GaugeMetricFamily("laneagent_reader_last_report_timestamp_seconds", "When the reader last reported "
                                 "a tag (Unix time; 0 = never since the daemon started).", labels=["reader"])
        for r in health["readers"]:
            name = r["name"]
            up.add_metric([name], 1 if r.get("state") == "up" else 0)
            reads.add_metric([name], r.get("reports", 0))
            reconnects.add_metric([name], r.get("reconnects", 0))
            last.add_metric([name], _seconds(r.get("last_report_wall_ms")))
            seen = dict.fromkeys(DECODE_CODES, 0)
            for code, n in (r.get("decode_failures") or {}).items():
                seen[code_label(code)] = seen.get(code_label(code), 0) + n
            for code, n in sorted(seen.items()):
                fails.add_metric([name, code], n)
        return [up, reads, fails, reconnects, last]

    def _core(self, health: dict):
        counters = health.get("counters") or {}
        out = [CounterMetricFamily(name, doc, value=counters.get(key, 0)) for key, (name, doc) in CORE_COUNTERS.items()]
        rejected = CounterMetricFamily("laneagent_downlink_rejected", "Downlink messages refused, by reason "
                                       "(status: counters downlink_rejected_*).", labels=["reason"])
        for key, n in sorted(counters.items()):
            if key.startswith("downlink_rejected_"):
                rejected.add_metric([code_label(key[len("downlink_rejected_"):])], n)
        out.append(rejected)
        out.append(GaugeMetricFamily("laneagent_backlog_bytes", "Bytes owed to all back ends together, against "
                                     "store.max_queue_mb (status: disk.backlog_bytes, measured every 10 s).",
                                     value=health.get("backlog_bytes", 0)))
        out.append(GaugeMetricFamily("laneagent_backlog_budget_bytes", "The backlog's disk budget, "
                                     "store.max_queue_mb.", value=int(self.cfg.store.max_queue_mb * 1024 * 1024)))
        return out

    def _alarms(self, health: dict):
        alarms = GaugeMetricFamily("laneagent_alarms_active", "Alarms raised and not cleared, by kind "
                                   "(status: alarms; e.g. reader_down, backend_down, store_unwritable).",
                                   labels=["alarm"])
        kinds: dict[str, int] = {}
        for a in health.get("alarms") or []:
            kind = code_label(str(a.get("alarm", "")).split(":")[0])
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, n in sorted(kinds.items()):
            alarms.add_metric([kind], n)
        total = GaugeMetricFamily("laneagent_alarms", "Alarms active, all kinds together (0 = none).",
                                  value=sum(kinds.values()))
        return [alarms, total]

    def _links(self, health: dict):
        connected = GaugeMetricFamily("laneagent_backend_connected", "1 when the back end's link is connected "
                                      "through this broker node (status: backends[].connected).",
                                      labels=["backend", "node"])
        puback = GaugeMetricFamily("laneagent_backend_last_puback_timestamp_seconds", "When the back end's broker "
                                   "last acknowledged a publish (Unix time; 0 = never since start).",
                                   labels=["backend"])
        configured = {b.name: b for b in self.cfg.backends}
        for link in health["backends"]:
            name = link["name"]
            backend = configured.get(name)
            nodes = [_node(h) for h in getattr(backend, "hosts", None) or ()] or [link.get("broker", "")]
            in_use = link.get("node") or link.get("broker")
            for node in nodes:
                connected.add_metric([name, node], 1 if link.get("connected") and node == in_use else 0)
            puback.add_metric([name], _seconds(link.get("last_puback_ms")))
        return [connected, puback]

    # --- the database -------------------------------------------------------------------------
    def _store(self, store: StoreReader):
        now_ms = self.wall_ms()
        self.tally.update(store)
        self.latency.update(store)
        last_seq, _ = store.chain_head()
        out = [CounterMetricFamily("laneagent_events", "Crossing events committed since the lane's first event: "
                                   "the chain's last seq, from the database (monotonic across restarts).",
                                   value=last_seq)]
        delivered = CounterMetricFamily("laneagent_deliveries", "Crossing events the back end has (PUBACK, or its "
                                        "ack under require_ack), from the database: monotonic across restarts "
                                        "and retention purges.", labels=["backend"])
        for name, n in store.tallies.events_delivered(self.backends).items():
            delivered.add_metric([name], n)
        out.append(delivered)
        out += self._backlog(store, now_ms)
        out += self._facilitation(store, now_ms)
        out += self._cache(store, now_ms)
        out += self._tally()
        return out

    def _backlog(self, store: StoreReader, now_ms: int):
        events = GaugeMetricFamily("laneagent_backlog_events", "Events the back end is still owed (status: "
                                   "backends[].events).", labels=["backend"])
        alerts = GaugeMetricFamily("laneagent_backlog_alerts", "Alerts the back end is still owed.", labels=["backend"])
        oldest = GaugeMetricFamily("laneagent_backlog_oldest_event_age_seconds", "Age of the oldest event the back "
                                   "end is still owed; 0 when it is owed none.", labels=["backend"])
        for name in self.backends:
            b = store.backlog(name, now_ms)
            events.add_metric([name], b["events"])
            alerts.add_metric([name], b["alerts"])
            oldest.add_metric([name], b["oldest_event_age_s"] or 0.0)
        return [events, alerts, oldest]

    def _facilitation(self, store: StoreReader, now_ms: int):
        """DESIGN 2.7: the last hour's passages and time in the read field, as `status` shows them."""
        hour = facilitation(store.crossings_since(now_ms - WINDOW_MS))
        passages = GaugeMetricFamily("laneagent_passages_last_hour", "Crossings committed in the last hour "
                                     "(status: facilitation.passages).", value=hour["passages"])
        field = GaugeMetricFamily("laneagent_time_in_field_last_hour_seconds", "Median and 90th percentile time "
                                  "a truck spent in the read field, first to last read, over the last hour "
                                  "(status: facilitation.field_time_s); absent with no passage.", labels=["quantile"])
        for quantile, key in (("0.5", "median"), ("0.9", "p90")):
            if hour["field_time_s"][key] is not None:
                field.add_metric([quantile], hour["field_time_s"][key])
        trusted = GaugeMetricFamily("laneagent_trusted_share_last_hour", "Share of the last hour's crossings that "
                                    "were trusted (status: facilitation.trusted_share); 0 with no passage.",
                                    value=hour["trusted_share"] or 0.0)
        return [passages, field, trusted]

    def _cache(self, store: StoreReader, now_ms: int):
        records = GaugeMetricFamily("laneagent_cache_records", "Live cache records per source (status: cache[]."
                                    "records).", labels=["source"])
        seq = GaugeMetricFamily("laneagent_cache_seq", "Last cache message seq applied per source.", labels=["source"])
        age = GaugeMetricFamily("laneagent_cache_age_seconds", "Time since the source's cache was last updated.",
                                labels=["source"])
        for c in store.cache_sources():
            source = c["source"] if SOURCE.fullmatch(str(c["source"])) else "other"
            records.add_metric([source], c["records"])
            seq.add_metric([source], c["seq"])
            age.add_metric([source], max(0.0, (now_ms - c["updated_ms"]) / 1000) if c["updated_ms"] else 0.0)
        return [records, seq, age]

    def _tally(self):
        t = self.tally
        passages = CounterMetricFamily("laneagent_passages", "Passages closed into a crossing event since the daemon "
                                       "started, by referral tier (standard, trusted).", labels=["tier"])
        for tier, n in sorted(t.tiers.items()):
            passages.add_metric([tier], n)
        findings = CounterMetricFamily("laneagent_findings", "Findings in the crossing events since the daemon "
                                       "started, by code.", labels=["code"])
        for code, n in sorted({**dict.fromkeys(FINDING_CODES, 0), **t.findings}.items()):
            findings.add_metric([code], n)
        referred = CounterMetricFamily("laneagent_referrals", "Crossings referred since the daemon started, by "
                                       "referral tier (standard, trusted).", labels=["tier"])
        for tier, n in sorted(t.referred.items()):
            referred.add_metric([tier], n)
        reasons = CounterMetricFamily("laneagent_referral_reasons", "Referrals since the daemon started, by reason "
                                      "(a finding code listed in refer_on, or random); a referral with two reasons "
                                      "counts under both.", labels=["reason"])
        known = dict.fromkeys((*self.cfg.referral.refer_on, "random"), 0)
        for reason, n in sorted({**known, **t.referrals}.items()):
            reasons.add_metric([reason], n)
        field = _histogram("laneagent_time_in_field_seconds", "Time a truck spent in the read field, first to last "
                           "read of its passage.", [], [([], t.time_in_field)])
        latency = _histogram("laneagent_delivery_latency_seconds", "Event commit to delivery mark per back end: "
                             "deliveries.delivered_ms - created_ms, read from the database after the fact; the mark "
                             "is made within ~100 ms of the PUBACK (or of the back end's ack under require_ack), "
                             "and a backlog's wait counts.", ["backend"],
                             [([b], self.latency.buckets[b]) for b in self.backends])
        return [passages, findings, referred, reasons, field, latency]


def _histogram(name: str, doc: str, labels: list[str], series: list[tuple[list[str], Buckets]]):
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, b in series:
        family.add_metric(values, b.cumulative(), sum_value=b.sum)
    return family


class MetricsServer:
    """The /metrics endpoint's lifecycle. A port that cannot be bound is an alarm, not a dead
    lane: the readers and links keep working without metrics (failures stay local)."""

    def __init__(self, cfg: Config, figures: Figures, alarms: Alarms):
        self.cfg = cfg
        self.figures = figures
        self.alarms = alarms
        self._server = None

    def start(self) -> None:
        address = self.cfg.metrics.address
        if address is None:
            return
        host, port = address
        registry = CollectorRegistry()
        try:
            registry.register(LaneCollector(self.cfg, self.figures))
            registry.register(ProcessCollector(registry=None))  # CPU and memory of the daemon itself
            self._server, _thread = start_http_server(port, addr=host, registry=registry)
        except Exception as e:
            log.error("metrics: cannot serve on %s: %s", self.cfg.metrics.listen, e)
            self.alarms.raise_("metrics_unavailable", f"cannot serve metrics on {self.cfg.metrics.listen}: {e}")
            return
        log.info("metrics: serving Prometheus metrics on http://%s/metrics", self.cfg.metrics.listen)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
