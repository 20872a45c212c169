"""Codec throughput per dialect (DESIGN part 4: >= 200,000 tag reports/s on one core).

For each dialect a long buffer of realistic reader output is built with the codec's own
encoders (96- and 128-bit EPCs, what the session asks for: ThingMagic streamed frames with
the metadata a TagReport carries and a keep-alive now and then; R2000 real-time inventory
rounds of tag frames and an end-of-round frame; Chafon inventory replies of up to three
records per frame; Alien `get TagList` replies in the driver's Custom format, NUL-ended,
with an idle `(No Tags)` poll now and then). Measured in one process and one thread: a
baseline loop that only walks frame starts or line ends (the floor any Python decoder
pays), `decode` over the whole buffer, and `decode` fed in 4 KiB reads the way a session
gets its bytes. Figures are tag reports (baseline: frames or lines) per second; the ratio
is what to compare across noisy machines. `run()` is the ThingMagic figure alone (as the
bench runner has always used it), `run_all()` one dict per dialect.
`python -m tests.bench.codec_bench [seconds]` prints run_all() as JSON.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time

from agent.readers import alien, chafon, r2000
from agent.readers import thingmagic as tm
from agent.readers.report import TagReport

BAR = 200_000
READ_SIZE = 4096


def _epcs(rng: random.Random) -> list[bytes]:
    return [bytes(rng.randrange(256) for _ in range(rng.choice((12, 12, 12, 16)))) for _ in range(40)]


def realistic_stream(frames: int = 20_000, seed: int = 42) -> tuple[bytes, int]:
    """ThingMagic: (bytes, number of tag frames in them)."""
    rng = random.Random(seed)
    tags = _epcs(rng)
    out, n = bytearray(), 0
    for i in range(frames):
        if i % 100 == 99:
            out += tm.encode_keepalive()
            continue
        out += tm.encode_tag_frame(rng.choice(tags), tm.META_REPORT, count=1, rssi=rng.randint(-75, -35),
                                   antenna=rng.randint(1, 4), frequency_khz=902750 + 500 * rng.randrange(50),
                                   timestamp_ms=i * 3, phase=rng.randrange(180))
        n += 1
    return bytes(out), n


def r2000_stream(tags_wanted: int = 20_000, seed: int = 42) -> tuple[bytes, int]:
    rng, out, n = random.Random(seed), bytearray(), 0
    tags = _epcs(rng)
    while n < tags_wanted:
        port = rng.randint(1, 4)
        in_round = rng.randint(0, 12)
        for _ in range(in_round):
            out += r2000.encode_tag(rng.choice(tags), port, rng.randint(-75, -35), rng.randrange(7, 60))
        out += r2000.encode_round_end(port, in_round * 20, in_round)
        n += in_round
    return bytes(out), n


def chafon_stream(tags_wanted: int = 20_000, seed: int = 42) -> tuple[bytes, int]:
    rng, out, n = random.Random(seed), bytearray(), 0
    tags = _epcs(rng)
    while n < tags_wanted:
        port, in_round = rng.randint(1, 4), rng.randint(0, 9)
        if not in_round:
            out += chafon.encode_inventory([], chafon.Status.INVENTORY_COMPLETE, port)
        for i in range(0, in_round, 3):
            chunk = [(rng.choice(tags), rng.randint(-75, -35)) for _ in range(min(3, in_round - i))]
            status = chafon.Status.MORE_DATA if i + 3 < in_round else chafon.Status.INVENTORY_COMPLETE
            out += chafon.encode_inventory(chunk, status, port)
        n += in_round
    return bytes(out), n


def alien_stream(tags_wanted: int = 20_000, seed: int = 42) -> tuple[bytes, int]:
    rng, out, n = random.Random(seed), bytearray(), 0
    tags = [t.hex().upper() for t in _epcs(rng)]
    while n < tags_wanted:
        in_list = rng.randint(0, 12)
        lines = [alien.encode_custom_line(alien.DRIVER_FORMAT, rng.choice(tags), rng.randint(1, 4),
                                          round(rng.uniform(-75, -35), 1), rng.randint(1, 9)) for _ in range(in_list)]
        out += alien.encode_reply(lines or ["(No Tags)"])
        n += in_list
    return bytes(out), n


def _walk_a0(buf: bytes) -> int:
    find, pos, count, n = buf.find, 0, 0, len(buf)
    while (start := find(b"\xa0", pos)) >= 0 and start + 1 < n:
        pos = start + buf[start + 1] + 2
        count += 1
    return count


def _walk_ff(buf: bytes) -> int:
    find, pos, count, n = buf.find, 0, 0, len(buf)
    while (start := find(b"\xff", pos)) >= 0 and start + 1 < n:
        pos = start + buf[start + 1] + 7
        count += 1
    return count


def _walk_len(buf: bytes) -> int:
    pos, count, n = 0, 0, len(buf)
    while pos < n:
        pos += buf[pos] + 1
        count += 1
    return count


_LINE_END = re.compile(rb"[^\r\n\x00]*[\r\n\x00]")


def _walk_lines(buf: bytes) -> int:
    return sum(1 for _ in _LINE_END.finditer(buf))


# dialect -> (stream builder, decode, baseline walk, baseline unit)
DIALECTS = {
    "thingmagic": (realistic_stream, tm.decode, _walk_ff, "frames"),
    "r2000": (r2000_stream, r2000.decode, _walk_a0, "frames"),
    "chafon": (chafon_stream, chafon.decode, _walk_len, "frames"),
    "alien": (alien_stream, alien.decode, _walk_lines, "line ends"),
}


def _whole(decode, buf: bytes) -> int:
    items, _ = decode(buf)
    return sum(1 for i in items if type(i) is TagReport)


def _chunked(decode, buf: bytes) -> int:
    rest, count = b"", 0
    for pos in range(0, len(buf), READ_SIZE):
        items, rest = decode(rest + buf[pos:pos + READ_SIZE])
        count += sum(1 for i in items if type(i) is TagReport)
    return count


def _rate(fn, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def measure(dialect: str, seconds: float = 2.0) -> dict:
    build, decode, walk, unit = DIALECTS[dialect]
    buf, tags = build()
    assert _whole(decode, buf) == _chunked(decode, buf) == tags  # the figures below count real reports
    share = seconds / 3
    baseline = _rate(lambda: walk(buf), share)
    whole = _rate(lambda: _whole(decode, buf), share)
    chunked = _rate(lambda: _chunked(decode, buf), share)
    return {
        "name": f"{dialect}_decode", "unit": "tag reports/s", "bar": BAR,
        "reports_per_s": round(whole), "chunked_reports_per_s": round(chunked),
        f"baseline_{unit.replace(' ', '_')}_per_s": round(baseline), "ratio_to_baseline": round(whole / baseline, 3),
        "meets_bar": min(whole, chunked) >= BAR, "buffer_bytes": len(buf), "tag_reports": tags,
    }


def run(seconds: float = 2.0) -> dict:
    """The ThingMagic figure, with the keys the bench runner reads."""
    out = measure("thingmagic", seconds)
    out["tag_frames"] = out["tag_reports"]  # the key it has always had
    return out


def run_all(seconds: float = 2.0) -> dict:
    """{dialect: figures} for every dialect, each measured for `seconds`."""
    return {dialect: measure(dialect, seconds) for dialect in DIALECTS}


if __name__ == "__main__":
    print(json.dumps(run_all(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0), indent=2))
