"""The source contract: every source the backup service knows passes the same tests.

Each kind in ``drsync.backup.SOURCE_KINDS`` has a case here that builds a
real request (a file tree, a SQLite database, a byte stream, a throwaway
PostgreSQL cluster, a throwaway MariaDB server); the tests then use the
source only through the :class:`drsync.sources.Source` protocol, as the
backup service does, and back it up through the service, reading every stored byte back.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drsync.backup import SOURCE_KINDS, BackupRequest, run_backup
from drsync.repo import SnapshotReader
from drsync.testing import make_repo
from tests.mariadb.conftest import mariadb, mariadb_factory  # noqa: F401 - fixtures

Case = Callable[[], BackupRequest]


def _files(tmp_path: Path) -> BackupRequest:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (root / "link").symlink_to("a.txt")
    return BackupRequest(paths=[str(root)])


def _sqlite(tmp_path: Path) -> BackupRequest:
    db = sqlite3.connect(tmp_path / "town.db")
    db.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO resident (name) VALUES (?)", [(f"r{i}",) for i in range(500)])
    db.commit()
    db.close()
    return BackupRequest(sqlite=str(tmp_path / "town.db"))


def _stdin(tmp_path: Path) -> BackupRequest:
    return BackupRequest(stdin_name="payroll.csv", stdin=io.BytesIO(b"id,amount\n1,100\n" * 99))


@pytest.fixture
def pg_cluster(pg_bindir: str) -> Iterator[object]:
    from drsync.testing_postgres import Cluster, make_cluster_dir

    cluster = Cluster(make_cluster_dir(), pg_bindir)
    cluster.initdb()
    cluster.start()
    cluster.psql("CREATE TABLE resident (id int PRIMARY KEY); "
                 "INSERT INTO resident SELECT generate_series(1, 300)")
    yield cluster
    cluster.stop("immediate")
    subprocess.run(["rm", "-rf", str(cluster.base)], check=False)


@pytest.fixture
def case(request: pytest.FixtureRequest, tmp_path: Path) -> BackupRequest:
    kind = request.param
    if kind == "files":
        return _files(tmp_path)
    if kind == "sqlite":
        return _sqlite(tmp_path)
    if kind == "stdin":
        return _stdin(tmp_path)
    if kind in ("pg_dump", "pg_base"):
        cluster = request.getfixturevalue("pg_cluster")
        return BackupRequest(pg_dump=cluster.dsn) if kind == "pg_dump" else BackupRequest(
            pg_base=cluster.dsn, pg_bindir=cluster.bindir)
    if kind == "mariadb_dump":
        server = request.getfixturevalue("mariadb")
        server.sql("CREATE DATABASE town; CREATE TABLE town.resident (id INT PRIMARY KEY) "
                   "ENGINE=InnoDB; USE town; INSERT INTO resident SELECT seq FROM seq_1_to_300")
        return BackupRequest(mariadb_dump=server.dsn_for("town"))
    raise AssertionError(f"no contract case for source kind {kind!r}")


KINDS = [k.kind for k in SOURCE_KINDS]
cases = pytest.mark.parametrize("case", KINDS, indirect=True)


def test_every_registered_kind_has_a_case() -> None:
    # A new source joins SOURCE_KINDS and gets a branch in ``case``; this names the gap.
    assert len(set(KINDS)) == len(KINDS)
    assert set(KINDS) >= {"files", "sqlite", "stdin", "pg_dump", "pg_base", "mariadb_dump"}


def test_building_does_no_io(tmp_path: Path) -> None:
    # A source is built to describe the run before anything is read: a path that does
    # not exist is only noticed when the source is entered and read.
    missing = str(tmp_path / "nowhere")
    for req in (BackupRequest(paths=[missing]), BackupRequest(sqlite=missing),
                BackupRequest(pg_dump="host=/nowhere dbname=x password=secret"),
                BackupRequest(mariadb_dump="mariadb://u:secret@nowhere:1/x")):
        source = req.source()
        assert source.kind == req.kind() and source.problems == []
        assert "secret" not in source.describe()


@cases
def test_items_spec_and_problems_follow_the_protocol(case: BackupRequest) -> None:
    source = case.source()
    assert source.kind == case.kind()
    with source:
        paths = []
        for item in source.items():
            meta = item.meta
            assert meta.type in ("file", "dir", "symlink", "stream")
            assert meta.path and not meta.path.startswith("/")
            assert ".." not in meta.path.split("/") and meta.chunks == []
            assert (item.open is not None) == (meta.type in ("file", "stream"))
            if item.open is not None:
                with item.open() as reader:
                    while reader.read(1 << 20):
                        pass
            paths.append(meta.path)
        spec = source.spec()
    assert len(paths) == len(set(paths)) and paths
    assert json.loads(json.dumps(spec)) == spec and spec
    assert source.problems == []


@cases
def test_backup_through_the_service_stores_every_byte(case: BackupRequest) -> None:
    repo = make_repo()
    expected = case.source()
    result = run_backup(repo, case)
    assert result.items > 0 and result.bytes_read > 0 and not result.partial
    snap = repo.load_snapshot(result.snapshot_id)
    assert snap.source_kind == expected.kind
    reader = SnapshotReader(repo)
    entries = list(reader.entries(snap))
    assert len(entries) == result.items
    streamed = [e for e in entries if e.type in ("file", "stream")]
    assert streamed and sum(e.size for e in streamed) == result.bytes_read
    for entry in streamed:
        assert sum(len(b) for b in reader.blobs(entry.chunks)) == entry.size
