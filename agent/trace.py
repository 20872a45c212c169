"""Latency trace: when a report, a read, an event or a PUBACK passed a moment of the data path.

Off unless the environment names a file: `LANEAGENT_TRACE=/path/trace.txt laneagent run`.
Then every `emit(moment, ids)` appends one line `MONOTONIC MOMENT ID ...` (seconds of
`time.monotonic()`, six decimals). CLOCK_MONOTONIC is one clock for the whole Linux
system, so the bench reads these stamps against its own `time.monotonic()` (a subscriber's
receipt, a simulator's write) without converting anything. The moments (the latency bench
reads them, tests/bench/latency_bench.py):

- `received  MONO READER EPC`: a reader session decoded a report (MONO: the receipt stamp
  the read carries through the core, its id below);
- `journaled MONO ...`: the group commit that journaled (or aggregated) those reads returned;
- `committed LAST_T REASON EPC ...`: a closed passage's event transaction returned (LAST_T:
  its last read's stamp; by the closing rule it closed at LAST_T + idle_close_s);
- `puback BACKEND ITEM_TYPE ITEM_ID`: a back end's PUBACK for an outbox item (events: seq).

Why lazy ids: a hook passes a tuple or a generator, which costs next to nothing when the
trace is off (one global read and a return); nothing is formatted unless a file is open.
Each line is one `os.write` on an O_APPEND descriptor, so the reader, core and link
threads never interleave inside a line and no lock is taken.
"""

from __future__ import annotations

import os
import time
from typing import Iterable

ENV = "LANEAGENT_TRACE"

_path = os.environ.get(ENV) or None
_fd: int | None = None


def enabled() -> bool:
    return _path is not None


def emit(moment: str, ids: Iterable = ()) -> None:
    """Append `MONOTONIC MOMENT ID ...` when tracing is on; a no-op otherwise."""
    if _path is None:
        return
    global _fd
    now = time.monotonic()
    text = " ".join(map(str, ids))
    if not text:  # e.g. a commit that journaled no read: nothing to say
        return
    if _fd is None:
        _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_fd, f"{now:.6f} {moment} {text}\n".encode())


def read(path: str) -> list[tuple[float, str, list[str]]]:
    """A trace file -> [(monotonic, moment, ids)], in file order (for the bench and tests)."""
    out = []
    with open(path) as f:
        for line in f:
            stamp, moment, *ids = line.split()
            out.append((float(stamp), moment, ids))
    return out
