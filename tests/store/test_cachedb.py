"""The cache's own file: where it lives, what a database from before it becomes, who reads it."""

import sqlite3
from collections import Counter

from agent.core.cachefeed import CacheFeed
from agent.store.cachedb import cache_path
from agent.store.reader import StoreReader
from agent.store.writer import StoreWriter

NOW = 1_800_000_000_000
SNAPSHOT = {"v": 1, "type": "cache", "source": "CA", "seq": 3, "op": "snapshot",
            "records": [{"kind": "driver", "id": "D1", "name": "Alex Martin", "card_epc": "AA01"}]}


def test_the_cache_file_sits_beside_the_database(tmp_path):
    assert cache_path("/var/lib/laneagent/agent.db") == "/var/lib/laneagent/agent.cache.db"
    assert cache_path("/var/lib/laneagent/agent") == "/var/lib/laneagent/agent.cache.db"
    w = StoreWriter(str(tmp_path / "agent.db"))
    with w.transaction():
        w.apply_cache(SNAPSHOT, NOW)
    w.close()
    assert (tmp_path / "agent.cache.db").exists()
    main = sqlite3.connect(tmp_path / "agent.db")
    assert main.execute("SELECT count(*) FROM cache_sources").fetchone()[0] == 0  # nothing in the main file
    with StoreReader(str(tmp_path / "agent.db")) as r:
        assert r.cache_seq("CA") == 3 and [rec["id"] for _, _, rec in r.cache.tagged("AA01")] == ["D1"]


def test_a_reader_of_a_database_without_a_cache_file_sees_an_empty_cache(tmp_path):
    StoreWriter(str(tmp_path / "agent.db")).close()
    (tmp_path / "agent.cache.db").unlink()
    with StoreReader(str(tmp_path / "agent.db")) as r:
        assert r.cache_sources() == [] and r.cache.tagged("AA01") == []


def test_a_cache_left_in_the_main_file_is_removed_and_asked_for_again(tmp_path):
    path = str(tmp_path / "agent.db")
    StoreWriter(path).close()
    (tmp_path / "agent.cache.db").unlink()
    # A database from before the cache had its own file: schema 1 kept it in the main one.
    main = sqlite3.connect(path)
    main.execute("INSERT INTO cache_sources(source, seq, updated_ms, gen) VALUES ('CA', 7, 1, 1)")
    main.execute("INSERT INTO cache_records(source, gen, kind, id, key, body) VALUES ('CA', 1, 'driver', 'D1', "
                 "'AA01', x'a0')")
    main.commit()
    main.close()
    w = StoreWriter(path)
    assert w.cache_moved == ["CA"]
    assert sqlite3.connect(path).execute("SELECT count(*) FROM cache_records").fetchone()[0] == 0
    asked = []
    feed = CacheFeed(w, Counter(), lambda: NOW, lambda backend, source, have: asked.append((backend, source, have)),
                     lambda *a: None, backend_of={"CA": "cbsa"})
    feed.recover()
    assert asked == [("cbsa", "CA", 0)]  # nothing applied yet in the new file: a snapshot, please
    w.close()
    assert StoreWriter(path).cache_moved == []  # once only
