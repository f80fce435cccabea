"""`check` over archived WAL, without a server: objects sealed as wal-push seals them.

(tests/pg/test_wal_check.py does the same against a real archiving cluster.)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from drsync.pgrestore import pitr_range
from drsync.repo import Entry, Repository, SnapshotWriter
from drsync.repo.check import check_repository
from drsync.repo.wal import seal_wal
from drsync.store import LocalStore
from drsync.testing import make_repo
from drsync.wal.coverage import next_segment

FIRST = "000000010000000000000003"
SEGMENTS = [FIRST]
for _ in range(5):
    SEGMENTS.append(next_segment(SEGMENTS[-1]))


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = make_repo(LocalStore(tmp_path / "repo"))
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("pgdata/PG_VERSION", "file", 0o600, 1), io.BytesIO(b"15\n"))
    writer.commit(host="t", source_kind="pg_base", tags=[], summary={}, version="t",
                  source_spec={"timeline": 1, "start_wal": SEGMENTS[0],
                               "stop_wal": SEGMENTS[1], "consistent_at": "2026-11-28T03:00:00Z"})
    for name in SEGMENTS:
        repo.store.put(f"wal/{name}", seal_wal(repo.key, name, os.urandom(4096)))
    return repo


def _wal(repo: Repository, name: str) -> Path:
    return Path(repo.store.url) / "wal" / name


def test_complete_chain_checks_ok(repo: Repository) -> None:
    report = check_repository(repo, read_data=True)
    assert report.ok, report.errors
    assert report.wal_files == len(SEGMENTS)
    assert report.bytes_verified >= sum(_wal(repo, n).stat().st_size for n in SEGMENTS)


def test_a_missing_middle_segment_is_a_gap_after_the_base_backup(repo: Repository) -> None:
    base = repo.find_snapshot("latest")
    _wal(repo, SEGMENTS[3]).unlink()
    report = check_repository(repo)
    assert report.errors == [
        f"base backup {base.short_id} (2026-11-28 03:00:00): gap in the WAL chain: "
        f"{SEGMENTS[3]} is missing, 2 later segment(s) archived; recovery stops at "
        f"{SEGMENTS[2]}"]
    # pitr-range agrees, from the same collection of bases and names.
    assert pitr_range(repo)["base_backups"][0]["last_wal"] == SEGMENTS[2]


def test_a_missing_segment_before_consistency_is_an_error(repo: Repository) -> None:
    _wal(repo, SEGMENTS[1]).unlink()
    (error,) = check_repository(repo).errors
    assert f"cannot be restored: WAL {SEGMENTS[1]} needed to reach consistency is missing" \
        in error


def test_the_unshipped_tail_is_a_note_not_a_gap(repo: Repository) -> None:
    for name in SEGMENTS[1:]:
        _wal(repo, name).unlink()
    report = check_repository(repo)
    assert report.ok, report.errors
    assert any(f"WAL from {SEGMENTS[1]} is not in the store yet" in n for n in report.notes)


def test_read_data_authenticates_every_wal_object_and_its_name(repo: Repository) -> None:
    damaged = _wal(repo, SEGMENTS[4])
    data = bytearray(damaged.read_bytes())
    data[-20] ^= 0x01
    damaged.write_bytes(bytes(data))
    # A valid object under another name: only the authenticated header tells.
    beyond = next_segment(SEGMENTS[5])
    _wal(repo, beyond).write_bytes(_wal(repo, SEGMENTS[2]).read_bytes())
    assert check_repository(repo).ok  # structure alone reads no WAL content
    report = check_repository(repo, read_data=True)
    assert f"object wal/{SEGMENTS[4]}: authentication failed" in "\n".join(report.errors)
    assert f"object wal/{beyond}: holds {SEGMENTS[2]}, not {beyond}" in report.errors
    # A damaged segment breaks the chain as a missing one would.
    assert any(f"gap in the WAL chain: {SEGMENTS[4]} is missing" in e for e in report.errors)


def test_a_foreign_object_under_wal_is_an_error(repo: Repository) -> None:
    (Path(repo.store.url) / "wal" / "notes.txt").write_text("hello")
    assert "object wal/notes.txt: not a WAL file name" in check_repository(repo).errors


def test_a_hole_in_the_binlogs_after_a_mariadb_dump_is_an_error(tmp_path: Path) -> None:
    repo = make_repo(LocalStore(tmp_path / "mrepo"))
    binlogs = [f"mariadb-bin.{n:06d}" for n in range(7, 12)]
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("dump.sql", "file", 0o600, 3), io.BytesIO(b"--\n"))
    writer.commit(host="t", source_kind="mariadb_dump", tags=[], summary={}, version="t",
                  source_spec={"binlog_file": binlogs[0], "binlog_position": 4,
                               "consistent_at": "2026-11-28T03:00:00Z", "scope": "database"})
    for name in binlogs:
        repo.store.put(f"wal/{name}", seal_wal(repo.key, name, os.urandom(4096)))
    assert check_repository(repo, read_data=True).ok
    _wal(repo, binlogs[2]).unlink()
    dump = repo.find_snapshot("latest")
    assert check_repository(repo).errors == [
        f"MariaDB dump {dump.short_id} (2026-11-28 03:00:00): gap in the binlog chain: "
        f"{binlogs[2]} is missing, 2 later binlog(s) archived; replay stops at {binlogs[1]}"]
    # the tail not shipped yet is no hole: nothing later is archived
    for name in binlogs[2:]:
        _wal(repo, name).unlink(missing_ok=True)
    assert check_repository(repo).ok
