"""The facilitation figures (DESIGN 2.7), pure: passages, time in field, trusted share, referrals."""

from agent.lane.facilitation import facilitation, percentile


def event(field_ms, tier="standard", refer=False, reasons=(), random=False):
    return {"started_ms": 1000, "ended_ms": 1000 + field_ms,
            "referral": {"refer": refer, "reasons": list(reasons), "random": random, "tier": tier}}


def test_no_passages():
    f = facilitation([])
    assert f["passages"] == 0 and f["trusted_share"] is None
    assert f["field_time_s"] == {"median": None, "p90": None}
    assert f["tiers"]["trusted"] == {"passages": 0, "referred": 0, "random": 0, "reasons": {}}


def test_figures_by_tier_and_reason():
    events = [event(1000 * n, "trusted") for n in range(1, 8)] + [
        event(9000, refer=True, reasons=["no_trip", "not_fast_eligible"]),
        event(10000, refer=True, reasons=["random"], random=True),
        event(2500, "trusted", refer=True, reasons=["random"], random=True),
        {"started_ms": 0, "ended_ms": 500, "referral": {"refer": True, "reasons": ["no_trip"], "random": False}},
    ]
    f = facilitation(events)
    assert f["passages"] == 11 and f["trusted_share"] == round(8 / 11, 4)
    assert f["field_time_s"] == {"median": 4.0, "p90": 9.0}
    assert f["tiers"]["trusted"] == {"passages": 8, "referred": 1, "random": 1, "reasons": {"random": 1}}
    # an event from before tiers counts as standard
    assert f["tiers"]["standard"] == {"passages": 3, "referred": 3, "random": 1,
                                      "reasons": {"no_trip": 2, "not_fast_eligible": 1, "random": 1}}


def test_nearest_rank_percentile():
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([3, 1, 2], 50) == 2
