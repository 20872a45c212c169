"""Privacy by default: a back end receives the identity keys and exactly its shared sections."""

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import SECTIONS, SHARE_ITEMS, BackendConfig, LaneConfig
from agent.lane.disclosure import event_for
from agent.lane.event import ALWAYS_SENT, GENESIS, seal

LANE = LaneConfig("0901", "C3", "CA", "US")
values = st.recursive(st.none() | st.integers() | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=6)


def full_event(sections: dict) -> dict:
    return seal({"v": 1, "type": "crossing", "event_id": "e", "seq": 1, "port": "0901", "lane": "C3",
                 "entering": "CA", "leaving": "US", "started_ms": 1, "ended_ms": 2, **sections}, GENESIS)


# Input generation is slow on a loaded 2-core CI machine; the property, not the speed, is the test.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(share=st.lists(st.sampled_from(SHARE_ITEMS), unique=True),
       country=st.sampled_from(["CA", "US"]),
       sections=st.fixed_dictionaries({name: values for name in SECTIONS}))
def test_no_key_outside_share_ever_leaves(share, country, sections):
    backend = BackendConfig(name="b", country=country, host="h", share=tuple(share))
    sent = cbor2.loads(cbor2.dumps(event_for(cbor2.loads(cbor2.dumps(full_event(sections))), backend, LANE)))
    allowed = set(ALWAYS_SENT) | (set(share) & set(SECTIONS))
    assert set(sent) <= allowed
    assert set(sent) == allowed  # and everything allowed does go
    assert sent["kind"] == ("entry" if country == "CA" else "exit")
    assert sorted(sent["digests"]) == sorted(SECTIONS)  # all eight, whatever the share


def test_no_share_key_means_identity_only():
    backend = BackendConfig(name="b", country="US", host="h")
    sent = event_for(full_event({name: [1] for name in SECTIONS}), backend, LANE)
    assert set(sent) == set(ALWAYS_SENT)
