"""`laneagent cache import`: JSON, CBOR, CBOR messages back to back; bad input changes nothing."""

import json

import cbor2

from tests.helpers import backend_toml, cli, lane_toml


def msg(seq, op, *ids, source="CA"):
    return {"v": 1, "type": "cache", "source": source, "seq": seq, "op": op,
            "records": [{"kind": "driver", "id": i, "card_epc": f"E2{int(i[1:]):022X}"} for i in ids]}


def setup(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text(lane_toml(tmp_path / "agent.db", backends=backend_toml("cbsa", "CA", 1883)))
    return config


def test_cbor_stream_json_and_idempotence(tmp_path):
    config = setup(tmp_path)
    stream = tmp_path / "cache.cbors"
    stream.write_bytes(cbor2.dumps(msg(1, "snapshot", "D1")) + cbor2.dumps(msg(2, "upsert", "D2"))
                       + cbor2.dumps([msg(3, "upsert", "D3"), msg(4, "delete", "D1")]))
    code, out, err = cli("--config", str(config), "cache", "import", str(stream), "--json")
    assert code == 0, err
    assert [m["outcome"] for m in json.loads(out)["messages"]] == ["applied"] * 4
    code, out, _ = cli("--config", str(config), "cache", "import", str(stream))
    assert code == 0 and out.count("(already applied)") == 4
    (tmp_path / "us.json").write_text(json.dumps(msg(1, "snapshot", "D9", source="US")))
    assert cli("--config", str(config), "cache", "import", str(tmp_path / "us.json"))[0] == 0
    assert cli("--config", str(config), "lookup", f"E2{2:022X}")[0] == 0
    assert cli("--config", str(config), "lookup", f"E2{1:022X}")[0] == 1
    assert cli("--config", str(config), "lookup", f"E2{9:022X}")[0] == 0


def test_a_bad_message_changes_nothing_itself(tmp_path):
    config = setup(tmp_path)
    bad = tmp_path / "bad.cbors"
    bad.write_bytes(cbor2.dumps(msg(1, "snapshot", "D1")) + cbor2.dumps({**msg(2, "upsert", "D2"), "op": "merge"})
                    + cbor2.dumps(msg(3, "upsert", "D3")))
    code, _, err = cli("--config", str(config), "cache", "import", str(bad))
    assert code == 3 and "message 2" in err and "1 message(s) before it were applied" in err
    assert cli("--config", str(config), "lookup", f"E2{1:022X}")[0] == 0
    assert cli("--config", str(config), "lookup", f"E2{2:022X}")[0] == 1
    assert cli("--config", str(config), "lookup", f"E2{3:022X}")[0] == 1
    (tmp_path / "junk.cbor").write_bytes(b"\xff\xfe\xfd")
    assert cli("--config", str(config), "cache", "import", str(tmp_path / "junk.cbor"))[0] == 3
