"""SIGKILL of the agent process in the middle of a multi-part snapshot (issue 11).

Real broker, real agent process, real SIGKILL. While parts 1-2 of 3 are staged,
`laneagent lookup` shows the old records only; after the kill and a restart, the staged
parts are dropped, the old cache is complete, and the agent asks its back end for a
resync with have_seq = the last message fully applied.
"""

import json
import signal

import cbor2

from tests.helpers import backend_toml, cli, lane_toml, wait_for
from tests.lane_harness import Agent
from tests.mqtt_probe import Probe

CARD = "E2000000000000000000D{:03X}"


def drivers(tag, ns):
    return [{"kind": "driver", "id": f"{tag}-{n}", "card_epc": CARD.format(n), "status": "valid"} for n in ns]


def message(seq, records, part=None, parts=None):
    msg = {"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": "snapshot", "records": records}
    if parts:
        msg.update(part=part, parts=parts)
    return cbor2.dumps(msg)


def lookup(config, n):
    code, out, _ = cli("--config", str(config), "lookup", CARD.format(n), "--json")
    return [r["record"]["id"] for r in json.loads(out)["records"]] if code == 0 else []


def staged_parts(config):
    code, out, _ = cli("--config", str(config), "status", "--json")
    doc = json.loads(out) if out.strip() else {}
    return doc.get("cache_feed", {}).get("staging", {}).get("CA", {}).get("parts_received")


def test_sigkill_mid_snapshot_keeps_the_old_cache_and_asks_again(tmp_path, broker_factory):
    broker = broker_factory("ca")
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml("cbsa", "CA", broker.port)))
    probe = Probe(broker, ["border/0901/C3/status", "border/0901/C3/requests"]).wait_subscribed()
    agent = Agent(tmp_path, config).start()
    try:
        wait_for(lambda: probe.on("/status"), what=f"the agent's birth\n{agent.log_text()}")
        probe.publish("border/0901/cache", message(1, drivers("old", [1, 2])))
        wait_for(lambda: lookup(config, 1) == ["old-1"], what="the first snapshot")
        probe.publish("border/0901/cache", message(2, drivers("new", [1]), 1, 3))
        probe.publish("border/0901/cache", message(3, drivers("new", [2]), 2, 3))
        wait_for(lambda: staged_parts(config) == 2, what="parts 1-2 of 3 staged")
        assert lookup(config, 1) == ["old-1"] and lookup(config, 2) == ["old-2"]  # never a staged record
        assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
        agent.start()
        requests = wait_for(lambda: probe.on("/requests"), what=f"the resync request\n{agent.log_text()}")
        assert requests[0] == {"v": 1, "type": "resync", "source": "CA", "have_seq": 1}
        assert lookup(config, 1) == ["old-1"] and lookup(config, 2) == ["old-2"]
        assert "dropped after 2 of 3 parts (restart)" in agent.log_text()
    finally:
        agent.stop()
        probe.close()
