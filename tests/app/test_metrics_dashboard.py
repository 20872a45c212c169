"""The Grafana dashboard and the Prometheus examples name only metrics the daemon exports,
and the alert rules pass `promtool` (syntax, and unit tests that each alert fires when it
should) when Debian's `prometheus` package is installed."""

import json
import re
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.app.metrics import LaneCollector
from agent.config import parse
from agent.store.writer import StoreWriter
from tests.app.test_metrics_units import LANE, FakeFigures
from tests.helpers import ROOT

DASHBOARD = ROOT / "config" / "grafana" / "laneagent.json"
PROM = ROOT / "config" / "prometheus"
METRIC = re.compile(r"\blaneagent_[a-z0-9_]+")
NO_PROMTOOL = "Debian's prometheus package (promtool) is not installed: apt-get install prometheus, or make test-metrics"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every family and sample name a daemon exports, from the collector itself."""
    path = tmp_path_factory.mktemp("dash") / "agent.db"
    StoreWriter(str(path)).close()
    registry = CollectorRegistry()
    registry.register(LaneCollector(parse({**LANE, "store": {"path": str(path)}}), FakeFigures()))
    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count")
                     if family.type in ("counter", "histogram"))
    return names


def panels(doc):
    for p in doc["panels"]:
        yield p
        yield from p.get("panels", [])


def test_the_dashboard_loads_and_names_only_exported_metrics(exported):
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 30
    used = set()
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for p in panels(doc):
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = METRIC.findall(t["expr"])
            assert names, (p["title"], t["expr"])
            unknown = [n for n in names if n not in exported]
            assert not unknown, (p["title"], unknown)
            used.update(names)
    # What the issue asks the dashboard to show.
    for needed in ("laneagent_reader_up", "laneagent_reader_reads_total", "laneagent_reader_decode_failures_total",
                   "laneagent_passages_total", "laneagent_time_in_field_seconds_bucket", "laneagent_findings_total",
                   "laneagent_referrals_total", "laneagent_backlog_events", "laneagent_backlog_oldest_event_age_seconds",
                   "laneagent_delivery_latency_seconds_bucket", "laneagent_cache_age_seconds", "laneagent_alarms_active"):
        assert needed in used, needed


def test_the_alert_rules_name_only_exported_metrics(exported):
    text = (PROM / "laneagent-rules.yml").read_text()
    exprs = re.findall(r"^\s*expr:\s*(.+)$", text, re.M)
    assert len(exprs) == 5
    names = {n for e in exprs for n in METRIC.findall(e)}
    assert names == {"laneagent_reader_up", "laneagent_backlog_oldest_event_age_seconds",
                     "laneagent_cache_age_seconds", "laneagent_alarms_active"}
    assert names <= exported


@pytest.mark.skipif(not shutil.which("promtool"), reason=NO_PROMTOOL)
@pytest.mark.parametrize("args", [("check", "rules", "laneagent-rules.yml"), ("check", "config", "prometheus.yml"),
                                  ("test", "rules", "laneagent-rules.test.yml")], ids=" ".join)
def test_promtool(args):
    done = subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
