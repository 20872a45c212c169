"""The configuration keys of issue 14 (DESIGN 2.2): lane.kind, referral.random_rate_trusted, [programs]."""

import pytest

from agent.errors import ConfigError
from agent.readers.registry import load_config
from tests.helpers import backend_toml, lane_toml


def load(tmp_path, lane="", referral="", programs=None):
    text = lane_toml(tmp_path / "db", backends=backend_toml("cbsa", "CA", 1883))
    text = text.replace('leaving = "US"', 'leaving = "US"\n' + lane).replace("random_rate = 0.0", referral or
                                                                               "random_rate = 0.0")
    if programs is not None:
        text += "\n[programs]\n" + programs + "\n"
    (tmp_path / "a.toml").write_text(text)
    return load_config(str(tmp_path / "a.toml"))


def problems(tmp_path, **kw):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, **kw)
    return e.value.problems


PROGRAMS = 'drivers = ["FAST"]\ncompanies = { CA = ["PIP", "C-TPAT"], US = ["C-TPAT"] }'


def test_defaults_general_lane_no_programmes_trusted_rate_follows_the_rate(tmp_path):
    cfg = load(tmp_path, referral="random_rate = 0.05")
    assert cfg.lane.kind == "general" and cfg.programs is None
    assert cfg.referral.random_rate_trusted == 0.05


def test_a_fast_lane_with_programmes(tmp_path):
    cfg = load(tmp_path, lane='kind = "fast"', programs=PROGRAMS,
               referral='random_rate = 0.02\nrandom_rate_trusted = 0.005\nrefer_on = ["no_trip", "not_fast_eligible"]')
    assert cfg.lane.kind == "fast" and cfg.referral.random_rate_trusted == 0.005
    assert cfg.programs.drivers == ("FAST",) and cfg.programs.recognised("CA") == {"PIP", "C-TPAT"}
    assert "not_fast_eligible" in cfg.referral.refer_on


@pytest.mark.parametrize("kw, expected", [
    ({"lane": 'kind = "fast"'}, "lane.kind: \"fast\" needs a [programs] table"),
    ({"lane": 'kind = "express"'}, "lane.kind: 'express' is not one of general, fast"),
    ({"referral": "random_rate = 0.0\nrandom_rate_trusted = 1.5"}, "referral.random_rate_trusted: must be between 0 and 1"),
    ({"programs": 'drivers = "FAST"\ncompanies = { CA = [] }'}, "programs.drivers: must be a list"),
    ({"programs": 'drivers = ["FAST", 3]\ncompanies = { CA = [] }'}, "programs.drivers: must be a list of programme names"),
    ({"programs": 'drivers = ["FAST"]\ncompanies = { Canada = ["PIP"] }'}, "programs.companies: 'Canada' is not"),
    ({"programs": 'drivers = ["FAST"]\ncompanies = { CA = "PIP" }'}, "programs.companies: CA: must be a list"),
    ({"programs": 'drivers = ["FAST"]\ncompanies = { US = ["C-TPAT"] }'},
     "programs.companies: names no programmes for lane.entering (CA)"),
    ({"programs": 'drivers = ["FAST"]\nmembers = []\ncompanies = { CA = [] }'}, "programs.members: unknown key"),
])
def test_each_mistake_is_named(tmp_path, kw, expected):
    found = problems(tmp_path, **kw)
    assert any(p.startswith(expected) for p in found), found


def test_the_entering_country_may_recognise_no_company_programme_on_purpose(tmp_path):
    cfg = load(tmp_path, programs='drivers = ["FAST"]\ncompanies = { CA = [] }')
    assert cfg.programs.recognised("CA") == frozenset()
