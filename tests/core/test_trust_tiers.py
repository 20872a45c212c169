"""Tiers through the running core (DESIGN 2.7): the per-tier random rates, `set_random_rate` with a
tier (and its old form), and the facilitation figures `status` shows, from a real SQLite file.
"""

import json
import sqlite3
import time

import pytest

from agent import config
from agent.app.commands import Commands
from agent.app.daemon import Daemon
from agent.core import LaneCore
from agent.core.inbox import SetRandomRate
from agent.handoff import CacheMessage, CommandMessage
from agent.readers.report import TagReport
from agent.store import eventbody
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter
from tests.helpers import cli, lane_toml, wait_for

H = 3600_000


def doc(tmp_path, kind="fast", **referral):
    return {
        "lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US", "kind": kind},
        "store": {"path": str(tmp_path / "agent.db")},
        "aggregation": {"idle_close_s": 0.2, "max_passage_s": 5, "rearm_s": 0.2},
        "referral": {"random_rate": 0.0, "random_rate_trusted": 0.0, "refer_on": [], **referral},
        "programs": {"drivers": ["FAST"], "companies": {"CA": ["PIP"], "US": ["C-TPAT"]}},
        "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1", "share": ["findings", "referral"]}]}


def records(now_ms):
    """Truck 1: FAST driver, PIP carrier, a trusted trader: trusted. Truck 2: the same driver
    on a carrier in C-TPAT only, which CA (entering) does not recognise here: standard."""
    return [
        {"kind": "driver", "id": "D1", "card_epc": "A0001", "status": "valid", "programs": ["FAST"]},
        {"kind": "driver", "id": "D2", "card_epc": "A0002", "status": "valid", "programs": ["FAST"]},
        {"kind": "carrier", "id": "NRTH", "name": "Northline", "programs": ["PIP"]},
        {"kind": "carrier", "id": "USCO", "name": "US Co", "programs": ["C-TPAT"]},
        {"kind": "conveyance", "id": "T1", "transponder_epc": "B0001", "carrier": "NRTH", "status": "valid"},
        {"kind": "conveyance", "id": "T2", "transponder_epc": "B0002", "carrier": "USCO", "status": "valid"},
        {"kind": "trip", "id": "TR1", "carrier": "NRTH", "eta_ms": now_ms + H, "conveyance": "T1",
         "drivers": ["D1"], "equipment": [], "shipments": ["S1"]},
        {"kind": "trip", "id": "TR2", "carrier": "USCO", "eta_ms": now_ms + H, "conveyance": "T2",
         "drivers": ["D2"], "equipment": [], "shipments": ["S2"]},
        {"kind": "shipment", "id": "S1", "trip": "TR1", "importer": "Maple Co", "trusted_trader": True},
        {"kind": "shipment", "id": "S2", "trip": "TR2", "importer": "Eagle Inc", "programs": ["PIP"]},
    ]


class Lane:
    def __init__(self, tmp_path, **referral):
        self.cfg = config.parse(doc(tmp_path, **referral))
        self.path = self.cfg.store.path
        self.writer = StoreWriter(self.path)
        self.core = LaneCore(self.cfg, self.writer)
        self.core.start()
        self.core.submit(CacheMessage("cbsa", {"v": 1, "type": "cache", "source": "CA", "seq": 1, "op": "snapshot",
                                               "records": records(int(time.time() * 1000))}))
        wait_for(lambda: self.seq() == 1, what="the cache snapshot applied")

    def seq(self):
        with StoreReader(self.path) as store:
            return store.cache_seq("CA")

    def truck(self, i):
        now_ms = int(time.time() * 1000)
        n = self.events()
        for k in range(3):  # 0.2 s in the read field
            for epc in (f"A{i:04X}", f"B{i:04X}"):
                self.core.submit_read("booth", TagReport("thingmagic", epc, 1, rssi=-50), time.monotonic(),
                                      now_ms + 100 * k)
        wait_for(lambda: self.events() > n, what="the passage's event committed")
        body = sqlite3.connect(self.path).execute("SELECT body FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0]
        return eventbody.load(body)

    def events(self):
        return sqlite3.connect(self.path).execute("SELECT count(*) FROM events").fetchone()[0]

    def stop(self):
        self.core.stop()
        self.writer.close()


@pytest.fixture
def lane(tmp_path):
    lane = Lane(tmp_path)
    yield lane
    lane.stop()


def test_each_tier_draws_at_its_own_rate_and_a_command_changes_one_tier(lane):
    trusted, standard = lane.truck(1), lane.truck(2)
    assert trusted["referral"] == {"refer": False, "reasons": [], "random": False, "tier": "trusted"}
    assert standard["referral"]["tier"] == "standard"
    assert standard["findings"] == [{"code": "not_fast_eligible", "detail": {
        "drivers": [], "carrier": "USCO", "shipments": [], "trip": True}}]

    commands = Commands(lane.path, lane.core, {}, lambda: {}, lambda: [])
    answer = commands.answer(CommandMessage("cbsa", {"id": "c1", "command": "set_random_rate",
                                                      "args": {"rate": 0.2, "tier": "trusted"}}))
    assert answer == {"random_rate": 0.2, "tier": "trusted", "was": 0.0}
    wait_for(lambda: lane.core.crossings.random_rate_trusted == 0.2, what="the trusted rate changed on the core")
    assert lane.core.random_rate == 0.0  # the standard tier is untouched
    lane.core.submit(SetRandomRate(1.0, "trusted"))  # the core takes any rate; the command bounds it
    wait_for(lambda: lane.core.crossings.random_rate_trusted == 1.0, what="rate 1.0 for the trusted tier")
    assert lane.truck(1)["referral"] == {"refer": True, "reasons": ["random"], "random": True, "tier": "trusted"}
    assert lane.truck(2)["referral"]["refer"] is False

    # the old form sets the standard tier; bounds and unknown tiers are refused
    old = commands.answer(CommandMessage("cbsa", {"id": "c2", "command": "set_random_rate", "args": {"rate": 0.1}}))
    assert old == {"random_rate": 0.1, "tier": "standard", "was": 0.0}
    wait_for(lambda: lane.core.random_rate == 0.1, what="the standard rate changed")
    for bad in ({"rate": 0.5, "tier": "trusted"}, {"rate": 0.1, "tier": "gold"}, {"rate": True}):
        with pytest.raises(ValueError):
            commands.answer(CommandMessage("cbsa", {"id": "c3", "command": "set_random_rate", "args": bad}))
    counters = lane.core.figures()["counters"]
    assert counters["events_trusted"] == 2 and counters["events_standard"] == 2


def test_status_shows_both_rates_and_the_hour_of_facilitation(tmp_path):
    lane = Lane(tmp_path, random_rate=1.0, random_rate_trusted=0.0)
    try:
        lane.truck(1), lane.truck(2), lane.truck(1)
    finally:
        lane.stop()
    toml = lane_toml(tmp_path / "agent.db").replace('entering = "CA"', 'entering = "CA"\nkind = "fast"').replace(
        "random_rate = 0.0", "random_rate = 1.0\nrandom_rate_trusted = 0.0")
    toml += '\n[programs]\ndrivers = ["FAST"]\ncompanies = { CA = ["PIP"], US = ["C-TPAT"] }\n'
    (tmp_path / "agent.toml").write_text(toml)
    code, out, err = cli("--config", str(tmp_path / "agent.toml"), "status", "--json")
    status = json.loads(out)
    assert status["lane"]["kind"] == "fast"
    assert status["random_rate"] == 1.0 and status["random_rate_trusted"] == 0.0
    f = status["facilitation"]
    assert f["passages"] == 3 and f["trusted_share"] == round(2 / 3, 4) and f["window_s"] == 3600
    assert f["tiers"]["trusted"] == {"passages": 2, "referred": 0, "random": 0, "reasons": {}}
    assert f["tiers"]["standard"] == {"passages": 1, "referred": 1, "random": 1, "reasons": {"random": 1}}
    assert f["field_time_s"] == {"median": 0.2, "p90": 0.2}
    code, out, err = cli("--config", str(tmp_path / "agent.toml"), "status")
    assert "FAST lane" in out and "0.0 trusted" in out
    assert "last hour 3 passages" in out and "standard  1 passages, 1 referred (random 1)" in out

    daemon = Daemon(config.load(str(tmp_path / "agent.toml")))  # what B/health carries
    try:
        report = daemon.figures.health_report()
    finally:
        daemon.writer.close()
    assert report["random_rate"] == 1.0 and report["random_rate_trusted"] == 0.0 and report["lane_kind"] == "fast"
    assert report["facilitation"] == f
