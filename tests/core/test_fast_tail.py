"""`laneagent tail` on a FAST lane: each passage shows its tier and why a truck is not FAST
eligible (record ids only); `--tier` picks one tier. (Beside tests/cli/test_tail.py, whose
helpers it reuses.)"""

import json

from tests.cli.test_tail import add, event, follow, setup

NOT_FAST = {"drivers": ["DRV-2"], "carrier": "SHDY", "shipments": ["SHP-9"], "trip": True}


def tiered(seq, tier, findings=()):
    ev = event(seq)
    ev["findings"] = list(findings)
    ev["referral"]["tier"] = tier
    return ev


def test_tail_shows_the_tier_and_the_not_fast_eligible_detail(tmp_path):
    config, writer = setup(tmp_path)
    try:
        add(writer, tiered(1, "trusted"))
        add(writer, tiered(2, "standard", [{"code": "not_fast_eligible", "detail": NOT_FAST}]))
        add(writer, tiered(3, "standard", [{"code": "not_fast_eligible", "detail": {
            "drivers": [], "carrier": None, "shipments": [], "trip": False}}]))
    finally:
        writer.close()
    text = follow(config).splitlines()
    assert " trusted " in text[0] and "NOT FAST" not in text[0]
    assert "standard" in text[1] and "NOT FAST (drivers DRV-2; carrier SHDY; shipments SHP-9)" in text[1]
    assert "NOT FAST (no trip)" in text[2]
    assert follow(config, tier="trusted").count(" passage ") == 1
    assert follow(config, tier="standard").count(" passage ") == 2
    lines = [json.loads(line) for line in follow(config, json=True).splitlines()]
    assert [d["tier"] for d in lines] == ["trusted", "standard", "standard"]
    assert "not_fast_eligible" not in lines[0] and lines[1]["not_fast_eligible"] == NOT_FAST
