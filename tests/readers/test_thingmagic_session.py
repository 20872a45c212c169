"""ThingMagic session against the simulator over real pseudo-terminals (no mocks).

Timeouts are shortened (silence 1 s, keep-alives every 0.2 s, backoff from 0.1 s) so the
whole file runs in seconds; the behaviour is the one the daemon gets with its defaults.
"""

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.config import ReaderConfig
from agent.errors import ReaderError
from agent.readers import registry
from agent.readers import thingmagic as tm
from simulators.reader import SimulatedReader
from simulators.scenario import Pass, Scenario, ScenarioTag
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
EPC = "E2801160600002054E2C1A2B"
IN_FIELD = Scenario(passes=(Pass(0.0, 1e6, (ScenarioTag(EPC, 1, -48.0),)),), read_rate_hz=20, keepalive_s=0.2)
EMPTY = Scenario(keepalive_s=0.2)
SILENCE_S = 1.0
FAST = {"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "stable_s": 0.3}
INIT = [0x2F, 0x04, 0x03, 0x97, 0x93, 0x91, 0x92, 0x2F]


class Lane:
    """What the daemon would see: the session's callbacks, recorded."""

    def __init__(self):
        self.reports: list = []
        self.states: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def on_report(self, name, report, mono, wall_ms):
        assert name == "booth" and abs(mono - time.monotonic()) < 1 and abs(wall_ms - time.time() * 1000) < 1000
        with self.lock:
            self.reports.append(report)

    def on_state(self, name, state, detail):
        with self.lock:
            self.states.append((state, detail))

    def count(self, state: str) -> int:
        with self.lock:
            return sum(1 for s, _ in self.states if s == state)

    def n_reports(self) -> int:
        with self.lock:
            return len(self.reports)


@pytest.fixture
def lane():
    return Lane()


@pytest.fixture
def sessions():
    started = []

    def start(url: str, lane: Lane, **cfg):
        config = ReaderConfig(name="booth", dialect="thingmagic", url=url, antennas=(1, 2),
                              silence_timeout_s=SILENCE_S, **cfg)
        session = registry.open_session(config, lane.on_report, lane.on_state, **FAST)
        started.append(session)
        session.start()
        return session

    yield start
    for session in started:
        session.stop()


@pytest.fixture
def sims():
    started = []

    def start(scenario=IN_FIELD, **options) -> SimulatedReader:
        sim = SimulatedReader("thingmagic", scenario, seed=1, **options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def opcodes(sim: SimulatedReader, since: int = 0) -> list[int]:
    return [c.opcode for c in list(sim.model.commands)[since:]]


def test_init_sequence_then_reports_with_metadata(sims, sessions, lane):
    sim = sims()
    session = sessions(sim.device, lane)
    wait_for(lambda: lane.n_reports() >= 5, what="reports")
    assert opcodes(sim)[:8] == INIT
    first, last = sim.model.commands[0], sim.model.commands[7]
    assert first.data == b"\x00\x00\x02"  # stop reading first
    assert tm.parse_start_reading(last.data).metadata_flags == tm.META_REPORT
    assert (sim.model.region, sim.model.antennas, sim.model.power_cdbm) == (tm.Region.NA2, [1, 2], 3000)
    report = lane.reports[0]
    assert (report.epc, report.antenna, report.count, report.pc) == (EPC, 1, 1, "3000")
    assert -50 <= report.rssi <= -46 and 902750 <= report.frequency_khz <= 927250
    assert isinstance(report.timestamp_ms, int) and isinstance(report.phase, int)
    snap = session.snapshot()
    assert snap["state"] == "up" and snap["model"] == "M6e" and snap["firmware"] == "01.21.00.14"
    assert snap["reports"] >= 5 and snap["decode_errors"] == 0 and snap["reconnects"] == 0
    assert snap["dialect"] == "thingmagic" and snap["url"] == sim.device and snap["last_report_wall_ms"] > 0
    assert [s for s, _ in lane.states] == ["connecting", "up"]
    assert time.monotonic() - session.alive_mono < 0.5


def test_keepalives_keep_an_empty_field_up(sims, sessions, lane):
    sim = sims(EMPTY)
    session = sessions(sim.device, lane)
    wait_for(lambda: session.state == "up", what="up")
    time.sleep(2.5 * SILENCE_S)
    assert lane.count("down") == 0 and session.state == "up" and lane.n_reports() == 0
    assert time.monotonic() - session.alive_mono < 0.5


def test_silence_means_down_within_the_timeout_then_recovery(sims, sessions, lane):
    sim = sims()
    session = sessions(sim.device, lane)
    wait_for(lambda: session.state == "up", what="up")
    sim.mute()  # hung module, port still open
    muted_at = time.monotonic()
    wait_for(lambda: lane.count("down") == 1, timeout=3, what="down")
    assert time.monotonic() - muted_at <= SILENCE_S + 0.5
    assert "no report and no keep-alive" in session.last_error
    sim.mute(False)  # it answers again, still in its application firmware and streaming
    wait_for(lambda: lane.count("up") == 2, timeout=5, what="up again")
    assert session.snapshot()["reconnects"] == 1
    assert sim.model.commands[-7].opcode == tm.Opcode.BOOT_FIRMWARE  # refused as "invalid opcode": fine


def test_reboot_mid_stream_is_reinitialised_at_once(sims, sessions, lane):
    sim = sims(reboot_at=1.5)  # back in the bootloader then; announces itself with a 0x04 frame
    session = sessions(sim.device, lane)
    wait_for(lambda: lane.n_reports() > 0, what="reports")
    before = len(sim.model.commands)
    wait_for(lambda: lane.count("up") == 2, timeout=3, what="re-initialised")
    assert sim.elapsed() - 1.5 < SILENCE_S  # did not wait for silence
    assert opcodes(sim, before) == INIT and sim.model.streaming
    assert "restarted" in session.last_error and session.snapshot()["reconnects"] == 1
    n = lane.n_reports()
    wait_for(lambda: lane.n_reports() > n, what="reports after the reboot")


def test_silent_reboot_is_caught_by_the_silence_timeout(sims, sessions, lane):
    sim = sims(announce_boot=False)
    session = sessions(sim.device, lane)
    wait_for(lambda: session.state == "up", what="up")
    before = len(sim.model.commands)
    sim.reboot()
    wait_for(lambda: lane.count("up") == 2, timeout=SILENCE_S + 3, what="re-initialised")
    assert "no report and no keep-alive" in session.last_error
    assert opcodes(sim, before) == INIT


def test_stop_sends_stop_reading_and_closes_the_port(sims, sessions, lane):
    sim = sims()
    session = sessions(sim.device, lane)
    wait_for(lambda: lane.n_reports() > 0, what="reports")
    session.stop()
    assert sim.model.commands[-1].opcode == tm.Opcode.MULTI_PROTOCOL_TAG_OP
    assert sim.model.commands[-1].data == b"\x00\x00\x02" and not sim.model.streaming
    assert not session.transport.is_open and not session._thread.is_alive()
    assert lane.states[-1] == ("stopped", "") and session.snapshot()["state"] == "stopped"


def test_garbage_on_the_line_never_kills_the_session(sims, sessions, lane):
    sim = sims()
    session = sessions(sim.device, lane)
    wait_for(lambda: session.state == "up", what="up")
    rng = random.Random(5)
    damaged = bytearray(tm.encode_tag_frame(bytes.fromhex("DEAD0001")))
    damaged[12] ^= 0x10
    for i in range(40):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        sim.inject(noise + (b"\xff\x30" if i % 3 == 0 else b"") + (bytes(damaged) if i % 5 == 0 else b""))
        time.sleep(0.03)
    n = lane.n_reports()
    wait_for(lambda: lane.n_reports() > n + 5, what="reports after the noise")
    assert lane.count("down") == 0 and session.state == "up"
    assert session.decode_errors > 0
    assert {r.epc for r in lane.reports} == {EPC}


def test_error_status_becomes_a_clear_reader_error(sims, sessions, lane):
    sim = sims(regions={tm.Region.EU})
    session = sessions(sim.device, lane)
    wait_for(lambda: opcodes(sim).count(tm.Opcode.SET_REGION) >= 3, what="retries with backoff")
    assert session.last_error == "reader booth: set region NA2: module answered INVALID_REGION (0x010B)"
    # one "down" while it keeps retrying, not a connecting/down flicker per attempt
    assert [s for s, _ in lane.states] == ["connecting", "down"] and session.state == "down"


def test_agent_restart_meets_a_streaming_reader(sims, sessions, lane):
    sim = sims(start_streaming=True)
    session = sessions(sim.device, lane)
    wait_for(lambda: session.state == "up" and lane.n_reports() > 3, what="up with reports")
    assert opcodes(sim)[:8] == INIT and sim.model.commands[0].data == b"\x00\x00\x02"


@pytest.fixture
def tcp_bridge():
    """A serial server (like ser2net) in front of a pty: one TCP client at a time."""
    closers = []

    def start(device: str) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        stop = threading.Event()

        def pump():
            conn, _ = server.accept()
            with conn:
                while not stop.is_set():
                    ready = select.select([conn, fd], [], [], 0.05)[0]
                    if fd in ready:
                        conn.sendall(os.read(fd, 4096))
                    if conn in ready:
                        data = conn.recv(4096)
                        if not data:
                            return
                        os.write(fd, data)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        closers.append((stop, thread, server, fd))
        return server.getsockname()[1]

    yield start
    for stop, thread, server, fd in closers:
        stop.set()
        thread.join(5)
        server.close()
        os.close(fd)


def test_other_pyserial_urls(sims, sessions, tmp_path, tcp_bridge):
    sim = sims()
    lane_tcp = Lane()
    session = sessions(f"socket://127.0.0.1:{tcp_bridge(sim.device)}", lane_tcp)
    wait_for(lambda: lane_tcp.n_reports() > 3, what="reports over socket://")
    session.stop()
    traffic = tmp_path / "spy.txt"
    lane_spy = Lane()
    sessions(f"spy://{sims().device}?file={traffic}", lane_spy)
    wait_for(lambda: lane_spy.n_reports() > 3, what="reports over spy://")
    assert "FF 00 04 1D 0B" in traffic.read_text().upper()  # the boot command, in spy's hex dump


def test_unknown_dialect_is_a_clear_error(lane):
    cfg = ReaderConfig(name="gate", dialect="impinj-llrp", url="loop://")
    with pytest.raises(ReaderError, match=r"unknown reader dialect 'impinj-llrp' "
                                          r"\(available: thingmagic, r2000, alien, chafon\)"):
        registry.open_session(cfg, lane.on_report, lane.on_state)
    with pytest.raises(registry.UnknownDialect):
        registry.decode("sirit", b"")


# --- the simulator as a separate process, killed and restarted behind a stable link ------
@pytest.fixture
def sim_processes(tmp_path):
    procs = []
    scenario = tmp_path / "lane.json"
    scenario.write_text(json.dumps({"read_rate_hz": 20, "keepalive_s": 0.2, "passes": [
        {"at_s": 0, "dwell_s": 1000, "label": "parked truck", "tags": [{"epc": EPC, "antenna": 2, "rssi": -52}]}]}))

    def start(link: Path) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen([sys.executable, "-m", "simulators.reader", "--dialect", "thingmagic", "--pty",
                                 "--link", str(link), "--scenario", str(scenario)],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        device = proc.stdout.readline().strip()
        return proc, device

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()


def test_simulator_killed_then_back_behind_the_same_link(sim_processes, sessions, lane, tmp_path):
    link = tmp_path / "rfid-booth"
    proc, device = sim_processes(link)
    assert device.startswith("/dev/pts/") and os.readlink(link) == device
    session = sessions(str(link), lane)
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    assert lane.reports[0].antenna == 2
    proc.kill()  # unplugged: no goodbye
    proc.wait(5)
    wait_for(lambda: lane.count("down") >= 1, timeout=SILENCE_S + 1, what="down")
    time.sleep(0.5)  # a few reconnect attempts fail while nothing is there
    n = lane.n_reports()
    proc2, device2 = sim_processes(link)
    assert os.readlink(link) == device2
    wait_for(lambda: lane.n_reports() > n + 3, timeout=5, what="reports after replug")
    assert session.state == "up" and session.snapshot()["reconnects"] == 1
    proc2.send_signal(signal.SIGTERM)  # a clean exit removes the link
    assert proc2.wait(5) == 0 and not os.path.lexists(link)
