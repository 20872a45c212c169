"""A whole lane as real processes: reader simulator on a pty, the agent, two brokers.

Used by the end-to-end tests. The agent and the simulator are started as their own
process groups so that a test can SIGKILL them like a power cut would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, agent_cmd, backend_toml, lane_toml, reader_toml

NOW_MS = int(time.time() * 1000)
H = 3600_000


def cache_snapshot(seq: int = 1) -> dict:
    """A small CA cache: a clean trip, a truck with no trip, a lookout on a carrier."""
    return {"v": 1, "type": "cache", "source": "CA", "seq": seq, "op": "snapshot", "records": [
        {"kind": "driver", "id": "DRV-1", "name": "Alex Martin", "card_epc": "E2000000000000000000D001",
         "card_expires_ms": NOW_MS + 900 * H, "status": "valid", "programs": ["FAST"]},
        {"kind": "driver", "id": "DRV-2", "name": "Sam Roy", "card_epc": "E2000000000000000000D002",
         "card_expires_ms": NOW_MS + 900 * H, "status": "valid", "programs": ["FAST"]},
        {"kind": "conveyance", "id": "TRK-1", "vin": "1XKAD49X0DJ000001", "plate": "AB1234", "plate_region": "ON",
         "carrier": "NORTHLINE", "transponder_epc": "E2000000000000000000C001", "status": "valid"},
        {"kind": "conveyance", "id": "TRK-2", "vin": "1XKAD49X0DJ000002", "plate": "CD5678", "plate_region": "QC",
         "carrier": "SHADY", "transponder_epc": "E2000000000000000000C002", "status": "valid"},
        {"kind": "trip", "id": "TRIP-1", "carrier": "NORTHLINE", "port": "0901", "eta_ms": NOW_MS,
         "conveyance": "TRK-1", "drivers": ["DRV-1"], "equipment": [], "shipments": ["SHP-1"]},
        {"kind": "shipment", "id": "SHP-1", "trip": "TRIP-1", "shipper": "Maple Co", "consignee": "Eagle Inc",
         "description": "lumber", "trusted_trader": True},
        {"kind": "lookout", "id": "LK-1", "subject_kind": "carrier", "subject": "SHADY", "reason": "intelligence",
         "severity": "high", "expires_ms": NOW_MS + 24 * H},
    ]}


def truck_pass(at_s: float, *epcs: str, dwell_s: float = 1.0, label: str = "") -> dict:
    return {"at_s": at_s, "dwell_s": dwell_s, "label": label,
            "tags": [{"epc": e, "antenna": 1 + i % 2, "rssi": -50} for i, e in enumerate(epcs)]}


class ReaderSim:
    def __init__(self, workdir: Path, passes: list[dict], extra: list[str] = ()):
        scenario = workdir / "scenario.json"
        scenario.write_text(json.dumps({"read_rate_hz": 10, "repeat_every_s": 0, "passes": passes}))
        with open(workdir / "reader.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "simulators.reader", "--dialect", "thingmagic", "--pty", "--scenario",
                 str(scenario), *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True)
        self.path = self.proc.stdout.readline().strip()
        if not self.path.startswith("/dev/"):
            raise RuntimeError(f"reader simulator printed {self.path!r}, not a device path")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()


class Agent:
    def __init__(self, workdir: Path, config: Path, env: dict | None = None):
        self.workdir, self.config = workdir, config
        self.env = None if env is None else {**os.environ, **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Agent":
        with open(self.workdir / "agent.log", "ab") as log:
            self.proc = subprocess.Popen(agent_cmd(self.config), cwd=ROOT, stdout=log, stderr=log,
                                         start_new_session=True, env=self.env)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def log_text(self) -> str:
        return (self.workdir / "agent.log").read_text(errors="replace")


def write_config(workdir: Path, reader_url: str | None, ca_port: int, us_port: int,
                 us_share: str = '["tags", "conveyance", "findings", "referral"]') -> Path:
    path = workdir / "agent.toml"
    readers = reader_toml(reader_url) if reader_url else ""
    path.write_text(lane_toml(workdir / "state" / "agent.db", readers=readers,
                              backends=backend_toml("cbsa", "CA", ca_port) + backend_toml("cbp", "US", us_port,
                                                                                          share=us_share)))
    return path


def verify_chain(events: list[dict]) -> list[str]:
    """Check seq continuity, prev_hash links and the hash of each event, from DESIGN 2.5."""
    import hashlib

    import cbor2

    problems = []
    by_seq: dict[int, dict] = {}
    for e in events:
        by_seq.setdefault(e["seq"], e)
    seqs = sorted(by_seq)
    if seqs and seqs != list(range(1, seqs[-1] + 1)):
        problems.append(f"seq gaps: have {seqs}")
    prev = "0" * 64
    for seq in seqs:
        e = by_seq[seq]
        for name, digest in e["digests"].items():
            if name in e and hashlib.sha256(cbor2.dumps(e[name], canonical=True)).hexdigest() != digest:
                problems.append(f"seq {seq}: digest of {name} does not match")
        identity = {k: e[k] for k in ("v", "type", "event_id", "seq", "port", "lane", "entering", "leaving",
                                      "started_ms", "ended_ms")}
        h = hashlib.sha256(bytes.fromhex(e["prev_hash"]) + cbor2.dumps(identity, canonical=True)
                           + cbor2.dumps(e["digests"], canonical=True)).hexdigest()
        if h != e["hash"]:
            problems.append(f"seq {seq}: hash does not match")
        if e["prev_hash"] != prev:
            problems.append(f"seq {seq}: prev_hash does not link to seq {seq - 1}")
        prev = e["hash"]
    return problems
