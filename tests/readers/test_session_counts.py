"""Decode failures counted per reader and per error code, readable from another thread;
the transport wrapper injected by the caller, not imported by the session."""

from __future__ import annotations

import threading

from agent.config import ReaderConfig
from agent.readers import registry
from agent.readers import thingmagic as tm
from agent.readers.session import ReaderCounts
from agent.readers.transport import SerialTransport

TAG = tm.encode_tag_frame(bytes.fromhex("E2801160600002054E2C1A2B"))
KEEPALIVE = tm.encode_keepalive()


def _session(**options):
    cfg = ReaderConfig(name="booth", dialect="thingmagic", url="loop://")
    return registry.open_session(cfg, lambda *a: None, lambda *a: None, **options)


def _feed(session, data: bytes) -> None:
    """loop:// hands back what is written: the bytes arrive as if the reader sent them."""
    session.transport.write(data)
    session._pump()


def test_failures_are_counted_per_code_and_snapshot_keeps_the_total():
    session = _session()
    session.transport.open()
    try:
        damaged = TAG[:-1] + bytes((TAG[-1] ^ 1,))
        _feed(session, damaged + KEEPALIVE + TAG[:20] + KEEPALIVE + TAG + damaged + TAG)
        snap = session.snapshot()
    finally:
        session.transport.close()
    assert snap["decode_failures"] == {"bad_checksum": 2, "bad_length": 1}
    assert snap["decode_errors"] == 3 == session.decode_errors
    assert snap["reports"] == 2 and snap["last_report_wall_ms"] is not None and snap["reconnects"] == 0


def test_snapshot_from_another_thread_never_sees_a_dict_being_changed():
    counts = ReaderCounts()
    codes = [f"code_{i}" for i in range(500)]  # new keys keep the dict growing (resizing) meanwhile
    done = threading.Event()

    def session_thread():
        for _ in range(20):
            for code in codes:
                counts.failed(code)
            counts.reported(3, 0)
        done.set()

    thread = threading.Thread(target=session_thread)
    thread.start()
    seen = []
    while not done.is_set():
        snap = counts.snapshot()  # would raise "dictionary changed size during iteration" if unguarded
        assert snap["decode_errors"] == sum(snap["decode_failures"].values())
        seen.append(snap["decode_errors"])
    thread.join()
    assert seen == sorted(seen)  # the total never goes back
    final = counts.snapshot()
    assert final["decode_errors"] == 20 * len(codes) and final["reports"] == 60
    final["decode_failures"]["code_0"] = -1  # a copy: the reader's own counts are not touched
    assert counts.snapshot()["decode_failures"]["code_0"] == 20


def test_no_tap_unless_the_caller_passes_one():
    assert type(_session().transport) is SerialTransport  # sessions import no diagnostics

    class Recorder:
        def __init__(self, transport):
            self.inner, self.rx = transport, []

        def read(self):
            data = self.inner.read()
            self.rx.append(data)
            return data

        def __getattr__(self, name):
            return getattr(self.inner, name)

    session = _session(wrap_transport=Recorder)
    assert type(session.transport) is Recorder and type(session.transport.inner) is SerialTransport
    session.transport.open()
    try:
        _feed(session, KEEPALIVE)
    finally:
        session.transport.close()
    assert b"".join(session.transport.rx) == KEEPALIVE
