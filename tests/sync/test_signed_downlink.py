"""Signed downlink and commands, against the agent process and a real broker.

Messages are signed with pycose (an independent COSE implementation); the agent must
apply what is signed with the configured key and refuse everything else.
"""

import json
import signal

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from tests.helpers import backend_toml, cli, lane_toml, wait_for
from tests.lane_harness import Agent
from tests.mqtt_probe import Probe


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def signed(key: Ed25519PrivateKey, doc: dict) -> bytes:
    msg = Sign1Message(phdr={Algorithm: EdDSA}, payload=cbor2.dumps(doc))
    msg.key = OKPKey(crv=Ed25519, d=raw_private(key))
    return msg.encode()


def snapshot(seq, *ids):
    return {"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": "snapshot",
            "records": [{"kind": "driver", "id": i, "card_epc": "E2000000000000000000D0" + i[-2:]} for i in ids]}


def command(seq, name, **args):
    return {"v": 1, "type": "cmd", "id": f"cmd-{seq}", "seq": seq, "command": name, "args": args}


@pytest.fixture
def signed_lane(tmp_path, broker):
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "cbsa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db",
                                backends=backend_toml("cbsa", "CA", broker.port, extra=f'verify_key = "{pub}"')))
    probe = Probe(broker, ["border/0901/C3/#"])
    agent = Agent(tmp_path, config).start()
    assert probe.wait("/status", 1, timeout=15), agent.log_text()
    yield key, probe, agent, config
    agent.stop()
    probe.close()


def status(config) -> dict:
    code, out, err = cli("--config", str(config), "status", "--json")
    return json.loads(out)


def alarm_causes(probe):
    return [a["detail"]["cause"] for a in probe.on("/alerts") if a["detail"].get("reason") == "downlink_rejected"]


def test_only_messages_signed_with_the_key_change_anything(signed_lane):
    key, probe, agent, config = signed_lane
    probe.publish("border/0901/cache", cbor2.dumps(snapshot(1, "D01")))  # unsigned
    probe.publish("border/0901/cache", signed(Ed25519PrivateKey.generate(), snapshot(1, "D01")))  # wrong key
    probe.publish("border/0901/cache", signed(key, snapshot(1, "D02")))
    probe.publish("border/0901/cache", signed(key, snapshot(1, "D02")))  # replayed
    probe.wait("/alerts", 3)
    assert sorted(alarm_causes(probe)) == ["bad_signature", "replay", "unsigned"]
    code, out, _ = cli("--config", str(config), "lookup", "E2000000000000000000D002", "--json")
    assert code == 0 and json.loads(out)["records"][0]["record"]["id"] == "D02"
    assert cli("--config", str(config), "lookup", "E2000000000000000000D001")[0] == 1
    # The status file is rewritten every second: wait until it shows the three refusals.
    counters = wait_for(lambda: (c := status(config)["counters"]).get("downlink_rejected") == 3 and c,
                        what="the refusals in the status file")
    assert counters["downlink_rejected"] == 3 and counters["downlink_rejected_replay"] == 1


def test_signed_commands_answered_replays_and_unknown_refused(signed_lane):
    key, probe, agent, config = signed_lane
    probe.publish("border/0901/C3/cmd", signed(key, command(1, "ping")))
    probe.publish("border/0901/C3/cmd", signed(key, command(1, "ping")))  # replay
    probe.publish("border/0901/C3/cmd", signed(key, command(2, "set_random_rate", rate=0.5)))
    probe.publish("border/0901/C3/cmd", signed(key, command(3, "set_random_rate", rate=0.1)))
    probe.publish("border/0901/C3/cmd", signed(key, command(4, "format_disk")))
    probe.publish("border/0901/C3/cmd", cbor2.dumps(command(5, "ping")))  # unsigned
    results = {r["id"]: r for r in probe.wait("/cmd/result", 4)}
    assert results["cmd-1"]["ok"] and results["cmd-1"]["result"]["pong"] is True
    assert not results["cmd-2"]["ok"] and "between 0 and 0.2" in results["cmd-2"]["error"]
    assert results["cmd-3"]["ok"] and results["cmd-3"]["result"]["random_rate"] == 0.1
    assert not results["cmd-4"]["ok"] and "unknown command" in results["cmd-4"]["error"]
    assert "cmd-5" not in results
    assert sorted(alarm_causes(probe.wait("/alerts", 2) and probe)) == ["replay", "unsigned"]
    wait_for(lambda: status(config)["random_rate"] == 0.1, what="the new random rate in the status file")
    assert status(config)["random_rate"] == 0.1
    assert agent.kill(signal.SIGTERM) == 0


def test_unreadable_verify_key_refuses_to_start(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db",
                                backends=backend_toml("cbsa", "CA", 1, extra=f'verify_key = "{tmp_path}/none.pub"')))
    agent = Agent(tmp_path, config).start()
    assert agent.proc.wait(20) == 2
    assert f"backends[0].verify_key: cannot read {tmp_path}/none.pub (missing)" in agent.log_text()
    assert not (tmp_path / "state").exists()


def test_private_key_readable_by_others_refuses_to_start(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret")
    secret.chmod(0o644)
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml(
        "cbsa", "CA", 1, extra=f'username = "lane"\npassword_file = "{secret}"')))
    agent = Agent(tmp_path, config).start()
    assert agent.proc.wait(20) == 2
    assert f"is readable by others (mode 644); run: chmod 600 {secret}" in agent.log_text()
