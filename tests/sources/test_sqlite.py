"""SQLite through the online backup API: consistent while another process writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import SourceError
from drsync.restore import restore_snapshot
from drsync.store import LocalStore
from drsync.testing import make_repo

ACCOUNTS = 200
TOTAL = ACCOUNTS * 1000

# Moves money between accounts in transactions and logs each move: in any consistent
# state the balances sum to TOTAL and the log has one row per committed transfer.
WRITER = """
import os, random, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
rng = random.Random(1)
n = 0
while not os.path.exists(sys.argv[2]):
    a, b = rng.randrange({n}), rng.randrange({n})
    amount = rng.randint(1, 50)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE account SET balance = balance - ? WHERE id = ?", (amount, a))
    db.execute("INSERT INTO transfer (src, dst, amount, note) VALUES (?, ?, ?, ?)",
               (a, b, amount, "x" * rng.randint(10, 400)))
    db.execute("UPDATE account SET balance = balance + ? WHERE id = ?", (amount, b))
    db.execute("COMMIT")
    n += 1
print(n)
""".replace("{n}", str(ACCOUNTS))


def _make_db(path: Path, journal: str) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    db.execute("CREATE TABLE transfer (id INTEGER PRIMARY KEY, src INT, dst INT, amount INT, "
               "note TEXT)")
    db.executemany("INSERT INTO account VALUES (?, 1000)", [(i,) for i in range(ACCOUNTS)])
    db.execute("INSERT INTO transfer (src, dst, amount, note) "
               "SELECT 0, 0, 0, hex(randomblob(200)) FROM account, account LIMIT 30000")
    db.commit()
    db.close()


def _transfers(db: Path) -> int:
    con = sqlite3.connect(db, timeout=60)
    try:
        return int(con.execute("SELECT count(*) FROM transfer").fetchone()[0])
    finally:
        con.close()


def _wait_for_more_transfers(db: Path, seen: int) -> int:
    """Block until the writer has committed past ``seen`` (no timing assumptions)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _transfers(db)
        if now > seen:
            return now
        time.sleep(0.01)
    raise AssertionError("the writer committed nothing for 60 s")


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_backup_is_consistent_while_another_process_writes(tmp_path: Path, journal: str) -> None:
    db = tmp_path / "bank.db"
    _make_db(db, journal)
    repo = make_repo(LocalStore(tmp_path / "repo"), chunk_avg=16 * 1024, chunk_min=4096,
                     chunk_max=64 * 1024)
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    snapshots = []
    try:
        for _ in range(3):
            # Wait until the writer commits past what any earlier snapshot could hold, so
            # each snapshot is taken mid-workload and sees a different state.
            _wait_for_more_transfers(db, _transfers(db))
            snapshots.append(run_backup(repo, BackupRequest(sqlite=str(db))).snapshot_id)
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert int(out) > 3, "the writer made no progress"
    counts = set()
    for i, snapshot_id in enumerate(snapshots):
        target = tmp_path / f"restore-{i}"
        restore_snapshot(repo, snapshot_id, target=target)
        copy = sqlite3.connect(target / "bank.db")
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT sum(balance) FROM account").fetchone() == (TOTAL,)
        counts.add(copy.execute("SELECT count(*) FROM transfer").fetchone()[0])
        copy.close()
    assert len(counts) > 1, "all snapshots saw the same state: the writer never overlapped"


def test_snapshot_records_the_source(tmp_path: Path) -> None:
    db = tmp_path / "small.db"
    _make_db(db, "wal")
    repo = make_repo()
    result = run_backup(repo, BackupRequest(sqlite=str(db), tags=["nightly"]))
    snap = repo.find_snapshot(result.snapshot_id)
    assert snap.source_kind == "sqlite"
    assert snap.source_spec["path"] == str(db)
    assert snap.source_spec["page_size"] > 0
    assert snap.tags == ["nightly"]
    assert list(tmp_path.glob(".drsync-sqlite-*")) == []


def test_missing_or_not_a_database(tmp_path: Path) -> None:
    repo = make_repo()
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(repo, BackupRequest(sqlite=str(tmp_path / "absent.db")))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SourceError, match=r"junk\.db"):
        run_backup(repo, BackupRequest(sqlite=str(junk)))
    assert repo.snapshot_ids() == []


def _reference_checksum(db: sqlite3.Connection, table: str) -> int:
    """The checksum as first defined (drsync.sources.sqlite._row_checksum), row by row."""
    import hashlib

    total = 0
    for row in db.execute(f'SELECT * FROM "{table}"'):
        digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
        total = (total + int.from_bytes(digest, "big")) % (1 << 63)
    return total


def test_the_backup_records_each_table_s_counts_as_defined(tmp_path: Path) -> None:
    """Counted while the copy is backed up, the recorded counts equal the definition's
    (snapshots taken before and after agree, so drills of older ones still pass)."""
    import threading

    from drsync.sources.sqlite import table_counts

    db_path = tmp_path / "types.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                   [(i, i / 7, f"住民{i}", bytes([i % 256]) * 3, None) for i in range(5000)])
    db.execute("CREATE TABLE empty (x)")
    db.commit()
    repo = make_repo()
    snap = repo.find_snapshot(run_backup(repo, BackupRequest(sqlite=str(db_path))).snapshot_id)
    tables = snap.source_spec["tables"]
    assert tables == table_counts(db)
    assert tables["t"]["rows"] == 5000 and tables["empty"]["rows"] == 0
    assert tables["t"]["checksum"] == _reference_checksum(db, "t")
    assert tables["empty"]["checksum"] == 0
    assert not [t for t in threading.enumerate() if t.name == "sqlite-counts"]


def test_a_backup_that_stops_early_leaves_no_counting_behind(tmp_path: Path) -> None:
    """Leaving the source before the counts are asked for (a failed upload) stops the
    counting thread and removes the copy."""
    import threading

    from drsync.sources import SqliteSource

    db_path = tmp_path / "big.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE t (s TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [(f"row {i} " * 8,) for i in range(200_000)])
    db.commit()
    with SqliteSource(str(db_path)) as source:
        item = next(source.items())
        assert item.open is not None
        with item.open() as copy:
            path = Path(copy.name)
        assert path.exists() and path != db_path
    assert not [t for t in threading.enumerate() if t.name == "sqlite-counts"]
    assert not path.exists()
