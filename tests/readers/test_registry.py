"""The registry is the dialect: one entry holds codec, session, probe query, ports, regions
and the checks of a `[[readers]]` table; agent.config takes those checks as data."""

from __future__ import annotations

import pytest

from agent import config
from agent.errors import ConfigError
from agent.readers import probe, registry
from tests.helpers import lane_toml


def _reader(name: str, dialect: str, extra: str = "") -> str:
    return f'\n[[readers]]\nname = "{name}"\ndialect = "{dialect}"\nurl = "loop://"\n{extra}\n'


def problems_of(tmp_path, readers: str) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(lane_toml(tmp_path / "db", readers=readers))
    with pytest.raises(ConfigError) as e:
        registry.load_config(str(path))
    assert str(e.value).startswith(f"{path}: ")
    return e.value.problems


def test_every_entry_is_complete():
    for name, d in registry.DIALECTS.items():
        assert d.name == name and d.session.dialect == name and d.probe.request and d.ports >= 1
        assert d.decode(b"", final=True) == ([], b"") and d.decode_host(b"", final=True) == ([], b"")
    assert registry.names() == ("thingmagic", "r2000", "alien", "chafon")
    assert probe.ORDER == registry.probe_order() == ("thingmagic", "r2000", "chafon", "alien")
    assert [q.request for q in probe.QUERIES.values()] == [d.probe.request for d in registry.DIALECTS.values()]


def test_each_dialect_checks_its_own_reader_keys_all_at_once(tmp_path):
    readers = (_reader("a", "thingmagic", 'region = "MARS"')
               + _reader("b", "r2000", "antennas = [1, 5]")
               + _reader("c", "chafon", 'region = "EU"')
               + _reader("d", "alien", "antennas = [8]")
               + _reader("e", "impinj"))
    assert problems_of(tmp_path, readers) == [
        "readers[0].region: 'MARS' is not one of NA, EU, KR, IN, JP, PRC, EU3, AU, NZ, NA2, NA3, OPEN",
        "readers[1].antennas: [5]: a r2000 reader has ports 1-4",
        "readers[2].region: a chafon reader keeps the region set with the vendor's tool; "
        "laneagent does not set it: remove the key",
        "readers[4].dialect: 'impinj' is not one of thingmagic, r2000, alien, chafon",
    ]


def test_valid_readers_of_every_dialect(tmp_path):
    path = tmp_path / "agent.toml"
    readers = _reader("a", "thingmagic", 'region = "EU3"\nantennas = [1, 16]') + _reader("b", "r2000") + _reader(
        "c", "chafon", "antennas = [4]") + _reader("d", "alien", "antennas = [1, 8]")
    path.write_text(lane_toml(tmp_path / "db", readers=readers))
    cfg = registry.load_config(str(path))
    assert [(r.dialect, r.antennas) for r in cfg.readers] == [
        ("thingmagic", (1, 16)), ("r2000", (1,)), ("chafon", (4,)), ("alien", (1, 8))]


def test_config_takes_the_rules_as_data(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(lane_toml(tmp_path / "db", readers=_reader("a", "sirit")))
    cfg = config.load(str(path), dialects=(config.DialectRule("sirit", lambda table: []),))
    assert cfg.readers[0].dialect == "sirit"
    with pytest.raises(ConfigError) as e:
        config.load(str(path), dialects=registry.rules())
    assert e.value.problems == ["readers[0].dialect: 'sirit' is not one of thingmagic, r2000, alien, chafon"]


def test_without_the_rules_readers_are_refused_not_taken_unchecked(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(lane_toml(tmp_path / "db"))  # no [[readers]]: nothing a dialect rule would check
    assert config.load(str(path)).readers == ()
    path.write_text(lane_toml(tmp_path / "db", readers=_reader("a", "thingmagic")))
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert e.value.problems == ["readers[0].dialect: 'thingmagic' cannot be checked: the configuration was read "
                                "without the reader dialects (read it with agent.readers.registry.load_config)"]
