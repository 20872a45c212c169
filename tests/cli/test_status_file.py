"""The daemon's status file (`agent.statusfile`): atomic writes, reads that say why they fail, freshness."""

import json
import os

import pytest

from agent.statusfile import STALE_AFTER_S, StatusCorrupt, StatusFile, StatusMissing, StatusUnreadable


def test_write_then_read(tmp_path):
    status = StatusFile(str(tmp_path / "status.json"))
    status.write({"pid": 7, "state": "running", "updated_ms": 1, "dir": tmp_path})  # not JSON: as text
    assert status.read() == {"pid": 7, "state": "running", "updated_ms": 1, "dir": str(tmp_path)}
    assert not os.path.exists(tmp_path / "status.json.tmp")  # replaced in one step


def test_write_into_a_missing_directory_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        StatusFile(str(tmp_path / "gone" / "status.json")).write({})


def test_read_says_why(tmp_path):
    path = tmp_path / "status.json"
    with pytest.raises(StatusMissing, match="no status file"):
        StatusFile(str(path)).read()
    path.write_text('{"pid": 7, "state": "run')  # caught half-written by a foreign writer
    with pytest.raises(StatusCorrupt, match="damaged"):
        StatusFile(str(path)).read()
    path.write_text("[1, 2]")
    with pytest.raises(StatusCorrupt, match="not a JSON object"):
        StatusFile(str(path)).read()
    assert StatusFile(str(path)).read_or({"x": 1}) == {"x": 1}
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(StatusUnreadable) as e:
        StatusFile(str(directory)).read()
    assert e.value.reason and not e.value.permission


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_told_apart(tmp_path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"pid": 1}))
    path.chmod(0)
    with pytest.raises(StatusUnreadable) as e:
        StatusFile(str(path)).read()
    assert e.value.permission and "ermission" in e.value.reason


def test_freshness():
    now = 1_000_000_000
    assert StatusFile.is_fresh({"state": "running", "updated_ms": now - 1000}, now)
    assert not StatusFile.is_fresh({"state": "running", "updated_ms": now - STALE_AFTER_S * 1000}, now)
    assert not StatusFile.is_fresh({"state": "stopped", "updated_ms": now}, now)
    assert not StatusFile.is_fresh({"state": "running"}, now)
    assert not StatusFile.is_fresh({"state": "running", "updated_ms": "yesterday"}, now)
