"""A real scrape: the daemon as a process with `metrics.listen` on a free port, a reader
simulator driving two trucks through the lane, two real brokers; /metrics read over HTTP
and parsed with prometheus_client's own parser, checked against `status --json`; the
labels stay bounded; the database's counters survive a restart; and, when Debian's
`prometheus` server is installed, a real Prometheus scrapes the daemon and answers a query.
"""

import json
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.mosquitto import free_port
from tests.helpers import ROOT, cli, wait_for
from tests.lane_harness import Agent, ReaderSim, cache_snapshot, truck_pass, write_config

DRIVER1, DRIVER2 = "E2000000000000000000D001", "E2000000000000000000D002"
TRUCK1, TRUCK_SHADY = "E2000000000000000000C001", "E2000000000000000000C002"
LABELS = {"reader", "code", "backend", "node", "reason", "tier", "source", "alarm",
          "port", "lane", "entering", "leaving", "version", "le", "quantile"}
# What must never appear in a label: the EPCs, the record ids and the names the lane handled.
SECRETS = [DRIVER1, DRIVER2, TRUCK1, TRUCK_SHADY, "DRV-", "TRK-", "TRIP-", "SHP-", "LK-", "Alex", "Sam Roy",
           "NORTHLINE", "SHADY", "Maple", "1XKAD"]


def scrape_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def samples(text: str) -> dict:
    """{(sample name, sorted labels): value} from prometheus_client's parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(got: dict, name: str, **labels) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


class Lane:
    def __init__(self, tmp, ca, us):
        self.tmp, self.ca, self.us = tmp, ca, us
        self.port = free_port()
        self.sim = ReaderSim(tmp, [truck_pass(1.0, DRIVER1, TRUCK1, label="clean"),
                                   truck_pass(5.0, DRIVER2, TRUCK_SHADY, label="lookout")])
        self.config = write_config(tmp, self.sim.path, ca.port, us.port)
        self.config.write_text(self.config.read_text() + f'\n[metrics]\nlisten = "127.0.0.1:{self.port}"\n')
        (tmp / "cache.json").write_text(json.dumps(cache_snapshot()))
        code, _, err = cli("--config", str(self.config), "cache", "import", str(tmp / "cache.json"))
        assert code == 0, err
        self.agent = Agent(tmp, self.config).start()

    def scrape(self) -> dict:
        return samples(scrape_text(self.port))

    def try_scrape(self) -> dict | None:
        try:
            return self.scrape()
        except OSError:
            return None

    def status(self) -> dict:
        code, out, _ = cli("--config", str(self.config), "status", "--json")
        return json.loads(out)


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    from simulators.mosquitto import Mosquitto

    tmp = tmp_path_factory.mktemp("metrics")
    ca, us = Mosquitto(tmp / "ca").start(), Mosquitto(tmp / "us").start()
    lane = Lane(tmp, ca, us)
    try:
        def both_delivered():
            got = lane.try_scrape()
            return got and value(got, "laneagent_events_total") == 2 and all(
                value(got, "laneagent_deliveries_total", backend=b) == 2 for b in ("cbsa", "cbp"))
        wait_for(both_delivered, 60, "two events delivered to both back ends, seen on /metrics")
        yield lane
    finally:
        lane.agent.stop()
        lane.sim.stop()
        ca.stop()
        us.stop()


def disagreements(got: dict, doc: dict) -> list[str]:
    """Where /metrics and `status --json` differ (empty when they agree)."""
    want = {("laneagent_events_total", ()): doc["chain"]["last_seq"],
            ("laneagent_reads_journaled_total", ()): doc["counters"].get("reads", 0),
            ("laneagent_alarms", ()): len(doc["alarms"])}
    for r in doc["readers"]:
        want[("laneagent_reader_up", (("reader", r["name"]),))] = 1 if r["state"] == "up" else 0
        want[("laneagent_reader_reads_total", (("reader", r["name"]),))] = r["reports"]
    for b in doc["backends"]:
        key = (("backend", b["name"]),)
        want[("laneagent_backend_connected", (("backend", b["name"]), ("node", b["broker"])))] = int(b["connected"])
        want[("laneagent_backlog_events", key)] = b["events"]
        want[("laneagent_backlog_alerts", key)] = b["alerts"]
    for c in doc["cache"]:
        want[("laneagent_cache_records", (("source", c["source"]),))] = c["records"]
        want[("laneagent_cache_seq", (("source", c["source"]),))] = c["seq"]
    out = [f"{k}: metrics {got.get(k)} != status {v}" for k, v in want.items() if got.get(k) != v]
    passages = sum(v for (name, _), v in got.items() if name == "laneagent_passages_total")
    if passages != doc["counters"].get("events", 0):
        out.append(f"passages {passages} != status counters.events {doc['counters'].get('events')}")
    referrals = sum(v for (name, _), v in got.items() if name == "laneagent_referrals_total")
    if referrals != doc["counters"].get("referrals", 0):
        out.append(f"referrals {referrals} != status counters.referrals {doc['counters'].get('referrals')}")
    return out


def test_a_real_scrape_agrees_with_status(lane):
    # The status file is rewritten every second and a scrape reads live: wait until both have settled.
    last = {}

    def agree():
        last["got"], last["doc"] = lane.scrape(), lane.status()
        last["differ"] = disagreements(last["got"], last["doc"])
        return not last["differ"]
    try:
        wait_for(agree, 15, "the scrape and status --json to agree")
    except AssertionError as e:
        raise AssertionError(f"{e}: {last['differ']}") from None
    got, doc = last["got"], last["doc"]
    assert doc["chain"]["last_seq"] == 2 and value(got, "laneagent_reader_up", reader="booth") == 1
    assert value(got, "laneagent_reader_reads_total", reader="booth") > 0
    assert value(got, "laneagent_findings_total", code="lookout_hit") == 1
    assert value(got, "laneagent_referral_reasons_total", reason="lookout_hit") == 1
    assert value(got, "laneagent_passages_total", tier="standard") + (
        value(got, "laneagent_passages_total", tier="trusted") or 0) == 2
    assert value(got, "laneagent_time_in_field_seconds_count") == 2
    assert 0 < value(got, "laneagent_time_in_field_seconds_sum") < 20
    for b in ("cbsa", "cbp"):
        assert value(got, "laneagent_delivery_latency_seconds_count", backend=b) == 2
        assert value(got, "laneagent_delivery_latency_seconds_bucket", backend=b, le="+Inf") == 2
        assert value(got, "laneagent_backlog_oldest_event_age_seconds", backend=b) == 0
        assert value(got, "laneagent_backend_connected", backend=b,
                     node=f"127.0.0.1:{lane.ca.port if b == 'cbsa' else lane.us.port}") == 1
    assert value(got, "laneagent_cache_records", source="CA") == 7
    assert 0 <= value(got, "laneagent_cache_age_seconds", source="CA") < 120
    assert value(got, "laneagent_info", port="0901", lane="C3", entering="CA", leaving="US",
                 version=next(k for k in got if k[0] == "laneagent_info")[1][-1][1]) == 1
    assert value(got, "laneagent_store_readable") == 1
    hour = doc["facilitation"]  # DESIGN 2.7: status, health and the metrics carry the same hour
    assert value(got, "laneagent_passages_last_hour") == hour["passages"] == 2
    assert value(got, "laneagent_time_in_field_last_hour_seconds", quantile="0.5") == hour["field_time_s"]["median"]
    assert value(got, "laneagent_time_in_field_last_hour_seconds", quantile="0.9") == hour["field_time_s"]["p90"]
    assert value(got, "laneagent_trusted_share_last_hour") == (hour["trusted_share"] or 0)


def test_the_exposition_follows_prometheus_conventions(lane):
    families = list(text_string_to_metric_families(scrape_text(lane.port)))
    ours = [f for f in families if f.name.startswith("laneagent_")]
    assert len(ours) >= 30 and all(f.name.startswith(("laneagent_", "process_")) for f in families)
    for f in ours:
        assert f.documentation, f.name
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
        if f.type == "histogram":
            assert f.name.endswith("_seconds") and any(s.name.endswith("_bucket") for s in f.samples)
        assert not re.search(r"_(ms|milliseconds|minutes|hours|kb|mb)(_|$)", f.name), f"base units only: {f.name}"


def test_label_values_are_bounded_and_never_data(lane):
    text = scrape_text(lane.port)
    got = samples(text)
    for secret in SECRETS:
        assert secret not in text, secret
    allowed = {"reader": {"booth"}, "backend": {"cbsa", "cbp"}, "source": {"CA", "US"},
               "node": {f"127.0.0.1:{lane.ca.port}", f"127.0.0.1:{lane.us.port}"}, "tier": {"standard", "trusted"},
               "quantile": {"0.5", "0.9"}}
    per_label: dict[str, set] = {}
    for name, labels in got:
        for label, v in labels:
            assert label in LABELS, (name, label)
            per_label.setdefault(label, set()).add(v)
            if label in allowed:
                assert v in allowed[label], (name, label, v)
            elif label in ("code", "reason", "alarm"):
                assert re.fullmatch(r"[a-z0-9_]{1,40}", v), (name, label, v)
    # Every series the lane can have is there already: 2 events make no more series than the
    # codes a lane has, whatever the number of tags, trucks or records.
    assert len(got) < 400, len(got)
    assert per_label["reader"] == {"booth"} and per_label["backend"] == {"cbsa", "cbp"}


def test_counters_stay_monotonic_across_a_restart(lane):
    before = lane.scrape()
    lane.agent.kill(signal.SIGKILL)  # a power cut: nothing is saved on the way out
    lane.agent = Agent(lane.tmp, lane.config).start()
    after = wait_for(lane.try_scrape, 30, "the restarted daemon's /metrics")
    for key in [("laneagent_events_total", ()), ("laneagent_deliveries_total", (("backend", "cbsa"),)),
                ("laneagent_deliveries_total", (("backend", "cbp"),))]:
        assert after[key] >= before[key] == 2, key
    # Counters of the daemon's own life start again at 0, which Prometheus's rate() expects.
    assert value(after, "laneagent_passages_total", tier="standard") == 0
    assert value(after, "laneagent_delivery_latency_seconds_count", backend="cbsa") == 0


@pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian's prometheus server is not installed "
                    "(apt-get install prometheus; `make test-metrics` installs it)")
def test_a_real_prometheus_scrapes_the_daemon(lane, tmp_path):
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: laneagent
    static_configs:
      - targets: ["127.0.0.1:{lane.port}"]
""")
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=log, cwd=ROOT)
    try:
        def query():
            url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode(
                {"query": 'laneagent_deliveries_total{backend="cbsa"}'})
            try:
                doc = json.loads(urllib.request.urlopen(url, timeout=2).read())
            except OSError:
                return None
            result = doc.get("data", {}).get("result") or []
            return result and float(result[0]["value"][1])
        assert wait_for(query, 60, "Prometheus to scrape the daemon") >= 2, (tmp_path / "prometheus.log").read_text()
    finally:
        proc.terminate()
        proc.wait(20)
