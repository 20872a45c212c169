"""PollCycle's pacing of polled dialects: rounds back to back while tags answer; a whole
turn of the antennas with nothing in the field waits EMPTY_FIELD_PAUSE_S (replies are read
as they land, so an instant reader would otherwise be polled hundreds of times a second)."""

from agent.readers.polling import EMPTY_FIELD_PAUSE_S, PollCycle


def run_round(cycle, now, seen, tags):
    assert cycle.due(now)
    cycle.started(now)
    seen[0] += tags
    cycle.finished(now)


def test_rounds_with_tags_follow_each_other_at_once():
    seen = [0]
    cycle = PollCycle((1, 2), timeout_s=2.0, tags_seen=lambda: seen[0])
    for k in range(6):
        run_round(cycle, 10.0, seen, tags=3 if k % 2 else 0)  # antenna 2 sees the truck, antenna 1 not
    assert cycle.due(10.0)


def test_a_whole_empty_turn_of_the_antennas_pauses_then_a_tag_ends_the_pause():
    seen = [0]
    cycle = PollCycle((1, 2), timeout_s=2.0, tags_seen=lambda: seen[0])
    run_round(cycle, 10.0, seen, tags=0)
    assert cycle.due(10.0)  # one empty antenna is not an empty field
    run_round(cycle, 10.0, seen, tags=0)
    assert not cycle.due(10.0) and not cycle.due(10.0 + EMPTY_FIELD_PAUSE_S / 2)
    run_round(cycle, 10.0 + EMPTY_FIELD_PAUSE_S, seen, tags=5)
    assert cycle.due(10.0 + EMPTY_FIELD_PAUSE_S)


def test_without_a_tag_count_the_cycle_paces_as_configured():
    cycle = PollCycle((1,), timeout_s=2.0, pause_s=0.0)
    for _ in range(3):
        assert cycle.due(5.0)
        cycle.started(5.0)
        cycle.finished(5.0)
    assert cycle.due(5.0)
