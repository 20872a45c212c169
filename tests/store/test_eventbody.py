"""The stored form of an event: canonical bytes that `verify` reads, and payloads cut from
them without decoding (schema v3), equal to what cutting the decoded event gives."""

import cbor2
import pytest

from agent.config import SECTIONS
from agent.lane.disclosure import View, cut
from agent.lane.event import GENESIS, seal
from agent.store import eventbody
from agent.store.outbox import derived_payload


def sealed(**extra) -> dict:
    sections = {name: [{"id": f"{name}-1", "rssi_max": -48.5, "nested": {"b": 1, "a": [1, 2.25]}}]
                for name in SECTIONS}
    return seal({"v": 1, "type": "crossing", "event_id": "e-1", "seq": 7, "port": "0901", "lane": "C3",
                 "entering": "CA", "leaving": "US", "started_ms": 1, "ended_ms": 2, **sections, **extra}, GENESIS)


@pytest.mark.parametrize("extra", [{}, {"a_key_longer_than_twenty_three_bytes": {"x": 1}}, {"z": None}])
def test_the_stored_bytes_are_the_canonical_encoding(extra):
    event = sealed(**extra)
    body, _ = eventbody.pack(event)
    assert eventbody.canonical_bytes(body) == cbor2.dumps(event, canonical=True)
    assert eventbody.load(body) == event


@pytest.mark.parametrize("view", [View("entry", tuple(SECTIONS)), View("exit", ("tags", "findings", "referral")),
                                  View("exit", ())])
def test_a_cut_payload_is_the_cut_event(view):
    event = sealed()
    body, spans = eventbody.pack(event)
    payload = eventbody.cut(body, spans, view)
    assert cbor2.loads(payload) == cut(event, view)
    assert eventbody.cut(body, spans, view) == payload  # every retry the same bytes


def test_keys_that_are_not_always_sent_go_only_with_a_section_that_names_them():
    # An unknown top-level key (a later release's) is not disclosed to anyone; a stored
    # `kind` is replaced by the receiver's own.
    event = sealed(internal_note="officer only", kind="stale")
    body, spans = eventbody.pack(event)
    sent = cbor2.loads(eventbody.cut(body, spans, View("entry", ("tags",))))
    assert "internal_note" not in sent and sent["kind"] == "entry"
    assert set(sent) == {*cut(event, View("entry", ("tags",))), "kind"}


def test_a_body_that_is_not_a_small_map_is_refused():
    with pytest.raises(ValueError, match="not a CBOR map"):
        eventbody.cut(cbor2.dumps([1, 2]), cbor2.dumps([]), View("entry", ()))


@pytest.mark.parametrize("spans", [cbor2.dumps(["tags", 1, 2]), cbor2.dumps([5000, 10]), b"\xff"])
def test_spans_that_do_not_fit_the_body_are_not_trusted(spans, caplog):
    # A damaged row is still delivered, cut from the decoded event, and the log says so.
    event = sealed()
    body, _ = eventbody.pack(event)
    view = View("exit", ("tags",))
    assert cbor2.loads(derived_payload(body, spans, view)) == cut(event, view)
    assert "do not fit" in caplog.text
