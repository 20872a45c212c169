"""R2000, Alien and Chafon sessions against their simulators over real pseudo-terminals.

Per dialect: the init sequence and reports from two antennas, idle answers keeping an empty
field "up", silence making it "down" within the timeout and recovery after, a clean stop;
then what is particular to each: R2000 power written only when it differs and a missing
antenna; Chafon's two firmware families; Alien booting, autonomous mode and reboots.
ThingMagic has its own file (test_thingmagic_session.py).
"""

import logging
import time

import pytest

from agent.readers import alien, chafon, r2000
from simulators.reader import SimulatedReader
from tests.reader_lane import EMPTY, EPCS, NEW_DIALECTS, SILENCE_S, Lane, open_session, scenario
from tests.helpers import wait_for


@pytest.fixture
def rig():
    """start(dialect, scenario, **sim_options) -> (sim, session, lane); all stopped afterwards."""
    started = []

    def start(dialect, scen=None, antennas=(1, 2), session_options=None, **options):
        sim = SimulatedReader(dialect, scen if scen is not None else scenario(), seed=1, **options).start()
        lane = Lane()
        session = open_session(dialect, sim.device, lane, antennas, **(session_options or {}))
        started.append((session, sim))
        session.start()
        return sim, session, lane

    yield start
    for session, sim in started:
        session.stop()
        sim.stop()


MODELS = {"r2000": ("R2000", "1.9"), "alien": ("ALR-F800", "17.11.24.00"), "chafon": ("UHFReader288M", "2.26")}


@pytest.mark.parametrize("dialect", NEW_DIALECTS)
def test_init_then_reports_from_both_antennas(rig, dialect):
    sim, session, lane = rig(dialect)
    wait_for(lambda: len({(r.epc, r.antenna) for r in lane.reports}) == 3, what="reads of all three tags")
    got = {(r.epc, r.antenna) for r in lane.reports}
    assert got == {(EPCS[0], 1), (EPCS[1], 2), (EPCS[2], 1)}
    snap = session.snapshot()
    assert (snap["model"], snap["firmware"]) == MODELS[dialect] and snap["state"] == "up"
    assert snap["decode_errors"] == 0 and [s for s, _, _ in lane.states] == ["connecting", "up"]
    rssi = {r.epc: r.rssi for r in lane.reports}
    assert -51 <= rssi[EPCS[0]] <= -45 and -63 <= rssi[EPCS[2]] <= -57


def test_idle_answers_keep_an_empty_field_up(rig):  # the three dialects side by side
    rigs = [rig(dialect, EMPTY) for dialect in NEW_DIALECTS]
    wait_for(lambda: all(session.state == "up" for _, session, _ in rigs), what="up")
    time.sleep(2.5 * SILENCE_S)
    for sim, session, lane in rigs:
        assert lane.count("down") == 0 and session.state == "up" and lane.n_reports() == 0, session.dialect
        assert time.monotonic() - session.alive_mono < 0.5, session.dialect


def test_silence_means_down_within_the_timeout_then_recovery(rig):
    rigs = [rig(dialect) for dialect in NEW_DIALECTS]
    wait_for(lambda: all(lane.n_reports() > 3 for _, _, lane in rigs), what="reports")
    for sim, _, _ in rigs:
        sim.mute()
    muted_at = time.monotonic()
    wait_for(lambda: all(lane.count("down") == 1 for _, _, lane in rigs), timeout=3, what="down")
    for sim, session, lane in rigs:
        down_at = [t for s, _, t in lane.states if s == "down"][0]
        assert down_at - muted_at <= SILENCE_S + 0.3, session.dialect
        assert "no report and no keep-alive" in session.last_error
        sim.mute(False)
    for sim, session, lane in rigs:
        wait_for(lambda: lane.count("up") == 2, timeout=5, what=f"{session.dialect} up again")
        n = lane.n_reports()
        wait_for(lambda: lane.n_reports() > n + 3, what=f"{session.dialect} reports after recovery")
        assert session.snapshot()["reconnects"] == 1


@pytest.mark.parametrize("dialect", NEW_DIALECTS)
def test_stop_closes_the_port_and_ends_the_thread(rig, dialect):
    sim, session, lane = rig(dialect)
    wait_for(lambda: lane.n_reports() > 0, what="reports")
    session.stop()
    assert not session.transport.is_open and not session._thread.is_alive()
    assert lane.states[-1][0] == "stopped"
    if dialect == "alien":  # the reader is told to stop reading
        assert sim.model.commands[-1] == "set AutoMode = Off" and sim.model.settings["AutoMode"] == "OFF"


# --- R2000 ------------------------------------------------------------------------------------
def _r2000_commands(sim, cmd):
    return [c for c in sim.model.commands if c.command == cmd]


def test_r2000_power_is_written_only_when_it_differs(rig):
    sim, session, lane = rig("r2000", power_dbm=20, power_per_port=True)
    wait_for(lambda: lane.n_reports() > 0, what="reports")
    assert sim.model.power == [30, 30, 30, 30] and len(_r2000_commands(sim, r2000.Cmd.SET_OUTPUT_POWER)) == 1
    sim2, _, lane2 = rig("r2000")  # already at 30 dBm: left alone, no flash write
    wait_for(lambda: lane2.n_reports() > 0 and len(sim2.model.commands) >= 6, what="reports")
    assert not _r2000_commands(sim2, r2000.Cmd.SET_OUTPUT_POWER)
    inventory = [c.command for c in sim2.model.commands][2:6]
    assert inventory == [0x74, 0x89, 0x74, 0x89]  # work antenna before every round, antennas in turn
    assert [c.data for c in _r2000_commands(sim2, r2000.Cmd.SET_WORK_ANTENNA)][:2] == [b"\x00", b"\x01"]


def test_r2000_missing_antenna_is_logged_once_and_the_other_keeps_reading(rig, caplog):
    caplog.set_level(logging.WARNING, logger="agent.readers.r2000_session")
    sim, session, lane = rig("r2000", missing={2})
    wait_for(lambda: sim.model.rounds > 10, what="rounds")
    assert {r.antenna for r in lane.reports} == {1} and session.state == "up"
    warnings = [r.getMessage() for r in caplog.records if "ANTENNA_MISSING" in r.getMessage()]
    assert warnings == ["reader booth: antenna 2: ANTENNA_MISSING"]


def test_r2000_antenna_outside_its_ports_is_a_clear_error(rig):
    sim, session, lane = rig("r2000", antennas=(1, 5))
    wait_for(lambda: session.state == "down", what="down")
    assert session.last_error == "reader booth: antennas [5]: an R2000 reader has ports 1-4"


# --- Chafon ----------------------------------------------------------------------------------
def test_chafon_uhfreader18_gets_the_bare_command(rig):
    sim, session, lane = rig("chafon", antennas=(1,), type_code=0x09)
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    assert session.bare and session.snapshot()["model"] == "UHFReader18"
    assert {c.data for c in sim.model.commands if c.command == chafon.Cmd.INVENTORY} == {b""}
    assert {(r.epc, r.antenna, r.rssi) for r in lane.reports} == {(EPCS[0], 1, None), (EPCS[2], 1, None)}


def test_chafon_refusing_parameters_falls_back_to_the_bare_form(rig):
    sim, session, lane = rig("chafon", antennas=(1,), parameters=False)
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    assert session.bare and session.snapshot()["model"] == "UHFReader288M"


def test_chafon_multi_frame_rounds(rig):
    sim, session, lane = rig("chafon", antennas=(1,), tags_per_frame=1)  # two tags on port 1: two frames per round
    wait_for(lambda: lane.n_reports() > 10, what="reports")
    rounds = sim.model.rounds
    assert rounds >= 5 and abs(lane.epcs()[EPCS[0]] - lane.epcs()[EPCS[2]]) <= 1  # both frames of each round


# --- Alien -----------------------------------------------------------------------------------
def test_alien_settings_and_polling(rig):
    sim, session, lane = rig("alien")
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    s = sim.model.settings
    assert (s["TagListFormat"], s["TagListCustomFormat"], s["PersistTime"]) == ("Custom", alien.DRIVER_FORMAT, "-1")
    assert (s["AutoMode"], s["NotifyMode"], s["AntennaSequence"], s["TagListAntennaCombine"]) == (
        "ON", "OFF", "0, 1", "OFF")  # the reader's own spelling of what was set
    assert all(r.count >= 1 for r in lane.reports)


def test_alien_waits_for_a_booting_reader(rig):
    sim = SimulatedReader("alien", scenario(), seed=1, boot_s=1.5).start()
    sim.reboot()  # powered up just now: Boot> for 1.5 s
    time.sleep(0.1)
    lane = Lane()
    session = open_session("alien", sim.device, lane)
    session.boot_poll_s = 0.2
    try:
        session.start()
        wait_for(lambda: lane.n_reports() > 0, timeout=6, what="reports after the boot")
        assert lane.count("down") == 0 and sim.elapsed() > 1.5
    finally:
        session.stop()
        sim.stop()


def test_alien_left_in_autonomous_mode(rig):
    sim, session, lane = rig("alien", start_autonomous=True)
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    assert sim.model.settings["NotifyMode"] == "OFF" and session.state == "up"


def test_alien_reboot_is_noticed_at_once(rig):
    sim, session, lane = rig("alien", boot_s=0.6)
    wait_for(lambda: lane.n_reports() > 3, what="reports")
    sim.reboot()
    wait_for(lambda: lane.count("up") == 2, timeout=5, what="re-initialised")
    assert "booting" in session.last_error
    n = lane.n_reports()
    wait_for(lambda: lane.n_reports() > n, what="reports after the reboot")
    assert sim.model.settings["TagListFormat"] == "Custom"  # set again after the reboot lost it
