"""`python -m tests.bench.fuzz` (`make fuzz`): a million random and mutated frames per dialect.

For each dialect's reader-to-host and host-to-reader decoders: frames built with the
codec's encoders (tag frames, replies, round ends, status and error frames; for Alien,
Text, Terse and Custom lines, replies, prompts and notification lines) are mutated (bits
flipped, bytes replaced, inserted, deleted, duplicated, the frame cut short or spliced
into another) or replaced by random bytes, then decoded in batches of a thousand, once
whole with `final=True` and once fed in random pieces, as a session would get them. The
fuzzer counts exceptions (the bar is zero) and checks the codec's contract on every call:
a list and a suffix of the input come back, only known item types, nothing left over
when final. Options: `--frames N` per dialect (default 1,000,000), `--dialect D`
(repeatable), `--seed S`. Exit 1 if anything raised or broke the contract.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback

from agent.readers import alien, chafon, r2000
from agent.readers import thingmagic as tm
from agent.readers.report import DecodeError, TagReport

BATCH = 1000


def _epc(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(2 * rng.choice((1, 4, 6, 6, 6, 8, 15, 31))))


def tm_frames(rng):
    return [tm.encode_tag_frame(_epc(rng), rng.randrange(tm.META_KNOWN + 1), rssi=rng.randint(-128, -1),
                                antenna=rng.randint(1, 16), data=_epc(rng)[:rng.randint(0, 8)]),
            tm.encode_keepalive(), tm.encode_reply(rng.choice(list(tm.Opcode)), rng.choice(list(tm.Status)),
                                                   bytes(rng.randrange(256) for _ in range(rng.randint(0, 24))))]


def tm_commands(rng):
    return [tm.build_start_reading(rng.randrange(tm.META_KNOWN + 1)), tm.build_stop_reading(), tm.build_get_version(),
            tm.build_set_antenna_ports(range(1, rng.randint(2, 5))), tm.build_set_region("NA2")]


def r2000_frames(rng):
    epc, port = _epc(rng), rng.randint(1, 8)
    return [r2000.encode_tag(epc, port, rng.randint(-129, -2), rng.randrange(64)),
            r2000.encode_tag(epc, port, -50, 9, phase=rng.randrange(65536), cmd=r2000.Cmd.SESSION_TARGET_INVENTORY),
            r2000.encode_round_end(rng.randint(1, 4), rng.randrange(65536), rng.randrange(2 ** 32)),
            r2000.encode_inventory_error(rng.choice(list(r2000.Result)), antenna=rng.choice((None, 1, 2, 3, 4))),
            r2000.encode_result(rng.choice(list(r2000.Cmd)), rng.choice(list(r2000.Result))),
            r2000.encode_firmware_version(rng.randrange(256), rng.randrange(256)),
            r2000.encode_buffer_tag(epc, rng.randint(1, 4))]


def r2000_commands(rng):
    return [r2000.build_real_time_inventory(rng.randrange(256)), r2000.build_set_work_antenna(rng.randint(1, 4)),
            r2000.build_get_firmware_version(), r2000.build_set_output_power([rng.randrange(34)] * 4)]


def chafon_frames(rng):
    records = [(_epc(rng)[:30], rng.randint(-129, 126)) for _ in range(rng.randint(0, 5))]
    return [chafon.encode_inventory(records, rng.choice((1, 2, 3, 4)), rng.choice((1, 2, 3, 4, None))),
            chafon.encode_reply(chafon.Cmd.INVENTORY, rng.choice(list(chafon.Status))),
            chafon.encode_reader_info(rng.choice((0x09, 0x0C, 0x10)))]


def chafon_commands(rng):
    return [chafon.build_inventory(rng.choice((None, 1, 2, 3, 4))), chafon.build_get_reader_info()]


def alien_frames(rng):
    epc = _epc(rng).hex().upper()
    lines = [alien.encode_custom_line(alien.DRIVER_FORMAT, epc, rng.randint(1, 4), rng.uniform(-99, 0), rng.randint(1, 99)),
             alien.encode_text_line(epc, rng.randint(1, 4), rng.randint(1, 99)), alien.encode_terse_line(epc, 2, 3),
             "TagListFormat = Custom", "Error 1: Command not understood.", "(No Tags)", alien.NOTIFY_BEGIN,
             "#Reason: TAGS ADDED", alien.NOTIFY_END]
    return [line.encode() + rng.choice((b"\r\n", b"\n", b"\r\n\x00")) for line in lines] + [b"Alien>", b"Boot>"]


def alien_commands(rng):
    return [alien.build_get("TagList"), alien.build_set("AutoMode", "On"), b"clear TagList\r\n"]


TARGETS = {  # name -> [(direction, decode, builder, item types)]
    "thingmagic": [("reader", tm.decode, tm_frames, (TagReport, DecodeError, tm.Reply)),
                   ("host", tm.decode_host, tm_commands, (DecodeError, tm.Command))],
    "r2000": [("reader", r2000.decode, r2000_frames,
               (TagReport, DecodeError, r2000.Reply, r2000.RoundEnd, r2000.InventoryError)),
              ("host", r2000.decode_host, r2000_commands, (DecodeError, r2000.Command))],
    "chafon": [("reader", chafon.decode, chafon_frames, (TagReport, DecodeError, chafon.Reply)),
               ("host", chafon.decode_host, chafon_commands, (DecodeError, chafon.Command))],
    "alien": [("reader", alien.decode, alien_frames, (TagReport, DecodeError, alien.Message)),
              ("host", alien.decode_host, alien_commands, (DecodeError, alien.HostCommand))],
}


def mutate(frame: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(10)
    if choice == 0 or not frame:
        return frame
    buf = bytearray(frame)
    if choice == 1:
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif choice == 2:
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif choice == 3:
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif choice == 4:
        at = rng.randrange(len(buf))
        del buf[at:at + rng.randint(1, 8)]
    elif choice == 5:
        del buf[rng.randrange(len(buf)):]
    elif choice == 6:
        at = rng.randrange(len(buf))
        buf[at:at] = buf[at:at + rng.randint(1, 16)]
    elif choice == 7:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif choice == 8:
        return bytes(rng.choice(b"0123456789ABCDEF ,:|\r\n\x00-.#>") for _ in range(rng.randint(1, 64)))
    return bytes(buf)


def _check(decode, data: bytes, final: bool, kinds) -> tuple[list, bytes]:
    items, rest = decode(data, final)
    if not isinstance(items, list) or not data.endswith(rest) or (final and rest):
        raise AssertionError(f"contract broken: rest {rest[:40]!r} of {len(data)} bytes, final={final}")
    for item in items:
        if not isinstance(item, kinds):
            raise AssertionError(f"unknown item {item!r}")
    return items, rest


def fuzz_one(decode, builder, kinds, frames: int, rng: random.Random) -> dict:
    stats = {"frames": 0, "bytes": 0, "exceptions": 0, "reports": 0, "errors": 0, "samples": []}
    templates: list[bytes] = []
    while stats["frames"] < frames:
        if len(templates) < 64 or rng.random() < 0.05:
            templates = (templates + builder(rng))[-256:]
        batch = [mutate(rng.choice(templates), rng) for _ in range(min(BATCH, frames - stats["frames"]))]
        data = b"".join(batch)
        stats["frames"] += len(batch)
        stats["bytes"] += len(data)
        try:
            items, _ = _check(decode, data, True, kinds)
            stats["reports"] += sum(1 for i in items if type(i) is TagReport)
            stats["errors"] += sum(1 for i in items if type(i) is DecodeError)
            rest, pos = b"", 0
            while pos < len(data):  # the same bytes in pieces, as reads from a port
                step = rng.randint(1, 512)
                _, rest = _check(decode, rest + data[pos:pos + step], False, kinds)
                pos += step
            _check(decode, rest, True, kinds)
        except Exception:  # the fuzzer's whole point: count it, keep one sample, go on
            stats["exceptions"] += 1
            if len(stats["samples"]) < 3:
                stats["samples"].append({"input_hex": data[:2000].hex(), "traceback": traceback.format_exc()})
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames per dialect (default 1,000,000)")
    parser.add_argument("--dialect", action="append", choices=sorted(TARGETS), help="only this dialect (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results, failed = {}, False
    for name in args.dialect or list(TARGETS):
        started = time.perf_counter()
        rng = random.Random(f"{args.seed}-{name}")
        per = {}
        for direction, decode, builder, kinds in TARGETS[name]:
            share = args.frames if direction == "reader" else max(1, args.frames // 10)
            per[direction] = fuzz_one(decode, builder, kinds, share, rng)
        seconds = time.perf_counter() - started
        exceptions = sum(p["exceptions"] for p in per.values())
        failed |= exceptions > 0
        results[name] = {"seconds": round(seconds, 1), "exceptions": exceptions, **{
            d: {k: v for k, v in p.items() if k != "samples" or v} for d, p in per.items()}}
        print(f"{name:<10} reader {per['reader']['frames']:>9,} frames, host {per['host']['frames']:>8,}: "
              f"{exceptions} exceptions, {per['reader']['reports']:,} reports, {per['reader']['errors']:,} errors "
              f"counted, {seconds:.0f} s", flush=True)
    with open("fuzz-results.json", "w") as f:
        json.dump(results, f, indent=2)
    print("written: fuzz-results.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
