"""The config loader: every class of error reported at once as FILE: key.path: message."""

import pytest

from agent.readers.registry import load_config
from agent.errors import ConfigError
from tests.helpers import ROOT, backend_toml, lane_toml, run_agent


def problems_of(text: str, tmp_path) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert str(e.value).startswith(str(path) + ": ")
    return e.value.problems


def test_example_config_is_valid():
    cfg = load_config(str(ROOT / "config" / "agent.example.toml"))
    assert cfg.lane.entering == "CA" and [b.name for b in cfg.backends] == ["cbsa", "cbp"]
    assert cfg.readers[0].antennas == (1, 2)
    assert cfg.base_topic(cfg.backends[0]) == "border/0901/C3"


def test_defaults_fill_in(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(lane_toml(tmp_path / "db", backends=backend_toml("cbsa", "CA", 1883)))
    cfg = load_config(str(path))
    assert cfg.store.retention_days == 7 and cfg.backends[0].mqtt_version == "5"
    assert cfg.referral.refer_on == ("lookout_hit", "no_trip", "credential_revoked", "driver_not_on_trip")


def test_unknown_keys_and_sections(tmp_path):
    text = lane_toml(tmp_path / "db").replace("[referral]", "[referral]\nrandom_ratio = 0.1") + "\n[extra]\nx = 1\n"
    found = problems_of(text, tmp_path)
    assert any(p.startswith("referral.random_ratio: unknown key") for p in found)
    assert any(p.startswith("extra: unknown section") for p in found)


def test_wrong_types_all_reported_at_once(tmp_path):
    text = lane_toml(tmp_path / "db").replace("min_reads = 2", 'min_reads = "two"').replace(
        "idle_close_s = 1.0", "idle_close_s = true").replace("port = 1883", 'port = "1883"')
    found = problems_of(text, tmp_path)
    assert any(p.startswith("aggregation.min_reads: must be an integer") for p in found)
    assert any(p.startswith("aggregation.idle_close_s: must be a number") for p in found)
    assert any(p.startswith("backends[0].port: must be an integer") for p in found)
    assert len(found) >= 3


def test_backend_country_must_be_entering_or_leaving(tmp_path):
    text = lane_toml(tmp_path / "db", backends=backend_toml("a", "CA", 1) + backend_toml("b", "MX", 2))
    assert problems_of(text, tmp_path) == [
        "backends[1].country: 'MX' is neither lane.entering (CA) nor lane.leaving (US)"]


def test_duplicate_names(tmp_path):
    text = lane_toml(tmp_path / "db", backends=backend_toml("a", "CA", 1) + backend_toml("a", "US", 2))
    assert problems_of(text, tmp_path) == ["backends[1].name: duplicate name 'a' (also backends[0])"]


def test_missing_required_and_bad_values(tmp_path):
    text = """
[lane]
port_code = "0901"
entering = "Canada"
leaving = "US"

[[readers]]
name = "booth"
dialect = "impinj"
url = "/dev/ttyUSB0"
antennas = []
"""
    found = problems_of(text, tmp_path)
    assert "lane.lane_id: missing (required)" in found
    assert any(p.startswith("lane.entering: 'Canada' is not an ISO 3166") for p in found)
    assert any(p.startswith("readers[0].dialect: 'impinj' is not one of thingmagic") for p in found)
    assert "readers[0].antennas: must list at least one antenna" in found
    assert "backends: at least one [[backends]] table is required" in found


def test_share_and_refer_on_values(tmp_path):
    text = lane_toml(tmp_path / "db", backends=backend_toml("a", "CA", 1, share='["tags", "passport"]')).replace(
        'random_rate = 0.0', 'random_rate = 0.0\nrefer_on = ["no_trip", "bad_luck"]')
    found = problems_of(text, tmp_path)
    assert any(p.startswith("backends[0].share: unknown 'passport'") for p in found)
    assert any(p.startswith("referral.refer_on: unknown 'bad_luck'") for p in found)


def test_not_toml_and_missing_file(tmp_path):
    assert problems_of("[lane\nport_code=", tmp_path)[0].startswith("not valid TOML")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "absent.toml"))
    assert "file not found" in e.value.problems[0]


def test_daemon_refuses_bad_config_without_touching_the_database(tmp_path):
    store = tmp_path / "state" / "agent.db"
    path = tmp_path / "agent.toml"
    path.write_text(lane_toml(store).replace('lane_id = "C3"', 'lane_id = 3'))
    result = run_agent(path)
    assert result.returncode == 2
    assert f"{path}: lane.lane_id: must be a string" in result.stderr
    assert not store.parent.exists()


def test_the_status_file_lives_in_the_runtime_directory_of_the_unit(tmp_path, monkeypatch):
    """DESIGN part 3: state that only describes the present is not on flash. The unit's
    store gets /run/laneagent (RuntimeDirectory=) when it exists; any other store, or no
    runtime directory, keeps the status file beside the store (run by hand, tests);
    $RUNTIME_DIRECTORY, where systemd set it, names the directory outright."""
    from agent import config as config_mod

    state, run = tmp_path / "var-lib-laneagent", tmp_path / "run-laneagent"
    state.mkdir()
    monkeypatch.setattr(config_mod, "DEFAULT_STORE_PATH", str(state / "agent.db"))
    monkeypatch.setattr(config_mod, "RUNTIME_DIR", str(run))
    doc = {"lane": {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"},
           "backends": [{"name": "cbsa", "country": "CA", "host": "127.0.0.1"}]}
    unit = config_mod.parse({**doc, "store": {"path": str(state / "agent.db")}})
    assert unit.status_path == str(state / "status.json")  # no runtime directory: beside the store
    run.mkdir()
    assert unit.status_path == str(run / "status.json")
    by_hand = config_mod.parse({**doc, "store": {"path": str(tmp_path / "elsewhere" / "agent.db")}})
    assert by_hand.status_path == str(tmp_path / "elsewhere" / "status.json")
    # systemd names the unit's runtime directory in the environment; it wins where set
    monkeypatch.setenv("RUNTIME_DIRECTORY", f"{tmp_path / 'named'}:{tmp_path / 'second'}")
    assert by_hand.status_path == str(tmp_path / "named" / "status.json")
    assert unit.status_path == str(tmp_path / "named" / "status.json")
