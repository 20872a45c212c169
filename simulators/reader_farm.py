"""`python -m simulators.reader_farm SCENARIO...`: many simulated readers in one process, one pty each.

For fleet runs (tests/bench/fleet_bench.py): a hundred lanes each with its own reader
simulator process would spend a core on a hundred idle interpreters; here every reader is
the same `SimulatedReader` as `python -m simulators.reader` (its own pty, its own thread,
its own scenario), only sharing one interpreter. `--link-dir DIR` keeps a stable symlink
per reader, `DIR/<scenario file stem>` (what each lane's config names as its reader url),
so the agents can be configured before the ptys exist. Each reader's scenario clock starts
when the farm starts. Prints `ready N` once every pty is open, then runs until SIGTERM or
SIGINT; at exit prints one JSON line with each reader's tally (EPC reports sent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulators.reader.runner import MODELS, SimulatedReader, until_signalled
from simulators.scenario import ScenarioError, load_scenario


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.reader_farm", description=__doc__.splitlines()[0])
    p.add_argument("scenarios", nargs="+", type=Path, help="one scenario JSON file per reader")
    p.add_argument("--link-dir", type=Path, required=True, help="where each reader's symlink goes")
    p.add_argument("--dialect", default="thingmagic", choices=sorted(MODELS))
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    try:
        scenarios = [(path.stem, load_scenario(str(path))) for path in args.scenarios]
    except ScenarioError as e:
        print(f"reader_farm: {e}", file=sys.stderr)
        return 2
    done = until_signalled()
    args.link_dir.mkdir(parents=True, exist_ok=True)
    readers: dict[str, SimulatedReader] = {}
    try:
        for i, (name, scenario) in enumerate(scenarios):
            readers[name] = SimulatedReader(args.dialect, scenario, link=str(args.link_dir / name),
                                            seed=args.seed + i).start()
        print(f"ready {len(readers)}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        tallies = {}
        for name, reader in readers.items():
            reader.stop()
            tallies[name] = sum(reader.tally.snapshot()["clean"].values())
        print(json.dumps({"reports_sent": tallies}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
