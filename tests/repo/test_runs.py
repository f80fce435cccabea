"""Run records in the store: sealed, written by every backup (failed ones too), skipped
with a warning when unreadable, and enough to rebuild a lost catalog."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.catalog import RunJournal
from drsync.catalog.db import Catalog
from drsync.errors import SourceError, StoreError, UsageError
from drsync.repo.objects import TYPE_RUN, open_document
from drsync.repo.runs import load_runs, run_names, save_run
from drsync.store import MemoryStore
from drsync.testing import make_repo, make_repository

RECORD = {
    "run_id": "a" * 32, "tenant": "Nobeoka", "host": "nobeoka-db", "kind": "backup",
    "source": "sqlite:/var/lib/app/m.db", "status": "overrun",
    "planned_start": "2026-11-27T01:00:00+00:00", "deadline": "2026-11-27T02:00:00+00:00",
    "started": "2026-11-27T01:00:01+00:00", "finished": "2026-11-27T02:00:00+00:00",
    "bytes_read": 10, "bytes_added": 5, "bytes_sent": 5, "snapshot_id": None,
    "error": "deadline reached", "drsync_version": "0.1.0",
}


def test_record_is_sealed_under_its_hash_and_reads_back() -> None:
    repo = make_repo()
    oid = save_run(repo, RECORD)
    assert run_names(repo) == [f"runs/{oid}"]
    data = repo.store.get(f"runs/{oid}")
    assert data[:6] == b"DRSYR\x01"
    assert b"Nobeoka" not in data and b"deadline reached" not in data  # encrypted
    assert open_document(repo.key, TYPE_RUN, data)["tenant"] == "Nobeoka"
    assert load_runs(repo) == [{"version": 1, **RECORD}]
    # Saved again (a retry): another object (a fresh nonce), still one run.
    again = save_run(repo, {**RECORD, "finished": "2026-11-27T02:00:01+00:00"})
    assert again != oid and len(run_names(repo)) == 2
    assert [r["finished"] for r in load_runs(repo)] == ["2026-11-27T02:00:01+00:00"]


@pytest.mark.parametrize("change, message", [
    ({"status": "running"}, "field 'status'"),
    ({"started": "yesterday"}, "not an ISO 8601 time"),
    ({"started": "2026-11-27T01:00:01"}, "no time zone"),
    ({"bytes_sent": -1}, "field 'bytes_sent' is negative"),
    ({"colour": "red"}, "unknown field 'colour'"),
])
def test_bad_record_is_refused_naming_the_field(change: dict[str, object], message: str) -> None:
    repo = make_repo()
    with pytest.raises(UsageError, match=message):
        save_run(repo, {**RECORD, **change})
    assert run_names(repo) == []


def test_unreadable_record_is_skipped_with_a_warning() -> None:
    repo = make_repo()
    good = save_run(repo, RECORD)
    bad = save_run(repo, {**RECORD, "run_id": "b" * 32})
    data = bytearray(repo.store.get(f"runs/{bad}"))
    data[-1] ^= 1
    repo.store.delete(f"runs/{bad}")
    repo.store.put(f"runs/{bad}", bytes(data))
    warnings: list[str] = []
    records = load_runs(repo, warnings.append)
    assert [r["run_id"] for r in records] == ["a" * 32]
    assert len(warnings) == 1 and f"runs/{bad}" in warnings[0] and "skipped" in warnings[0]
    assert good != bad
    from drsync.repo.check import check_repository

    report = check_repository(repo)
    assert [e for e in report.errors if "runs/" in e] == [warnings[0].removesuffix(": skipped")]
    assert not report.ok


def test_every_backup_writes_its_record_failed_ones_too(tmp_path: Path) -> None:
    repo = make_repo()
    journal = RunJournal(str(tmp_path / "catalog.sqlite"))
    ok = run_backup(repo, BackupRequest(stdin_name="a", stdin=io.BytesIO(b"abc" * 1000),
                                        host="h1", tenant="Nobeoka"), catalog=journal)
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(repo, BackupRequest(sqlite=str(tmp_path / "none.db"), host="h1"),
                   catalog=journal)
    records = load_runs(repo)
    assert [r["status"] for r in records] == ["ok", "failed"]
    good, failed = records
    assert good["run_id"] == ok.run_id and good["snapshot_id"] == ok.snapshot_id
    assert good["tenant"] == "Nobeoka" and good["host"] == "h1" and good["kind"] == "backup"
    assert good["bytes_read"] == 3000 and good["bytes_added"] == ok.bytes_added > 0
    assert good["bytes_sent"] == ok.bytes_added and good["error"] is None
    assert good["finished"] >= good["started"] and good["drsync_version"]
    assert failed["tenant"] == "h1"  # default: the host
    assert failed["snapshot_id"] is None and "does not exist" in failed["error"]
    # The catalog has the same run ids as the store.
    catalog_ids = {r.id: r.status for r in Catalog(str(tmp_path / "catalog.sqlite")).runs()}
    assert catalog_ids == {good["run_id"]: "ok", failed["run_id"]: "failed"}


class _DeadlineReached(Exception):
    """How a scheduler stops a run at its deadline (the agent's own exception)."""

    run_status = "overrun"


def test_a_run_stopped_at_its_deadline_is_recorded_as_overrun(tmp_path: Path) -> None:
    repo = make_repo()
    journal = RunJournal(str(tmp_path / "catalog.sqlite"))

    def progress(_n: int) -> None:
        raise _DeadlineReached("deadline 01:45 reached: stopped after the current pack")

    planned = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    with pytest.raises(_DeadlineReached):
        run_backup(repo, BackupRequest(stdin_name="a", stdin=io.BytesIO(os.urandom(1 << 16)),
                                       tenant="Nobeoka", planned_start=planned,
                                       deadline=planned + timedelta(minutes=45)),
                   catalog=journal, progress=progress)
    [record] = load_runs(repo)
    assert record["status"] == "overrun" and record["snapshot_id"] is None
    assert record["planned_start"] == "2026-11-27T01:00:00+00:00"
    assert record["deadline"] == "2026-11-27T01:45:00+00:00"
    assert record["error"] == "_DeadlineReached('deadline 01:45 reached: stopped after the " \
        "current pack')"
    assert repo.snapshot_ids() == []
    [run] = Catalog(str(tmp_path / "catalog.sqlite")).runs()
    assert run.status == "overrun" and run.id == record["run_id"]


class _RunsRefused(MemoryStore):
    """A store that takes everything but run records (a full or read-only prefix)."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith("runs/"):
            raise StoreError(f"{self.url}: put {key}: quota exceeded")
        super().put(key, data, if_absent=if_absent)


def test_a_record_that_cannot_be_written_never_masks_the_outcome(tmp_path: Path) -> None:
    warnings: list[str] = []
    repo = make_repo(_RunsRefused())
    repo._on_warning = warnings.append  # the CLI prints these on stderr
    result = run_backup(repo, BackupRequest(stdin_name="a", stdin=io.BytesIO(b"abc")))
    assert result.snapshot_id in repo.snapshot_ids()
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(repo, BackupRequest(sqlite=str(tmp_path / "none.db")))
    assert len(warnings) == 2
    assert all("not written to the store" in w and "quota exceeded" in w for w in warnings)
    assert run_names(repo) == []


class _PacksRefused(MemoryStore):
    """A store that fails the backup itself (a cut link while storing packs)."""

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith("data/"):
            raise StoreError(f"{self.url}: put {key}: connection reset")
        super().put(key, data, if_absent=if_absent)


def test_no_record_is_tried_when_the_store_is_what_failed() -> None:
    warnings: list[str] = []
    repo = make_repo(_PacksRefused())
    repo._on_warning = warnings.append
    with pytest.raises(StoreError, match="connection reset"):
        run_backup(repo, BackupRequest(stdin_name="a", stdin=io.BytesIO(os.urandom(1 << 16))))
    assert warnings == [] and run_names(repo) == []  # its retry deadline is spent already


def _cli(exe: str, base: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRSYNC_REPO": str(base / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(base / "catalog.sqlite")}
    done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_a_lost_catalog_is_rebuilt_from_the_store(drsync_bin: str, tmp_path: Path) -> None:
    make_repository(str(tmp_path / "repo"), "pw")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_bytes(b"x" * 5000)
    _cli(drsync_bin, tmp_path, "backup", "--tenant", "Nobeoka", str(tmp_path / "data"))
    _cli(drsync_bin, tmp_path, "backup", "--tenant", "Nobeoka", "--sqlite",
         str(tmp_path / "missing.db"), ok=False)
    _cli(drsync_bin, tmp_path, "backup", "--tenant", "Hyuga", str(tmp_path / "data"))
    before = json.loads(_cli(drsync_bin, tmp_path, "runs", "--json").stdout)
    assert sorted((r["tenant"], r["status"]) for r in before) == [
        ("Hyuga", "ok"), ("Nobeoka", "failed"), ("Nobeoka", "ok")]
    for path in tmp_path.glob("catalog.sqlite*"):
        path.unlink()
    assert json.loads(_cli(drsync_bin, tmp_path, "runs", "--json").stdout) == []
    for _ in range(2):  # importing again duplicates nothing
        done = _cli(drsync_bin, tmp_path, "runs", "--from-store", "--json")
        assert "imported 3 run record(s)" in done.stderr
        assert json.loads(done.stdout) == before


def test_an_old_catalog_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema before run records (issue 9)
        db.execute("CREATE TABLE runs (id VARCHAR(32) PRIMARY KEY, repo VARCHAR(1024) NOT NULL,"
                   " kind VARCHAR(32) NOT NULL, source VARCHAR(1024) NOT NULL, host VARCHAR(255)"
                   " NOT NULL, started DATETIME NOT NULL, ended DATETIME, status VARCHAR(16) NOT"
                   " NULL, bytes_read BIGINT NOT NULL, bytes_added BIGINT NOT NULL, snapshot_id "
                   "VARCHAR(64), error TEXT)")
        db.execute("INSERT INTO runs VALUES ('old1', 'r', 'backup', 's', 'hyuga-db', "
                   "'2026-11-20 01:00:00', '2026-11-20 01:10:00', 'ok', 1, 1, 'snap', NULL)")
    catalog = Catalog(str(path))
    [old] = catalog.runs()
    assert old.tenant is None and old.tenant_name == "hyuga-db"
    catalog.import_runs("r", [RECORD])
    assert {r.id: r.tenant_name for r in catalog.runs()} == {"old1": "hyuga-db",
                                                             "a" * 32: "Nobeoka"}
    assert [r.id for r in catalog.tenant_runs(["hyuga-db"])] == ["old1"]
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"tenant", "bytes_sent", "planned_start", "deadline"} <= columns


def test_tenant_setting_defaults_to_the_host(tmp_path: Path) -> None:
    from drsync.settings import resolve

    config = tmp_path / "agent.toml"
    config.write_text('host = "nobeoka-db"\n')
    assert resolve(str(config), {}, {"HOME": str(tmp_path)}).tenant == "nobeoka-db"
    config.write_text('host = "nobeoka-db"\ntenant = "Nobeoka"\n')
    assert resolve(str(config), {}, {"HOME": str(tmp_path)}).tenant == "Nobeoka"
    assert resolve(None, {}, {"HOME": str(tmp_path)}).tenant is None  # backup: the hostname


def test_a_relative_source_is_recorded_absolute(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """As the source reads it: the catalog and the store record the absolute path (the
    SQLite one its snapshot records), symlinks not resolved."""
    walk = tmp_path / "walkC"
    (walk / "src" / "tree").mkdir(parents=True)
    db = sqlite3.connect(walk / "src" / "saiki.db")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    (walk / "src" / "tree" / "a.txt").write_text("a")
    os.symlink(walk / "src", walk / "link")
    repo = make_repo()
    journal = RunJournal(str(tmp_path / "catalog.sqlite"))
    monkeypatch.chdir(walk)
    run_backup(repo, BackupRequest(sqlite="./link//saiki.db", host="h1"), catalog=journal)
    run_backup(repo, BackupRequest(paths=["src/tree/", "link/../link/tree/a.txt"], host="h1"),
               catalog=journal)
    monkeypatch.chdir(tmp_path)
    sqlite_run, files_run = load_runs(repo)
    snap = next(s for s in repo.snapshots() if s.source_kind == "sqlite")
    assert sqlite_run["source"] == f"sqlite:{walk}/link/saiki.db" \
        == f"sqlite:{snap.source_spec['path']}"
    assert files_run["source"] == f"{walk}/src/tree {walk}/link/tree/a.txt"
    catalog = Catalog(str(tmp_path / "catalog.sqlite"))
    assert sorted(r.source for r in catalog.runs()) == sorted(
        [sqlite_run["source"], files_run["source"]])
