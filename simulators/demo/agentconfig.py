"""The demo agent's TOML configuration, made from config/agent.example.toml so the two never drift.

The template is read, the demo's values are put in (a temporary store, the reader's
pty, the two brokers' ports, a 5-second silence timeout) and the result written back
as TOML by a small writer that handles what an agent config holds: tables, arrays of
tables, strings, numbers, booleans and lists of those.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _template() -> Path:
    """config/agent.example.toml of the checkout, or the copy `pip install` puts in
    {prefix}/share/laneagent/ (pyproject's data-files) when run from an installed package."""
    for candidate in (ROOT / "config" / "agent.example.toml",
                      Path(sys.prefix) / "share" / "laneagent" / "agent.example.toml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("config/agent.example.toml: not in the checkout nor in "
                            f"{sys.prefix}/share/laneagent/; reinstall laneagent (pip install .)")


TEMPLATE = _template()
SECTIONS = ("tags", "driver", "conveyance", "equipment", "trip", "shipments", "findings", "referral")
DEMO_LANE = {"port_code": "0901", "lane_id": "C3", "entering": "CA", "leaving": "US"}
BACKEND_NAMES = {"CA": "cbsa", "US": "cbp"}
DEMO_LANE_KIND = "fast"  # the demo lane is a FAST lane (DESIGN 2.7): trusted crossings and a truck that is not


def demo_config(store_path: Path, reader_url: str, broker_ports: dict[str, int], host: str = "127.0.0.1",
                template: Path = TEMPLATE, verify_keys: dict[str, str] | None = None) -> dict:
    """The template with the demo's lane, store, reader and brokers; one back end per country."""
    doc = tomllib.loads(template.read_text())
    doc["lane"].update(DEMO_LANE, kind=DEMO_LANE_KIND)
    # a truck with no business in a FAST lane is sent to secondary (it belongs in a general lane)
    refer_on = list(doc["referral"].get("refer_on", []))
    doc["referral"]["refer_on"] = refer_on + [c for c in ("not_fast_eligible",) if c not in refer_on]
    doc["store"]["path"] = str(store_path)
    doc["metrics"] = {"listen": ""}  # off: the example's fixed port may be taken on this machine
    doc.setdefault("aggregation", {})["idle_close_s"] = 2.0
    reader = dict(doc["readers"][0], name="booth", dialect="thingmagic", url=reader_url, silence_timeout_s=5)
    doc["readers"] = [reader]
    by_country = {b["country"]: b for b in doc["backends"]}
    # cbsa keeps the template's full share, cbp its reduced one: both kinds get exercised
    doc["backends"] = [dict(by_country[country], name=BACKEND_NAMES[country], host=host, port=port,
                            **({"verify_key": verify_keys[country]} if verify_keys else {}))
                       for country, port in broker_ports.items()]
    return doc


def shared_sections(doc: dict, country: str) -> tuple[str, ...]:
    """The crossing sections the config shares with that country's back end."""
    backend = next(b for b in doc["backends"] if b["country"] == country)
    return tuple(s for s in backend.get("share", ()) if s in SECTIONS)


def to_toml(doc: dict) -> str:
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + _pairs(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += ["", f"[[{key}]]"] + _pairs(item)
        else:
            lines.insert(0, f"{key} = {_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _pairs(table: dict) -> list[str]:
    return [f"{key} = {_value(value)}" for key, value in table.items()]


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table ([programs] companies)
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def write_demo_config(path: Path, **kwargs) -> dict:
    doc = demo_config(**kwargs)
    path.write_text("# written by python -m simulators.demo from config/agent.example.toml\n" + to_toml(doc))
    return doc
