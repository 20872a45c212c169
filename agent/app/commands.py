"""Back-end commands (DESIGN 2.3 `B/cmd`), run on their own thread, never on the writer's.

The core has already checked a command's seq (the replay guard) and committed it; here
it is run and its result goes back through the link of the back end that sent it.
Commands that change the lane (`set_random_rate`, `resync`) do it by a message to the
core, which owns that state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Mapping

from agent.core import LaneCore
from agent.core.inbox import AskResync, SetRandomRate
from agent.handoff import CommandMessage
from agent.lane.trust import STANDARD, TIERS, TRUSTED
from agent.store.reader import StoreReader

log = logging.getLogger(__name__)

MAX_RANDOM_RATE = 0.2
KNOWN = ("ping", "status", "resync", "set_random_rate", "diag")


class Commands:
    def __init__(self, store_path: str, core: LaneCore, links: Mapping, health: Callable[[], dict],
                 problems: Callable[[], list[str]]):
        self.store_path = store_path
        self.core = core
        self.links = links  # back end name -> link
        self.health = health
        self.problems = problems
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)

    def submit(self, cmd: CommandMessage | None) -> None:
        """An accepted command (from the core thread); None stops the thread."""
        self._queue.put(cmd)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (cmd := self._queue.get()) is not None:
            try:
                result = {"ok": True, "result": self.answer(cmd)}
            except (ValueError, TypeError) as e:
                result = {"ok": False, "error": str(e)}
            except Exception as e:  # a bug in one command must not stop the others
                log.exception("command %s failed", cmd.msg.get("command"))
                result = {"ok": False, "error": f"internal error: {type(e).__name__}"}
            log.info("back end %s: command %s (%s): %s", cmd.backend, cmd.msg.get("command"), cmd.msg["id"],
                     "done" if result["ok"] else result["error"])
            self.links[cmd.backend].send_command_result(cmd.msg["id"], cmd.msg.get("command"), result)

    def answer(self, cmd: CommandMessage) -> dict:
        """One command's result; ValueError = refused, with the reason."""
        name, args = cmd.msg.get("command"), cmd.msg.get("args", {})
        if name == "ping":
            return {"pong": True, "at_ms": int(time.time() * 1000)}
        if name == "status":
            return {**self.health(), "problems": self.problems()}
        if name == "diag":
            figures = self.core.figures()
            return {**self.health(), "problems": self.problems(), "counters": figures["counters"],
                    "set_aside": figures["set_aside"], "inbox": self.core.inbox.qsize(),
                    "threads": threading.active_count()}
        if name == "resync":
            source = self.links[cmd.backend].backend.country
            with StoreReader(self.store_path) as store:
                have = store.cache_seq(source)
            self.core.submit(AskResync(cmd.backend, source))
            return {"requested": source, "have_seq": have}
        if name == "set_random_rate":
            return self._set_random_rate(cmd.backend, args)
        raise ValueError(f"unknown command {name!r} (known: {', '.join(KNOWN)})")

    def _set_random_rate(self, backend: str, args: dict) -> dict:
        """`{rate}` sets the standard tier's rate (the old form); `{rate, tier}` either tier's (DESIGN 2.7)."""
        rate, tier = args.get("rate"), args.get("tier", STANDARD)
        if tier not in TIERS:
            raise ValueError(f"set_random_rate: args.tier must be one of {', '.join(TIERS)}, not {tier!r}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= MAX_RANDOM_RATE:
            raise ValueError(f"set_random_rate needs args.rate between 0 and {MAX_RANDOM_RATE}")
        was = self.core.crossings.random_rate_trusted if tier == TRUSTED else self.core.random_rate
        self.core.submit(SetRandomRate(float(rate), tier))
        log.warning("random referral rate (%s) change asked by back end %s: %s -> %s", tier, backend, was, rate)
        return {"random_rate": float(rate), "tier": tier, "was": was}
