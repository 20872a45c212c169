"""Start-up recovery: a corrupt database is moved aside, a torn WAL recovers by SQLite's rules."""

import os
import signal
import subprocess
import sys
import textwrap

from agent.lane.event import GENESIS, seal
from agent.store import integrity
from agent.store.db import HeadFile, head_path, open_reader, recalled_head
from agent.store.integrity import IntegrityCheck
from agent.store.writer import StoreWriter
from tests.helpers import ROOT, payloads


def add_events(writer, n):
    _, head = writer.chain_state()
    with writer.transaction():
        for seq in range(1, n + 1):
            event = seal({"v": 1, "type": "crossing", "event_id": f"e{seq}", "seq": seq, "port": "0901", "lane": "C3",
                          "entering": "CA", "leaving": "US", "started_ms": 0, "ended_ms": 0, "tags": [], "driver": [],
                          "conveyance": None, "equipment": [], "trip": None, "shipments": [], "findings": [],
                          "referral": {}}, head)
            head = event["hash"]
            writer.add_event(event, payloads(event, ["cbsa"]), 0)
    writer.remember_head()
    return head


def corrupt_the_middle(path):
    """A bad sector in the middle of the file, among the events' pages: SQLite opens the file
    (the schema and the lane state lie in its first pages); only a full check reads them."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(os.urandom(4096 * 2))


def test_a_failed_check_marks_the_file_and_the_next_open_moves_it_aside(tmp_path):
    path = str(tmp_path / "agent.db")
    w = StoreWriter(path)
    head = add_events(w, 300)
    w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    w.close()
    corrupt_the_middle(path)

    opened = StoreWriter(path)  # the start no longer reads every page: it opens
    assert opened.recovery is None
    opened.close()
    found = []
    check = IntegrityCheck(path, lambda: open_reader(path, probe=False), found.append)
    check.start()
    check.wait(30)
    assert found and found[0] == check.result != "ok"
    assert integrity.check_at_start(path)

    again = StoreWriter(path)
    assert again.recovery is not None and again.recovery["continues_at_seq"] == 301
    assert os.path.exists(again.recovery["moved_to"])
    assert again.chain_state() == (301, head)
    assert again.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert not integrity.check_at_start(path)
    again.close()


def test_the_head_is_rewritten_in_place_and_a_torn_record_reads_as_none(tmp_path):
    path = str(tmp_path / "agent.db")
    with open(head_path(path), "w") as f:  # an older release's file: a longer record than ours
        f.write('{"next_seq": 7, "head_hash": "' + "b" * 64 + '", "note": "' + "x" * 200 + '"}')
    head = HeadFile(path)
    head.write(8, "a" * 64)
    inode = os.stat(head_path(path)).st_ino
    head.write(9, "c" * 64)
    assert recalled_head(path) == (9, "c" * 64)
    assert os.stat(head_path(path)).st_ino == inode  # one file, rewritten: no new page per event
    assert os.path.getsize(head_path(path)) == 128
    head.close()
    with open(head_path(path), "r+b") as f:  # a write cut short by a power cut
        f.write(b'{"next_seq": 10, "head_h')
    assert recalled_head(path) is None


def test_a_sound_file_passes_and_a_marker_is_cleared_by_a_passing_check(tmp_path):
    path = str(tmp_path / "agent.db")
    w = StoreWriter(path)
    add_events(w, 5)
    w.close()
    found = []
    check = IntegrityCheck(path, lambda: open_reader(path, probe=False), found.append)
    check.start()
    check.wait(30)
    assert (check.result, found) == ("ok", [])
    integrity.mark_for_check(path, "a check that failed once (a cable, not the file)")
    again = StoreWriter(path)  # checks first, finds it sound: no recovery, the marker is gone
    assert again.recovery is None and not integrity.check_at_start(path)
    assert again.chain_state()[0] == 6
    again.close()


def test_a_file_that_is_not_a_database_at_all(tmp_path):
    path = tmp_path / "agent.db"
    path.write_bytes(b"this is not sqlite" * 500)
    w = StoreWriter(str(path))
    assert w.recovery["continues_at_seq"] == 1 and w.chain_state() == (1, GENESIS)
    w.close()


def test_torn_wal_after_a_kill_keeps_every_committed_transaction(tmp_path):
    """A real process commits, then dies (SIGKILL) inside a big transaction whose pages
    already spilled into the WAL; the WAL's tail is then torn like an interrupted write."""
    path = tmp_path / "agent.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from agent.store.writer import StoreWriter
        w = StoreWriter({str(path)!r})
        w.conn.execute("PRAGMA wal_autocheckpoint = 0")
        w.conn.execute("PRAGMA cache_size = 10")  # spill uncommitted pages into the WAL early
        with w.transaction():
            w.journal([("booth", "COMMITTED%04d" % i, 1, -50.0, 1, i) for i in range(500)])
        print(os.path.getsize({str(path)!r} + "-wal"), flush=True)
        w.conn.execute("BEGIN IMMEDIATE")
        w.journal([("booth", "UNCOMMITTED%05d" % i, 1, -50.0, 1, i) for i in range(20000)])
        print(os.path.getsize({str(path)!r} + "-wal"), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    committed_size, spilled_size = (int(x) for x in proc.stdout.split())
    assert spilled_size > committed_size  # uncommitted frames really are in the WAL
    with open(f"{path}-wal", "r+b") as f:
        f.truncate(committed_size + (spilled_size - committed_size) // 2 + 17)
    w = StoreWriter(str(path))
    assert w.recovery is None
    assert w.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert w.conn.execute("SELECT count(*) FROM reads WHERE epc LIKE 'COMMITTED%'").fetchone()[0] == 500
    assert w.conn.execute("SELECT count(*) FROM reads WHERE epc LIKE 'UNCOMMITTED%'").fetchone()[0] == 0
    w.close()
