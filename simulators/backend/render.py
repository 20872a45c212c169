"""One readable line per message a back end receives, for its console and the demo.

A crossing shows only what this back end was sent: a reduced share prints no driver or
trip, rather than printing them as missing. Event ids are shown by their last eight
characters, because time-ordered ids (ULID, UUIDv7) share their leading ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

TOPIC_KINDS = ("events", "alerts", "status", "health", "requests", "cmd/result")


@dataclass(frozen=True)
class Received:
    """One message from a lane: where it came from, its payload, and what the checks said."""

    topic: str
    lane: str
    channel: str  # one of TOPIC_KINDS
    payload: object
    received_ms: int
    duplicate: bool = False
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"topic": self.topic, "lane": self.lane, "channel": self.channel, "received_ms": self.received_ms,
                "duplicate": self.duplicate, "problems": list(self.problems), "payload": self.payload}


def short_id(event_id) -> str:
    return str(event_id)[-8:]


def findings_text(findings) -> str:
    if not findings:
        return "-"
    parts = []
    for finding in findings:
        code, detail = finding.get("code", "?"), finding.get("detail")
        if code == "lookout_hit" and isinstance(detail, dict):
            parts.append(f"lookout_hit({detail.get('source')}:{detail.get('lookout_id')})")
        elif code == "multiple_trips" and detail:
            parts.append(f"multiple_trips({detail if isinstance(detail, str) else json.dumps(detail, default=str)})")
        else:
            parts.append(str(code))
    return ",".join(parts)


def referral_text(referral) -> str:
    if not isinstance(referral, dict) or not referral.get("refer"):
        return "no"
    return f"yes ({','.join(map(str, referral.get('reasons') or ['?']))})"


def crossing_line(event: dict, country: str) -> str:
    """`[CA entry] seq 3 truck TRK-0012 driver DRV-0044 trip TRIP-... findings: - referral: no`"""
    parts = [f"[{country} {event.get('kind', '?')}] seq {event.get('seq')} lane {event.get('lane')}"
             f" ev {short_id(event.get('event_id'))}"]
    if "conveyance" in event:
        parts.append(f"truck {event['conveyance'].get('id') if event['conveyance'] else '-'}")
    if "driver" in event:
        parts.append(f"driver {','.join(str(d.get('id')) for d in event['driver']) or '-'}")
    if "equipment" in event:
        parts.append(f"trailer {','.join(str(e.get('id')) for e in event['equipment']) or '-'}")
    if "trip" in event:
        parts.append(f"trip {event['trip'].get('id') if event['trip'] else '-'}")
    if "tags" in event:
        parts.append(f"tags {len(event['tags'])}")
    if "findings" in event:
        parts.append(f"findings: {findings_text(event['findings'])}")
    if "referral" in event:
        parts.append(f"referral: {referral_text(event['referral'])}")
    return " ".join(parts)


def describe(received: Received, country: str) -> str:
    """The console line for any message; problems and duplicates are appended loudly."""
    p = received.payload if isinstance(received.payload, dict) else {}
    if received.channel == "events":
        line = crossing_line(p, country) if p else f"[{country} events] lane {received.lane} {received.payload!r}"
    elif received.channel == "alerts":
        line = f"[{country} alert] lane {received.lane} {p.get('kind')}"
        lookout = p.get("lookout")
        if isinstance(lookout, dict):
            line += (f" ev {short_id(p.get('event_id'))} lookout {lookout.get('id')} on {lookout.get('subject_kind')}"
                     f" {lookout.get('subject')}: {lookout.get('reason')} ({lookout.get('severity')})")
        else:
            line += f" {json.dumps(p.get('detail'), default=str, sort_keys=True)}"
    elif received.channel == "status":
        line = f"[{country} status] lane {received.lane} {p.get('state', '?')} seq {p.get('seq', '-')}"
    elif received.channel == "requests":
        line = (f"[{country} request] lane {received.lane} {p.get('type')} source {p.get('source')}"
                f" have_seq {p.get('have_seq')}")
    else:
        line = f"[{country} {received.channel}] lane {received.lane} {json.dumps(p, default=str, sort_keys=True)}"
    if received.duplicate:
        line += "  (duplicate)"
    for problem in received.problems:
        line += f"\n    PROBLEM: {problem}"
    return line
