"""`laneagent diag` and the raw-traffic ring: the bundle holds what support needs and nothing personal.

The database holds a real cache (names, card and transponder EPCs), the state directory
a traffic dump recorded from a real reader simulator on a pty (through `TrafficTap`
over the agent's own transport), plus a damaged frame; the config names a password
file. Nothing of that may appear in clear anywhere in the bundle.
"""

import json
import os
import re
import signal
import tarfile
import threading
import time

import pytest

from agent.app import Daemon
from agent.readers.registry import load_config as load
from agent.diagnostics import bundle, traffic
from agent.diagnostics.privacy import Scrubber, mask_epc
from agent.readers import thingmagic as tm
from agent.readers.transport import SerialTransport
from agent.store.writer import StoreWriter
from simulators.reader.runner import SimulatedReader
from simulators.scenario import Pass, Scenario, ScenarioTag
from tests.helpers import backend_toml, cli, lane_toml, reader_toml, wait_for
from tests.lane_harness import Agent, cache_snapshot

SECRET = "hunter2-lane-password"
STRANGER = "E28011700000020F1234ABCD"  # a tag no cache record names, in a damaged frame


# --- the ring buffer --------------------------------------------------------------------------
def test_ring_keeps_exactly_the_newest_bytes_with_direction_and_time():
    ring = traffic.TrafficRing("booth", max_bytes=10)
    ring.record("tx", b"\x01\x02\x03", wall_ms=1_000)
    ring.record("rx", b"ABCDEFGH", wall_ms=2_000)
    assert ring.size == 10 and ring.total_bytes == 11
    assert [(c.direction, c.data, c.wall_ms) for c in ring.snapshot()] == [("tx", b"\x02\x03", 1_000),
                                                                          ("rx", b"ABCDEFGH", 2_000)]
    ring.record("rx", b"0123456789XY", wall_ms=3_000)  # bigger than the ring: its tail
    assert [c.data for c in ring.snapshot()] == [b"23456789XY"]
    parsed = traffic.parse(ring.render())
    assert [(c.direction, c.data, c.wall_ms) for c in parsed] == [("rx", b"23456789XY", 3_000)]


def test_ring_is_bounded_under_concurrent_writers():
    ring = traffic.TrafficRing("booth", max_bytes=4096)

    def write(direction):
        for i in range(2000):
            ring.record(direction, bytes([i % 256]) * 37)

    threads = [threading.Thread(target=write, args=(d,)) for d in ("rx", "tx", "rx")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ring.size == 4096 == sum(len(c.data) for c in ring.snapshot())
    assert ring.total_bytes == 3 * 2000 * 37


@pytest.mark.parametrize("read", ["read", "read_available"])  # streamed batches; a polled reader's replies
def test_tap_records_a_real_reader_conversation(tmp_path, read):
    with SimulatedReader("thingmagic") as sim:
        ring = traffic.TrafficRing("booth")
        port = traffic.TrafficTap(SerialTransport(sim.device), ring)
        port.open()
        try:
            port.write(tm.build_get_version())
            deadline, got = time.monotonic() + 3, b""
            while time.monotonic() < deadline and len(got) < 27:
                got += getattr(port, read)()
            assert port.is_open  # everything else passes through
        finally:
            port.close()
    chunks = ring.snapshot()
    assert chunks[0].direction == "tx" and chunks[0].data == tm.build_get_version()
    assert b"".join(c.data for c in chunks if c.direction == "rx") == got
    ring.dump(str(tmp_path / "traffic-booth.hex"))
    assert [c.data for c in traffic.parse((tmp_path / "traffic-booth.hex").read_text())] == [c.data for c in chunks]


def test_daemon_dumps_its_rings_when_asked(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml("cbsa", "CA", 1)))
    daemon = Daemon(load(str(config)))
    try:
        traffic.ring_for("dumped-reader").record("rx", b"\xff\x00\x03")
        daemon._dump_traffic = True  # what a SIGUSR2 asks for
        daemon._maybe_dump_traffic()
        dump = tmp_path / "state" / "traffic-dumped-reader.hex"
        assert traffic.parse(dump.read_text())[0].data == b"\xff\x00\x03"
    finally:
        daemon.writer.close()


def updated_ms(status):
    try:
        return json.loads(status.read_text())["updated_ms"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def test_running_daemon_survives_sigusr2(tmp_path, broker):
    """SIGUSR2 would kill a process without a handler; the daemon dumps and keeps running."""
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", backends=backend_toml("cbsa", "CA", broker.port)))
    agent = Agent(tmp_path, config).start()
    try:
        status = tmp_path / "state" / "status.json"
        assert wait_for(lambda: updated_ms(status), what="the first status file"), agent.log_text()
        signalled_ms = int(time.time() * 1000)
        agent.proc.send_signal(signal.SIGUSR2)
        # A process without a handler dies of SIGUSR2 at once; this one goes on rewriting its status.
        assert wait_for(lambda: (updated_ms(status) or 0) >= signalled_ms or agent.proc.poll() is not None,
                        what="a status written after the signal, or the end of the daemon")
        assert agent.proc.poll() is None, agent.log_text()
    finally:
        agent.stop()
    assert agent.proc.returncode == 0


# --- the bundle ---------------------------------------------------------------------------
def received(ring):
    return sum(len(c.data) for c in ring.snapshot() if c.direction == "rx")


def scenario_with(*epcs):
    return Scenario(passes=(Pass(0.0, 60.0, tuple(ScenarioTag(e) for e in epcs)),))


@pytest.fixture
def lane(tmp_path):
    snapshot = cache_snapshot()
    writer = StoreWriter(str(tmp_path / "state" / "agent.db"))
    try:
        with writer.transaction():
            writer.apply_cache(snapshot, int(time.time() * 1000))
    finally:
        writer.close()
    password = tmp_path / "cbsa.password"
    password.write_text(SECRET + "\n")
    password.chmod(0o600)
    card, truck = "E2000000000000000000D001", "E2000000000000000000C001"
    # Real traffic: the simulator streams the driver's card and the truck's transponder.
    ring = traffic.TrafficRing("booth")
    with SimulatedReader("thingmagic", scenario_with(card, truck)) as sim:
        port = traffic.TrafficTap(SerialTransport(sim.device), ring)
        port.open()
        try:
            for command in (tm.build_boot_firmware(), tm.build_set_region("NA2"), tm.build_set_protocol(),
                            tm.build_set_antenna_ports([1]), tm.build_start_reading()):
                before = received(ring)
                port.write(command)
                wait_for(lambda: port.read() is not None and received(ring) > before, 5, "the reader's reply")
            wait_for(lambda: port.read() is not None and ring.size >= 1500, 5, "tag reports")
        finally:
            port.close()
    damaged = bytearray(tm.encode_tag_frame(bytes.fromhex(STRANGER)))
    damaged[-1] ^= 0xFF  # a CRC error: the codec rejects it, the EPC is still in the bytes
    ring.record("rx", bytes(damaged))
    ring.dump(str(tmp_path / "state" / "traffic-booth.hex"), "thingmagic on a test pty")
    config = tmp_path / "agent.toml"
    config.write_text(lane_toml(tmp_path / "state" / "agent.db", readers=reader_toml("/dev/rfid-missing"),
                                backends=backend_toml("cbsa", "CA", 1, extra=f'username = "lane-c3"\n'
                                                                               f'password_file = "{password}"')))
    return {"tmp": tmp_path, "config": config, "snapshot": snapshot, "epcs": (card, truck)}


def unpack(path):
    with tarfile.open(path) as tar:
        return {os.path.basename(m.name): tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def spaced(hex_text):
    return " ".join(hex_text[i:i + 2] for i in range(0, len(hex_text), 2))


def test_bundle_has_everything_and_nothing_personal(lane, monkeypatch):
    # journald is not running in the test machine: a log with a slip in it stands in for it.
    monkeypatch.setattr(bundle, "journal_text", lambda: (
        "reader booth up: ThingMagic M6e\nlinked card E2000000000000000000D001 to Alex Martin\n"))
    out = lane["tmp"] / "diag.tar.gz"
    code, stdout, err = cli("--config", str(lane["config"]), "diag", "--out", str(out), "--timeout", "1")
    assert code == 0, err
    assert os.stat(out).st_mode & 0o077 == 0
    files = unpack(out)
    assert set(files) >= {"README.txt", "status.json", "status.txt", "doctor.json", "doctor.txt", "config.toml",
                          "logs.txt", "traffic-booth.hex", "database.json", "system.txt", "notes.txt"}
    doctor = json.loads(files["doctor.json"])
    assert ("reader booth", "port_missing") in {(c["subject"], c["cause"]) for c in doctor["checks"]}
    stats = json.loads(files["database.json"])
    assert stats["quick_check"] == ["ok"] and sum(c["records"] for c in stats["cache"]) == len(lane["snapshot"]["records"])
    assert "reader booth up" in files["logs.txt"] and "<removed>" in files["logs.txt"]
    assert "password_file" in files["config.toml"]
    hexdump = files["traffic-booth.hex"]
    assert " rx " in hexdump and " tx " in hexdump and "**" in hexdump
    assert spaced(tm.build_boot_firmware().hex().upper()) in hexdump  # commands stay in clear

    personal = {SECRET, STRANGER}
    for record in lane["snapshot"]["records"]:
        for key in ("name", "vin", "plate", "card_epc", "transponder_epc"):
            if record.get(key):
                personal.add(record[key])
    everything = "\n".join(files.values())
    for value in personal:
        for form in {value, value.lower(), spaced(value) if re.fullmatch(r"[0-9A-F]+", value) else value}:
            assert form not in everything, f"{form!r} is in the bundle"
    for epc in lane["epcs"]:
        assert mask_epc(epc)[-4:] in hexdump.replace(" ", "")  # the last two bytes stay, to tell tags apart


def test_scrubber_matches_whole_names_only():
    scrub = Scrubber(["Alex Martin", "Al"])
    assert scrub("driver alex  martin at lane; Alexander stays") == "driver <removed> at lane; Alexander stays"
    assert scrub("Al alone is too short to scrub") == "Al alone is too short to scrub"
    assert scrub("epc E2000000000000000000D001 hash " + "a" * 64) == "epc ****D001 hash " + "a" * 64


def test_config_secrets_are_removed(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('password = "s3cret"\npassword_file = "/etc/laneagent/cbsa.pw"\n'
                    'tls = { ca = "a", key = "/k.pem", token = "t0ken" }\n')
    text = bundle.config_text(str(path))
    assert "s3cret" not in text and "t0ken" not in text and "/etc/laneagent/cbsa.pw" in text and "/k.pem" in text


def test_journal_is_collected_when_available(tmp_path, monkeypatch):
    # A stand-in journalctl on PATH that shows what it was asked for.
    fake = tmp_path / "journalctl"
    fake.write_text('#!/bin/sh\necho "reader booth up ($*)"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    text = bundle.journal_text()
    assert text.startswith(f"# journalctl -u laneagent -n {bundle.JOURNAL_LINES} (exit 0)\n")
    assert f"reader booth up (-u laneagent -n {bundle.JOURNAL_LINES} --no-pager -o short-iso)" in text


def test_journal_missing_is_said(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    text = bundle.journal_text()
    assert "journalctl is not available" in text and not text.startswith("# journalctl")


def test_diag_of_a_running_lane_gets_fresh_masked_traffic(tmp_path, broker):
    from tests.lane_harness import ReaderSim, truck_pass, write_config

    card = "E2000000000000000000D001"
    sim = ReaderSim(tmp_path, [truck_pass(0.2, card, dwell_s=30)])
    config = write_config(tmp_path, sim.path, broker.port, broker.port)
    agent = Agent(tmp_path, config).start()
    try:
        status = tmp_path / "state" / "status.json"

        def reports():
            try:
                return json.loads(status.read_text())["readers"][0]["reports"]
            except (OSError, ValueError, KeyError, IndexError):
                return 0

        assert wait_for(lambda: reports() > 5, what="the daemon reading tags"), agent.log_text()
        out = tmp_path / "diag.tar.gz"
        code, _, err = cli("--config", str(config), "diag", "--out", str(out), "--timeout", "1")
        assert code == 0, err
        files = unpack(out)
        assert "fresh dump from daemon pid" in files["notes.txt"]
        hexdump = files["traffic-booth.hex"]
        assert " rx " in hexdump and "**" in hexdump
        assert card not in "\n".join(files.values()) and spaced(card) not in hexdump
    finally:
        agent.stop()
        sim.stop()
