"""ThingMagic codec throughput (DESIGN part 4: >= 200,000 tag reports/s on one core).

`run(seconds)` builds a long buffer of realistic streamed tag frames (96- and 128-bit
EPCs, the metadata the session asks for, a keep-alive now and then) and measures, in
one process and one thread: a baseline loop that only walks frame starts (find FF,
skip LEN; the floor any Python decoder pays), `decode` over the whole buffer, and
`decode` fed in 4 KiB reads the way a session gets its bytes. Figures are tag
reports (or frames, for the baseline) per second; the ratio is what to compare across
noisy machines. `python -m tests.bench.codec_bench [seconds]` prints the dict as JSON.
"""

from __future__ import annotations

import json
import random
import sys
import time

from agent.readers import thingmagic as tm
from agent.readers.report import TagReport

BAR = 200_000
READ_SIZE = 4096


def realistic_stream(frames: int = 20_000, seed: int = 42) -> tuple[bytes, int]:
    """(bytes, number of tag frames in them)."""
    rng = random.Random(seed)
    tags = [bytes(rng.randrange(256) for _ in range(rng.choice((12, 12, 12, 16)))) for _ in range(40)]
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


def _frame_walk(buf: bytes) -> int:
    """Baseline: find each frame start and jump over it, nothing else."""
    find, pos, count = buf.find, 0, 0
    while (start := find(b"\xff", pos)) >= 0 and start + 1 < len(buf):
        pos = start + buf[start + 1] + 7
        count += 1
    return count


def _whole(buf: bytes) -> int:
    items, _ = tm.decode(buf)
    return sum(1 for i in items if type(i) is TagReport)


def _chunked(buf: bytes) -> int:
    rest, count, decode = b"", 0, tm.decode
    for pos in range(0, len(buf), READ_SIZE):
        items, rest = decode(rest + buf[pos:pos + READ_SIZE])
        count += sum(1 for i in items if type(i) is TagReport)
    return count


def _rate(fn, buf: bytes, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        done += fn(buf)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def run(seconds: float = 2.0) -> dict:
    buf, tag_frames = realistic_stream()
    assert _whole(buf) == _chunked(buf) == tag_frames  # the figures below count real reports
    share = seconds / 3
    baseline = _rate(_frame_walk, buf, share)
    whole = _rate(_whole, buf, share)
    chunked = _rate(_chunked, buf, share)
    return {
        "name": "thingmagic_decode", "unit": "tag reports/s", "bar": BAR,
        "reports_per_s": round(whole), "chunked_reports_per_s": round(chunked),
        "baseline_frames_per_s": round(baseline), "ratio_to_baseline": round(whole / baseline, 3),
        "meets_bar": min(whole, chunked) >= BAR, "buffer_bytes": len(buf), "tag_frames": tag_frames,
    }


if __name__ == "__main__":
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0), indent=2))
