"""Drills of mariadb_dump snapshots: reloaded on a throwaway mariadbd (any scope) or into a
scratch database on the server given, every table's rows counted and checksummed against
the dump's own, torn down; a changed row and a damaged pack named."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.drill import run_drill
from drsync.repo import Entry, Repository, Snapshot, SnapshotReader, SnapshotWriter
from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer

SCHEMA = """
CREATE DATABASE registry; USE registry;
CREATE TABLE resident (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE fee (id INT AUTO_INCREMENT PRIMARY KEY, amount DECIMAL(10,2)) ENGINE=InnoDB;
CREATE TABLE empty_one (x INT) ENGINE=InnoDB;
INSERT INTO resident SELECT seq, CONCAT('住民 ', seq) FROM seq_1_to_2500;
INSERT INTO fee (amount) SELECT seq * 1.5 FROM seq_1_to_700;
"""


def _databases(server: MariadbServer) -> list[str]:
    return sorted(server.query("SHOW DATABASES").split())


def test_a_drill_on_the_server_given_counts_rows_in_a_scratch_database_and_drops_it(
        mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> None:
    mariadb.sql(SCHEMA)
    make_repository(str(tmp_path / "repo"), "pw")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}

    def drsync(*args: str, code: int = 0) -> Any:
        done = subprocess.run([drsync_bin, *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == code, done.stderr
        return json.loads(done.stdout)

    drsync("backup", "--mariadb-dump", mariadb.dsn_for("registry"))
    before = _databases(mariadb)
    doc = drsync("drill", "--mariadb-dsn", mariadb.dsn)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "ok", doc
    assert checks["restore"]["detail"].startswith("into scratch database drsync_drill_")
    assert checks["table counts"]["detail"] == "3 tables, 3200 rows as recorded"
    assert _databases(mariadb) == before  # the scratch database is gone
    assert mariadb.query("SELECT COUNT(*) FROM registry.resident") == "2500"

    # A changed table after the backup does not matter: the drill reads the backup.
    mariadb.sql("DELETE FROM registry.fee WHERE id < 100")
    assert drsync("drill", "--mariadb-dsn", mariadb.dsn)["status"] == "ok"

    # A damaged pack: named, and the half-made scratch database dropped all the same.
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 0x01
            pack.write_bytes(bytes(data))
    doc = drsync("drill", "--mariadb-dsn", mariadb.dsn, code=13)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert failed and failed[0]["name"] == "restore" and "data/" in failed[0]["detail"], failed
    assert _databases(mariadb) == before


TOWNS = """
CREATE DATABASE tax; USE tax;
CREATE TABLE payment (id INT PRIMARY KEY, amount DECIMAL(12,2), rate DOUBLE, ratio FLOAT,
  paid TIMESTAMP(3) NULL, due DATETIME(6), receipt LONGBLOB, memo TEXT, flags BIT(5),
  kind ENUM('cash','card'), doc JSON, at_time TIME(2), yr YEAR) ENGINE=InnoDB;
INSERT INTO payment VALUES
  (1, 1234.56, 0.1 + 0.2, 1.1, '2024-03-01 12:00:00.123', '1999-12-31 23:59:59.999999',
   UNHEX('00FF10'), '住民税', b'10101', 'card', '{"a": 1}', '-12:00:01.5', 2024),
  (2, -0.01, 1e-300, 3.4e38, NULL, NULL, '', '', b'0', NULL, NULL, NULL, NULL),
  (3, 0, 2.2250738585072014e-308, 1.17549435e-38, '2038-01-19 03:14:07',
   '0000-00-00 00:00:00', REPEAT('x', 3000000), NULL, b'11111', 'cash', '[]', '838:59:59', 1901);
INSERT INTO payment (id, amount, rate, ratio, memo)
  SELECT seq + 10, seq / 7, seq / 3, seq / 9, CONCAT('memo ', seq) FROM seq_1_to_1500;
CREATE TABLE nothing (x INT) ENGINE=InnoDB;
CREATE DATABASE registry; USE registry;
CREATE TABLE resident (id INT PRIMARY KEY, name VARCHAR(100), born DATE) ENGINE=InnoDB;
INSERT INTO resident SELECT seq, CONCAT('住民 ', seq), '1950-01-01' + INTERVAL seq DAY
  FROM seq_1_to_2500;
CREATE TRIGGER resident_touch BEFORE UPDATE ON resident FOR EACH ROW SET NEW.name = NEW.name;
CREATE EVENT wipe ON SCHEDULE EVERY 1 SECOND DO DELETE FROM registry.resident;
CREATE PROCEDURE how_many() SELECT COUNT(*) FROM resident;
"""


def _left_behind(scratch: Path) -> list[str]:
    """Anything of a drill still there: files in the scratch, a process naming it."""
    left = [str(p) for p in scratch.iterdir()] + [str(p) for p in Path(
        tempfile.gettempdir()).iterdir()]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and str(scratch).encode() in cmdline:
            left.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return left


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short $TMPDIR of the drill's own (where the throwaway server's socket goes
    when the scratch's path is too long for one): empty after each drill."""
    path = Path(tempfile.mkdtemp(prefix="drt-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dump_of(repo: Repository) -> tuple[Snapshot, bytes]:
    snap = repo.find_snapshot("latest")
    with SnapshotReader(repo) as reader:
        (entry,) = list(reader.entries(snap))
        return snap, b"".join(reader.blobs(entry.chunks))


def _commit_dump(repo: Repository, script: bytes, spec: dict[str, Any]) -> None:
    """A mariadb_dump snapshot of ``script`` recording ``spec`` (as a backup would)."""
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("database.sql", "stream", 0o600), io.BytesIO(script))
    writer.commit(host="h", source_kind="mariadb_dump", source_spec=spec, tags=[], summary={},
                  version="t")


def test_a_dump_of_several_databases_is_reloaded_on_a_throwaway_server_and_checksummed(
        mariadb: MariadbServer, tmp_path: Path, short_tmp: Path) -> None:
    mariadb.sql(TOWNS)
    mariadb.sql("SET GLOBAL event_scheduler = OFF")  # the wipe event is for the restored copy
    repo = make_repository(str(tmp_path / "repo"), "pw")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for databases in (["tax", "registry"], []):  # a list, then everything (mysql included)
        run_backup(repo, BackupRequest(mariadb_dump=mariadb.dsn, mariadb_databases=databases))
        snap = repo.find_snapshot("latest")
        assert snap.source_spec["scope"] == ("databases" if databases else "all")
        recorded = snap.source_spec["tables"]
        assert set(recorded) == {"tax.payment", "tax.nothing", "registry.resident"}
        assert recorded["tax.nothing"] == {"rows": 0, "checksum": 0}
        assert all(c["checksum"] > 0 for t, c in recorded.items() if t != "tax.nothing")
        before = _databases(mariadb)
        result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
        checks = {c.name: c for c in result.checks}
        assert result.status == "ok", result.checks
        assert checks["restore"].detail.startswith("into a throwaway MariaDB 10.")
        assert checks["table counts"].detail == "3 tables, 4003 rows as recorded"
        assert _databases(mariadb) == before  # the dumped server is not touched
        assert _left_behind(scratch) == []


def test_a_changed_row_fails_the_drill_naming_its_table_and_old_snapshots_drill_on_counts(
        mariadb: MariadbServer, tmp_path: Path, short_tmp: Path) -> None:
    mariadb.sql(TOWNS)
    repo = make_repository(str(tmp_path / "repo"), "pw")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run_backup(repo, BackupRequest(mariadb_dump=mariadb.dsn,
                                   mariadb_databases=["tax", "registry"]))
    snap, script = _dump_of(repo)
    # One value of one row differs in what is restored; the same rows in every table.
    assert script.count("住民 1234'".encode()) == 1
    _commit_dump(repo, script.replace("住民 1234'".encode(), "住民 9999'".encode()),
                 snap.source_spec)
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    counts = next(c for c in result.checks if c.name == "table counts")
    assert result.status == "failed" and not counts.ok
    assert counts.detail.startswith("registry.resident: checksum ") and "recorded" in counts.detail
    assert "tax." not in counts.detail and "rows" not in counts.detail
    assert _left_behind(scratch) == []

    # A recorded checksum that is not the restored one: the same.
    spec = json.loads(json.dumps(snap.source_spec))
    spec["tables"]["tax.payment"]["checksum"] += 1
    _commit_dump(repo, script, spec)
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    counts = next(c for c in result.checks if c.name == "table counts")
    assert not counts.ok and counts.detail.startswith("tax.payment: checksum ")

    # A snapshot from before checksums (counts only) still drills, and says so.
    spec = json.loads(json.dumps(snap.source_spec))
    spec["tables"] = {t: {"rows": c["rows"]} for t, c in spec["tables"].items()}
    _commit_dump(repo, script, spec)
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    counts = next(c for c in result.checks if c.name == "table counts")
    assert result.status == "ok" and counts.detail.startswith("3 tables, 4003 rows as recorded")
    assert "recorded no checksums" in counts.detail
    # ... and an even older one, with no counts at all.
    _commit_dump(repo, script, {k: v for k, v in snap.source_spec.items() if k != "tables"})
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    assert result.status == "ok"
    assert "not recorded" in next(c for c in result.checks if c.name == "table counts").detail
    assert _left_behind(scratch) == []


def test_a_damaged_pack_is_named_and_the_throwaway_server_torn_down(
        mariadb: MariadbServer, tmp_path: Path, short_tmp: Path) -> None:
    mariadb.sql(TOWNS)
    repo = make_repository(str(tmp_path / "repo"), "pw")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run_backup(repo, BackupRequest(mariadb_dump=mariadb.dsn_for("registry")))  # one database
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    assert result.status == "ok", result.checks
    assert next(c for c in result.checks if c.name == "restore").detail.startswith(
        "into a throwaway MariaDB")
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 0x01
            pack.write_bytes(bytes(data))
    result = run_drill(repo, tenant="Nobeoka", scratch_dir=str(scratch))
    failed = [c for c in result.checks if not c.ok]
    assert result.status == "failed"
    assert failed[0].name == "restore" and "data/" in failed[0].detail, failed
    assert _left_behind(scratch) == []
