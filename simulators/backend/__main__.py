"""`python -m simulators.backend`: play one country's back end against its broker, in a terminal.

It publishes the cache file's records (or --snapshot-records N generated ones) as a
snapshot when it first connects, in parts when large, and not again on a reconnect
(the lanes' persistent sessions keep what they missed) unless --snapshot-on-connect
always. It answers a resync request with the messages after the lane's have_seq while
its history still holds them all, and with a fresh snapshot otherwise. It optionally
acks crossings, and prints one line per message received (or one JSON object per line
with --json), with any verification problem under it. On SIGTERM or Ctrl-C it
disconnects (its session stays on the broker), prints a summary on stderr and exits 0,
or 1 if anything failed verification.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import cbor2

from simulators.backend.client import HISTORY_MB, HISTORY_MESSAGES, MAX_MESSAGE_KB, SNAPSHOT_ON_CONNECT, Backend
from simulators.backend.render import Received, describe
from simulators.backend.verify import SECTIONS

EXAMPLES = """examples:
  python -m simulators.backend --name cbsa --country CA --port 1883 --cache /tmp/lane/cache-CA.cbor --ack
  python -m simulators.backend --name cbp --country US --port 1884 --cache /tmp/lane/cache-US.json \\
      --expect-share tags,conveyance,findings,referral --mqtt-version 3.1.1 --json
  # a port-sized cache: a million generated records, sent as a snapshot in parts of at most 1,024 KB
  python -m simulators.backend --name cbsa --country CA --port 1883 --snapshot-records 1000000 --seq-file /tmp/ca.seq
  # smaller parts (an agent configured with store.max_message_kb = 256)
  python -m simulators.backend --name cbsa --country CA --snapshot-records 50000 --max-message-kb 256
  # the old behaviour: a full snapshot on every (re)connect
  python -m simulators.backend --name cbsa --country CA --cache /tmp/lane/cache-CA.cbor --snapshot-on-connect always
  # keep a longer resync history: a lane's resync from up to 5,000 messages back gets just those messages
  python -m simulators.backend --name cbsa --country CA --cache /tmp/lane/cache-CA.cbor --history 5000 --history-mb 256
"""


def load_records(path: Path) -> list[dict]:
    """Records from a JSON or CBOR file holding cache messages (one, or a CBOR sequence) or a list."""
    data = path.read_bytes()
    if path.suffix == ".json" or data.lstrip()[:1] in (b"{", b"["):
        items = [json.loads(data)]
    else:
        stream, items = io.BytesIO(data), []
        decoder = cbor2.CBORDecoder(stream)
        while stream.tell() < len(data):
            items.append(decoder.decode())
    records: list[dict] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == "cache":
            if item.get("op") != "delete":
                records += item.get("records", [])
        elif isinstance(item, list):
            records += item
        else:
            raise ValueError(f"{path}: expected cache messages or a list of records")
    return records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulators.backend", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="the back end's name, as in the agent's [[backends]]")
    p.add_argument("--country", required=True, help="its ISO 3166 alpha-2 code: the cache source")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--topic-prefix", default="border")
    p.add_argument("--port-code", default="0901")
    records = p.add_mutually_exclusive_group()
    records.add_argument("--cache", type=Path, help="records to publish (simulators.fleet output, CBOR or JSON)")
    records.add_argument("--snapshot-records", type=_positive, metavar="N",
                         help="publish N generated records instead (simulators.fleet's port-sized cache: "
                              "about half drivers, the rest trucks, trailers, trips and shipments), "
                              "e.g. --snapshot-records 1000000")
    p.add_argument("--seed", type=int, default=1, help="seed of the --snapshot-records cache (default 1)")
    p.add_argument("--max-message-kb", type=_positive, default=MAX_MESSAGE_KB,
                   help="every cache message stays under this size, as CBOR (signed or not); a larger snapshot "
                        f"goes in parts (default {MAX_MESSAGE_KB}, the agent's store.max_message_kb), "
                        "e.g. --max-message-kb 256")
    p.add_argument("--snapshot-on-connect", choices=SNAPSHOT_ON_CONNECT, default="first",
                   help="first (default): a snapshot on the first connect only, when nothing was sent yet (a "
                        "--seq-file above 0 means it was); always: on every (re)connect, the old behaviour; never: "
                        "only when a lane asks for a resync. e.g. --snapshot-on-connect always")
    p.add_argument("--history", type=_count, default=HISTORY_MESSAGES, metavar="N",
                   help=f"messages kept to answer a resync with just what followed the lane's have_seq (default "
                        f"{HISTORY_MESSAGES}; 0: always answer with a snapshot), e.g. --history 5000")
    p.add_argument("--history-mb", type=float, default=HISTORY_MB, metavar="MB",
                   help=f"and at most this many MB of them (default {HISTORY_MB}), e.g. --history-mb 256")
    p.add_argument("--ack", action="store_true", help="acknowledge crossings on B/acks")
    p.add_argument("--mqtt-version", choices=("5", "3.1.1"), default="5")
    p.add_argument("--json", action="store_true", help="one JSON object per received message")
    p.add_argument("--expect-share", help="comma-separated sections this back end must receive, no more")
    p.add_argument("--first-seq", type=int, default=1, help="count seq gaps from here (default 1)")
    p.add_argument("--seq-file", type=Path, help="keep the cache seq here across restarts")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections and cache messages")
    return p.parse_args(argv)


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


_positive, _count = _at_least(1), _at_least(0)


def generated_records(args: argparse.Namespace):
    """--snapshot-records N: the fleet generator's port-sized cache, streamed (never a list)."""
    from simulators.fleet import iter_big_cache, shape_for_records

    leaving = "US" if args.country != "US" else "CA"
    return iter_big_cache(args.seed, int(time.time() * 1000), shape_for_records(args.snapshot_records),
                          args.port_code, args.country, leaving)


def _jsonable(value):
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    share = None
    if args.expect_share is not None:
        share = [s.strip() for s in args.expect_share.split(",") if s.strip()]
        unknown = set(share) - set(SECTIONS)
        if unknown:
            print(f"backend: --expect-share: unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}",
                  file=sys.stderr)
            return 2
    try:
        records = (load_records(args.cache) if args.cache else
                   generated_records(args) if args.snapshot_records else [])
    except (OSError, ValueError, cbor2.CBORDecodeError) as e:
        print(f"backend: cannot read --cache: {e}", file=sys.stderr)
        return 2

    def show(received: Received) -> None:
        if args.json:
            print(json.dumps(received.to_json(), default=_jsonable), flush=True)
        else:
            print(describe(received, args.country), flush=True)

    backend = Backend(args.name, args.country, args.host, args.port, args.topic_prefix, args.port_code,
                      records=records, ack=args.ack, mqtt_version=args.mqtt_version, on_message=show,
                      expect_share=share, first_seq=args.first_seq, seq_file=args.seq_file,
                      snapshot_on_connect=args.snapshot_on_connect, max_message_kb=args.max_message_kb,
                      history_messages=args.history, history_mb=args.history_mb)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"{args.name} ({args.country}): {backend.record_count} records for {backend.cache_topic}, "
          f"watching {args.topic_prefix}/{args.port_code}/+/... on {args.host}:{args.port}", file=sys.stderr)
    backend.start(timeout=None)  # paho keeps trying while the broker is away
    while not stop.wait(0.5):
        pass
    backend.stop()
    problems = backend.problems()
    lanes = ", ".join(f"{lane}: seq {s[0]}..{s[-1]}" for lane, s in backend.seqs.items() if s) or "no lanes"
    resyncs = backend.resyncs
    print(f"{args.name}: {len(backend.events)} crossings ({lanes}), {backend.duplicates} duplicates, "
          f"{len(backend.acks_sent)} acked, {len(problems)} problems, cache seq {backend.cache_seq}, "
          f"{len(resyncs)} resyncs ({sum(r['answer'] == 'messages' for r in resyncs)} answered with messages)",
          file=sys.stderr)
    for problem in problems:
        print(f"  PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
