"""One reader, kept alive: a thread that opens the port, initialises the reader and reads.

`ReaderSession` is dialect-independent. In its own thread it opens the pyserial URL,
runs the dialect's `initialise()` (commands with a reply timeout each), then feeds
every chunk it reads to the dialect's codec: tag reports go to `on_report`, decode
errors are counted, every valid frame (a keep-alive too) proves the reader alive.
Nothing valid for `silence_timeout_s`, an I/O error (unplug, hangup) or a dialect hook
raising `ReaderDown` (a reboot) makes the reader "down": the port is closed and
re-opened with exponential backoff and jitter (tenacity), re-running the init. A
session that had been healthy reconnects at once with a fresh backoff, so a flapping
reader backs off but a reader that dropped once does not wait. `stop()` sends the
dialect's stop command if the port is open, closes it and joins the thread. Dialects
subclass and fill in the hooks: `decode`, `initialise`, `on_frame`, `poll`,
`stop_command`, `is_stop_reply`. A frame left unfinished when the line goes quiet for
`flush_after_s` is decoded with `final=True` (an idle timeout, as UARTs use), so a cut-off
frame is counted and frames hidden behind a stray start byte come out without waiting for
more traffic. `PollCycle` paces the commands of polling dialects (one round per antenna).
Counters (`ReaderCounts`, decode failures per error code) are safe to read from any
thread through `snapshot()`. The transport can be wrapped (`wrap_transport`): the daemon
passes a recorder of the port's recent traffic for `laneagent diag`; sessions import
nothing of it, so the dependency points down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

from agent import trace
from agent.config import ReaderConfig
from agent.errors import ReaderError
from agent.readers.report import DecodeError, TagReport
from agent.readers.transport import PORT_ERRORS, SerialTransport

log = logging.getLogger(__name__)

OnReport = Callable[[str, TagReport, float, int], None]  # reader name, report, monotonic time, wall ms
OnState = Callable[[str, str, str], None]  # reader name, state, detail
WrapTransport = Callable[[Any], Any]  # transport -> a transport with the same methods (a traffic tap)
CONNECTING, UP, DOWN, STOPPED = "connecting", "up", "down", "stopped"
QUIET_MARGIN_S = 0.01


class ReaderDown(Exception):
    """The session lost its reader (silence, reboot, port failure); the message says why."""


class ReaderCounts:
    """What a session counts, written by its thread and read by any (the daemon's status
    thread): changed and copied under one lock, so `snapshot()` never sees a dict in the
    middle of a change nor a total that disagrees with its parts. Decode failures are kept
    per error code, rtl_433's `decode_fails[]`: every frame failing its checksum says
    "wrong baud rate", a few among good ones say "noise"."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reports = 0
        self._failures: dict[str, int] = {}
        self._reconnects = 0
        self._last_report_wall_ms: int | None = None

    def reported(self, count: int, wall_ms: int) -> None:
        with self._lock:
            self._reports += count
            self._last_report_wall_ms = wall_ms

    def failed(self, code: str) -> None:
        with self._lock:
            self._failures[code] = self._failures.get(code, 0) + 1

    def reconnected(self) -> None:
        with self._lock:
            self._reconnects += 1

    def snapshot(self) -> dict:
        """reports, decode_errors (total), decode_failures {code: count}, reconnects, last_report_wall_ms."""
        with self._lock:
            failures = dict(self._failures)
            return {"reports": self._reports, "decode_errors": sum(failures.values()), "decode_failures": failures,
                    "reconnects": self._reconnects, "last_report_wall_ms": self._last_report_wall_ms}


class DialectHooks:
    """What a dialect's session fills in; the session calls these from its own thread."""

    dialect = ""

    def decode(self, buffer: bytes, final: bool = False) -> tuple[list, bytes]:
        """The codec: bytes -> ([TagReport | DecodeError | other frames], rest)."""
        raise NotImplementedError

    def initialise(self) -> None:
        """Bring the reader from any state (bootloader, idle, already streaming) to reporting."""
        raise NotImplementedError

    def on_frame(self, item: Any) -> None:
        """A valid frame that is neither a report nor an awaited reply. Raise ReaderDown if it
        means the reader restarted; keep-alives need nothing (every valid frame is "alive")."""

    streams = False  # True: the reader talks on its own (reports, keep-alives); nothing to send between

    def poll(self) -> None:
        """Called on every turn of the read loop once up: polling dialects send inventory here."""

    def stop_command(self) -> bytes | None:
        """Bytes that make the reader stop reporting, sent on shutdown; None if there are none."""
        return None

    def is_stop_reply(self, item: Any) -> bool:
        return False


class ReaderChannel(DialectHooks):
    """The conversation with one reader over its transport: send, ask and wait for the
    matching reply, read and dispatch what comes (reports to `on_report`, failures counted,
    every valid frame proving the reader alive). Used from the session thread only."""

    def __init__(self, cfg: ReaderConfig, on_report: OnReport, transport, command_timeout_s: float,
                 flush_after_s: float):
        self.cfg = cfg
        self.name = cfg.name
        self.transport = transport
        self.command_timeout_s = command_timeout_s
        self.flush_after_s = flush_after_s  # a line quiet this long mid-frame: the frame was cut off
        self.counts = ReaderCounts()
        self.alive_mono = 0.0  # time.monotonic() of the last valid frame; 0.0 = never
        self._on_report = on_report
        self._rest = b""
        self._rx_mono = 0.0  # when bytes last arrived
        self.tags_seen = 0  # tag reports decoded so far, counted as each is dispatched (PollCycle)
        self._stopping = threading.Event()

    # --- helpers for dialects ----------------------------------------------------------
    def send(self, frame: bytes) -> None:
        self.transport.write(frame)

    def command(self, frame: bytes, matches: Callable[[Any], bool], what: str, timeout: float | None = None,
                attempts: int = 1) -> Any:
        """Send `frame`, return the first frame `matches` accepts. Reports arriving meanwhile
        are delivered as usual. With `attempts` > 1 the frame is sent again after each timeout
        (for idempotent commands on a noisy line). ReaderError if nothing ever matches."""
        timeout = self.command_timeout_s if timeout is None else timeout
        for _ in range(attempts):
            self.send(frame)
            deadline = time.monotonic() + timeout
            while True:
                reply = self._pump(matches)
                if reply is not None:
                    return reply
                if self._stopping.is_set():
                    raise ReaderDown("stopping")
                if time.monotonic() >= deadline:
                    break
        tries = f" ({attempts} tries)" if attempts > 1 else ""
        raise ReaderError(self.name, f"{what}: no answer within {timeout:g} s{tries}")

    def _pump(self, matches: Callable[[Any], bool] | None = None) -> Any:
        """Read one chunk and dispatch what it holds; return the first item `matches` accepts."""
        # A streaming reader's bytes are read in batches (fewer wake-ups at line rate); a polled
        # one's as they land (its next command waits for this reply).
        data = self.transport.read() if self.streams else self.transport.read_available()
        if data:
            self._rx_mono = time.monotonic()
            items, self._rest = self.decode(self._rest + data if self._rest else data)
        elif self._rest and time.monotonic() - self._rx_mono >= self.flush_after_s:
            items, self._rest = self.decode(self._rest, True)  # the line went quiet mid-frame
        else:
            return None
        if not items:
            return None
        mono, wall_ms = time.monotonic(), int(time.time() * 1000)
        found, valid, reported, trouble = None, False, 0, None
        for item in items:
            kind = type(item)
            if kind is TagReport:
                valid = True
                reported += 1
                self.tags_seen += 1
                trace.emit("received", (mono, self.name, item.epc))
                try:
                    self._on_report(self.name, item, mono, wall_ms)
                except Exception:
                    log.exception("reader %s: on_report failed", self.name)
            elif kind is DecodeError:
                self.counts.failed(item.code)
                log.debug("reader %s: %s at offset %d", self.name, item.code, item.offset)
            else:
                valid = True
                if found is None and matches is not None and matches(item):
                    found = item
                elif trouble is None:
                    try:
                        self.on_frame(item)
                    except ReaderDown as e:  # finish the chunk first: its reports are real reads
                        trouble = e
        if valid:
            self.alive_mono = mono
        if reported:
            self.counts.reported(reported, wall_ms)
        if trouble is not None:
            raise trouble
        return found


class ReaderSession(ReaderChannel):
    """Dialect-independent reader lifecycle; subclasses provide the `DialectHooks`."""

    round_timeout_s = 2.0  # polling dialects: a round with no end this long is given up

    def __init__(self, cfg: ReaderConfig, on_report: OnReport, on_state: OnState, *,
                 wrap_transport: WrapTransport | None = None, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, command_timeout_s: float = 1.0, stable_s: float = 2.0,
                 read_timeout_s: float = 0.02, flush_after_s: float = 0.1, round_timeout_s: float | None = None):
        transport = SerialTransport(cfg.url, cfg.baudrate, read_timeout=min(read_timeout_s, cfg.silence_timeout_s / 4))
        super().__init__(cfg, on_report, wrap_transport(transport) if wrap_transport is not None else transport,
                         command_timeout_s, flush_after_s)
        self._on_state = on_state
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s  # proved alive this long after init = healthy: the next reconnect is immediate
        if round_timeout_s is not None:
            self.round_timeout_s = round_timeout_s
        self.state, self.state_detail = STOPPED, "not started"
        self.model: str | None = None
        self.firmware: str | None = None
        self.last_error: str | None = None
        self.streaming = False  # init done, reading reports
        self._ever_up = False
        self._thread: threading.Thread | None = None

    # --- the daemon's API --------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"reader {self.name}: session already started")
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop streaming, close the port, join the thread (at most `timeout` seconds)."""
        self._stopping.set()
        self.transport.interrupt()
        thread = self._thread
        if thread is None:
            self._set_state(STOPPED, "")
            return
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            log.warning("reader %s: session thread still running %.1f s after stop", self.name, timeout)

    def snapshot(self) -> dict:
        """The reader's state and counters; safe to call from any thread."""
        return {"name": self.name, "dialect": self.dialect, "url": self.cfg.url, "state": self.state,
                "model": self.model, "firmware": self.firmware, **self.counts.snapshot(),
                "last_error": self.last_error}

    @property
    def reports(self) -> int:
        return self.counts.snapshot()["reports"]

    @property
    def decode_errors(self) -> int:
        return self.counts.snapshot()["decode_errors"]

    @property
    def reconnects(self) -> int:
        """Times the reader came back up after being down."""
        return self.counts.snapshot()["reconnects"]

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        # Exponential backoff plus jitter, so that readers unplugged together (a USB hub)
        # do not come back in lockstep. Composed for tenacity 8 and 9 alike.
        backoff = (wait_exponential(multiplier=self.backoff_initial_s, max=self.backoff_max_s)
                   + wait_random(0, self.backoff_initial_s))
        try:
            while not self._stopping.is_set():
                retrying = Retrying(wait=backoff, retry=retry_if_exception_type(ReaderDown),
                                    sleep=self._stopping.wait, before_sleep=self._log_backoff, reraise=True)
                try:
                    retrying(self._session_once)  # returns when stopping, or after a healthy session ended
                except Exception:  # never let the session thread die
                    log.exception("reader %s: session loop failed", self.name)
                    self._stopping.wait(self.backoff_max_s)
        finally:
            self._shutdown()

    def _session_once(self) -> None:
        """Open, initialise, read until down. Raises ReaderDown unless stopping or healthy."""
        if self._stopping.is_set():
            return
        if self.state != DOWN:  # while retrying, the reader stays "down" until it is up again
            self._set_state(CONNECTING, self.cfg.url)
        up_at = None
        try:
            self.transport.open()
            self._rest = b""
            self.initialise()
            up_at = self.alive_mono = time.monotonic()
            self.streaming = True
            if self._ever_up:
                self.counts.reconnected()
            self._ever_up = True
            self._set_state(UP, f"{self.model or 'unknown model'}, firmware {self.firmware or 'unknown'}")
            self._read_until_down()
            return
        except ReaderDown as e:
            reason = str(e)
        except ReaderError as e:
            reason = str(e)
        except PORT_ERRORS as e:
            reason = f"port {self.cfg.url}: {e}"
        except Exception as e:  # a bug in a hook must not end the session thread
            log.exception("reader %s: unexpected error", self.name)
            reason = f"internal error: {e!r}"
        finally:
            self.streaming = False
            if not self._stopping.is_set():
                self.transport.close()
        if self._stopping.is_set():
            return
        self.last_error = reason
        if self.state != DOWN:  # one line per state change; a new reason shows in last_error
            self._set_state(DOWN, reason)
        else:
            self.state_detail = reason
        if up_at is not None and self.alive_mono - up_at >= self.stable_s:
            return  # it was healthy: reconnect now, with a fresh backoff
        raise ReaderDown(reason)

    def _read_until_down(self) -> None:
        silence = self.cfg.silence_timeout_s
        while not self._stopping.is_set():
            self.poll()
            if self.streams:  # sleep until bytes come or a deadline is due, not 50 short reads a second
                self.transport.wait_readable(self._quiet_wait_s(silence))
            self._pump()
            quiet = time.monotonic() - self.alive_mono
            if quiet > silence:
                raise ReaderDown(f"no report and no keep-alive for {quiet:.1f} s")

    def _quiet_wait_s(self, silence: float) -> float:
        """How long a streaming session may sleep: until the silence timeout, or the idle flush
        of a frame left unfinished (a little after, so the check that follows sees it due)."""
        now = time.monotonic()
        until = self.alive_mono + silence
        if self._rest:
            until = min(until, self._rx_mono + self.flush_after_s)
        return max(0.0, until - now + QUIET_MARGIN_S)

    def _shutdown(self) -> None:
        if self.transport.is_open:
            frame = self.stop_command()
            try:
                if frame is not None:  # best effort: wait briefly for the reply, keeping the last reads
                    self.send(frame)
                    deadline = time.monotonic() + min(1.0, self.command_timeout_s)
                    while time.monotonic() < deadline and self._pump(self.is_stop_reply) is None:
                        pass
            except Exception as e:  # shutting down regardless: the port gets closed below
                log.debug("reader %s: stop command: %s", self.name, e)
            self.transport.close()
        self._set_state(STOPPED, "")

    def _log_backoff(self, retry_state) -> None:
        log.debug("reader %s: next connection attempt in %.1f s", self.name, retry_state.next_action.sleep)

    def _set_state(self, state: str, detail: str) -> None:
        self.state, self.state_detail = state, detail
        log.log(logging.WARNING if state == DOWN else logging.INFO,
                "reader %s %s%s", self.name, state, f": {detail}" if detail else "")
        try:
            self._on_state(self.name, state, detail)
        except Exception:
            log.exception("reader %s: on_state failed", self.name)
