"""Every dialect's session against its simulator misbehaving, over real pseudo-terminals.

Each test switches one misbehaviour on for all four dialects at once (they run side by side,
so the file stays fast). Tags pass from 0.8 s to 2.4 s; every dialect sends tags only once its
session has initialised it (streaming or polling), so the simulator's tally of what it sent
cleanly can be compared with what reached on_report: with noise, corruption and split writes the two must be equal, report for
report, and damaged frames must have been counted as decode errors. Stalls, reboots and
unplugging cost the frames in flight when the line dies, so there every report must be
one the simulator sent cleanly (nothing invented), the session must go down and come back
as the dialect dictates, and reading must resume.
"""

import time

import pytest

from simulators.reader import SimulatedReader
from tests.reader_lane import DIALECTS, EPCS, SILENCE_S, Lane, open_session, scenario, settle_all
from tests.helpers import wait_for

WINDOW = scenario(at_s=0.8, dwell_s=1.6)


@pytest.fixture
def fleet(tmp_path):
    """start(scenario, per_dialect={d: {...}}, link=False, **sim options) -> {dialect: (sim, session, lane)}."""
    running = []

    def start(scen=WINDOW, per_dialect=None, link=False, silence_s=SILENCE_S, **options):
        rigs = {}
        for i, dialect in enumerate(DIALECTS):
            extra = dict(options, **(per_dialect or {}).get(dialect, {}))
            if link:
                extra["link"] = str(tmp_path / f"rfid-{dialect}")
            sim = SimulatedReader(dialect, scen, seed=10 + i, **extra).start()
            lane = Lane()
            session = open_session(dialect, extra.get("link", sim.device), lane, silence_s=silence_s)
            running.append((session, sim))
            session.start()
            rigs[dialect] = (sim, session, lane)
        return rigs

    yield start
    for session, sim in running:
        session.stop()
        sim.stop()


def run_through_the_window(rigs, until_s: float = 2.6) -> None:
    sim = next(iter(rigs.values()))[0]
    wait_for(lambda: sim.elapsed() > until_s, timeout=until_s + 2, what="the end of the pass")
    settle_all([lane for _, _, lane in rigs.values()])


def assert_every_clean_report_arrived(rigs, at_least: int = 20) -> None:
    for dialect, (sim, session, lane) in rigs.items():
        clean = sim.tally.snapshot()["clean"]
        assert sum(clean.values()) >= at_least, (dialect, clean)
        assert lane.epcs() == clean, (dialect, lane.epcs(), clean)
        assert set(clean) == set(EPCS), dialect


def assert_nothing_invented(rigs) -> None:
    """Quiet the simulators, let the sessions drain, compare, and let them talk again (so that
    stopping the sessions does not wait for answers)."""
    for sim, _, _ in rigs.values():
        sim.mute()
    settle_all([lane for _, _, lane in rigs.values()])
    for dialect, (sim, session, lane) in rigs.items():
        clean = sim.tally.snapshot()["clean"]
        assert lane.epcs() <= clean, (dialect, lane.epcs(), clean)  # each report was sent cleanly, once
    for sim, _, _ in rigs.values():
        sim.mute(False)


def test_noise_between_frames(fleet):
    rigs = fleet(noise=0.3)
    run_through_the_window(rigs)
    assert_every_clean_report_arrived(rigs)
    for dialect, (sim, session, lane) in rigs.items():
        assert sim.tally.snapshot()["noise_bursts"] > 10 and lane.count("down") == 0, dialect


def test_corrupted_frames_are_counted_never_read(fleet):
    # Chafon and Alien send fewer, fuller frames (several tags, or a poll's tally), so they
    # get more damage to see enough of it. A run of lost replies is silence as far as the
    # session knows; that is tested elsewhere, so here the silence timeout outlasts any run.
    more = {"corrupt": 0.2}
    rigs = fleet(corrupt=0.08, per_dialect={"chafon": more, "alien": more}, silence_s=3.0)
    run_through_the_window(rigs)
    assert_every_clean_report_arrived(rigs, at_least=10)
    for dialect, (sim, session, lane) in rigs.items():
        tally = sim.tally.snapshot()
        assert tally["corrupted"] >= 3 and sum(tally["damaged"].values()) > 0, (dialect, tally)
        assert session.decode_errors > 0, dialect


def test_split_writes_one_byte_at_a_time(fleet):
    rigs = fleet(split=True)
    run_through_the_window(rigs)
    assert_every_clean_report_arrived(rigs, at_least=10)
    for dialect, (sim, session, lane) in rigs.items():
        assert session.decode_errors == 0 and lane.count("down") == 0, dialect


def test_stall_longer_than_the_silence_timeout(fleet):
    rigs = fleet(scenario(), stall_s=1.6, stall_at=1.0)
    sim0 = rigs["thingmagic"][0]
    wait_for(lambda: all(lane.count("up") == 2 for _, _, lane in rigs.values()), timeout=6, what="all back up")
    for dialect, (sim, session, lane) in rigs.items():
        down_at = [t for s, _, t in lane.states if s == "down"][0]
        stalled_at = sim._t0 + 1.0
        assert down_at - stalled_at <= SILENCE_S + 0.3, dialect
        n = lane.n_reports()
        wait_for(lambda: lane.n_reports() > n + 3, what=f"{dialect} reports after the stall")
    assert sim0.elapsed() < 6
    assert_nothing_invented(rigs)


def test_reboot(fleet):
    quick = {"boot_s": 0.3}  # shorter than the silence timeout: the polling dialects never notice it
    rigs = fleet(scenario(), reboot_at=1.0, per_dialect={"r2000": quick, "chafon": quick, "alien": {"boot_s": 0.8}})
    wait_for(lambda: all(sim.elapsed() > 1.1 for sim, _, _ in rigs.values()), what="the reboot")
    counts = {d: lane.n_reports() for d, (_, _, lane) in rigs.items()}
    for dialect, (sim, session, lane) in rigs.items():
        wait_for(lambda: lane.n_reports() > counts[dialect] + 5, timeout=6, what=f"{dialect} reports after reboot")
    for dialect in ("thingmagic", "alien"):  # they say so (boot frame, Boot> prompt): re-initialised at once
        sim, session, lane = rigs[dialect]
        assert lane.count("down") == 1 and session.snapshot()["reconnects"] == 1, dialect
    for dialect in ("r2000", "chafon"):  # a short silence, the same settings after: nothing to redo
        assert rigs[dialect][2].count("down") == 0, dialect
        assert rigs[dialect][0].model.rounds > 0
    assert_nothing_invented(rigs)


def test_unplug_and_replug_behind_a_stable_link(fleet):
    rigs = fleet(scenario(), link=True, unplug_at=1.0, replug_after=0.8)
    wait_for(lambda: all(lane.count("up") == 2 for _, _, lane in rigs.values()), timeout=6, what="all back up")
    for dialect, (sim, session, lane) in rigs.items():
        down_at = [t for s, _, t in lane.states if s == "down"][0]
        assert down_at - (sim._t0 + 1.0) < 0.5, dialect  # an I/O error, not a timeout
        assert sim.unplugs == 1 and session.snapshot()["reconnects"] == 1, dialect
        n = lane.n_reports()
        wait_for(lambda: lane.n_reports() > n + 3, what=f"{dialect} reports after the replug")
    assert_nothing_invented(rigs)


def test_one_reader_unplugged_the_others_keep_reading(tmp_path):
    link = str(tmp_path / "rfid-gate")
    gone = SimulatedReader("chafon", scenario(), seed=3, link=link).start()
    stays = SimulatedReader("r2000", scenario(), seed=4).start()
    lane_gone, lane_stays = Lane("gate"), Lane("booth")
    sessions = [open_session("chafon", link, lane_gone), open_session("r2000", stays.device, lane_stays)]
    try:
        for session in sessions:
            session.start()
        wait_for(lambda: lane_gone.n_reports() > 3 and lane_stays.n_reports() > 3, what="both reading")
        gone.unplug()
        wait_for(lambda: lane_gone.count("down") == 1, timeout=2, what="down")
        n = lane_stays.n_reports()
        time.sleep(1.0)
        assert lane_stays.n_reports() > n + 10 and lane_stays.count("down") == 0
        gone.replug()
        wait_for(lambda: lane_gone.count("up") == 2, timeout=5, what="back up")
    finally:
        for session in sessions:
            session.stop()
        gone.stop()
        stays.stop()
