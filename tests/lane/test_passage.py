"""Passage grouping on a synthetic timeline: open, close, strays, slow trucks."""

from agent.config import AggregationConfig
from agent.lane.passage import Aggregator, Read

CFG = AggregationConfig(idle_close_s=2.0, max_passage_s=30.0, min_reads=2, min_rssi=-75, rearm_s=5.0)


class Feed:
    def __init__(self, cfg=CFG):
        self.agg = Aggregator(cfg)
        self.next_id = 1
        self.closed = []

    def read(self, t, epc, rssi=-50, antenna=1, reader="booth", count=1):
        r = Read(self.next_id, reader, epc, antenna, rssi, count, int(1_700_000_000_000 + t * 1000), t)
        self.next_id += 1
        self.closed += self.agg.add(r)
        return r.read_id

    def tick(self, t):
        self.closed += self.agg.tick(t)

    def passages(self):
        return [c for c in self.closed if c.passage is not None]


def test_one_truck_closes_after_idle():
    f = Feed()
    for i in range(10):
        f.read(i * 0.1, "DRIVER")
        f.read(i * 0.1 + 0.05, "TRUCK", antenna=2)
    f.tick(2.5)
    assert f.passages() == []
    f.tick(2.95)
    [c] = f.passages()
    assert c.reason == "idle"
    assert [s.epc for s in c.passage.qualifying(2)] == ["DRIVER", "TRUCK"]
    sighting = c.passage.tags["TRUCK"]
    assert sighting.reads == 10 and sighting.antennas.most_common(1)[0][0] == 2
    assert len(c.read_ids) == 20


def test_two_trucks_are_two_passages():
    f = Feed()
    for i in range(5):
        f.read(i * 0.2, "A")
    for i in range(5):
        f.read(10 + i * 0.2, "B")
    f.tick(20)
    assert [list(c.passage.tags) for c in f.passages()] == [["A"], ["B"]]


def test_weak_reads_never_open_a_passage():
    f = Feed()
    ids = [f.read(i * 0.1, "NEXTLANE", rssi=-80) for i in range(10)]
    f.tick(10)
    assert f.passages() == []
    assert sorted(i for c in f.closed for i in c.read_ids) == ids  # consumed as strays, not left behind


def test_single_read_tag_is_a_stray_and_does_not_pollute():
    f = Feed()
    for i in range(5):
        f.read(i * 0.1, "TRUCK")
    f.read(0.25, "PASSERBY")
    f.tick(5)
    [c] = f.passages()
    assert [s.epc for s in c.passage.qualifying(2)] == ["TRUCK"]
    assert len(c.read_ids) == 6


def test_lone_stray_read_makes_no_passage():
    f = Feed()
    f.read(0, "PASSERBY")
    f.tick(5)
    assert f.passages() == [] and f.closed[0].reason == "stray"


def test_max_duration_closes_and_same_tags_do_not_reopen_until_they_leave():
    f = Feed(AggregationConfig(idle_close_s=2.0, max_passage_s=10.0, min_reads=2, min_rssi=-75, rearm_s=5.0))
    t = 0.0
    while t < 180:  # a truck parked at the booth for three minutes
        f.read(t, "TRUCK")
        t += 0.5
    f.tick(181)
    assert [c.reason for c in f.passages()] == ["max_duration"]
    f.tick(190)  # it left the field more than rearm_s ago
    for i in range(4):
        f.read(191 + i * 0.2, "TRUCK")
    f.tick(200)
    assert [c.reason for c in f.passages()] == ["max_duration", "idle"]


def test_tags_fading_for_a_moment_do_not_make_a_second_truck():
    f = Feed()
    for i in range(5):
        f.read(i * 0.2, "TRUCK")
    f.tick(3.9)  # closed on idle
    for i in range(5):  # read again 3 s after the last read: within rearm_s
        f.read(4.0 + i * 0.2, "TRUCK")
    f.tick(20)
    assert len(f.passages()) == 1


def test_read_count_metadata_counts_towards_min_reads():
    f = Feed()
    f.read(0, "TAG", count=3)
    f.tick(5)
    [c] = f.passages()
    assert c.passage.tags["TAG"].reads == 3


def test_next_deadline():
    f = Feed()
    assert f.agg.next_deadline() is None
    f.read(1.0, "X")
    assert f.agg.next_deadline() == 3.0
