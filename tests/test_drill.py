"""Drills (drsync drill) and the catalog rebuilt from the store alone (catalog rebuild)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drsync.drill import run_drill
from drsync.repo import Entry, Repository, SnapshotWriter
from drsync.repo.drills import load_drills
from drsync.repo.keys import Secret
from drsync.sources.sqlite import sqlite_consistent_copy
from drsync.store import open_store
from drsync.testing import make_repository, text_like


class Cli:
    def __init__(self, exe: str, base: Path) -> None:
        self.exe = exe
        self.base = base
        self.config = base / "tenant.toml"
        self.config.write_text(f'repo = "{base / "repo"}"\nkey_file = "{base / "t.key"}"\n'
                               f'catalog = "{base / "catalog.sqlite"}"\ntenant = "Nobeoka"\n')

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.exe, *args], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ))
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str, ok: bool = True) -> Any:
        return json.loads(self(*args, "--json", ok=ok).stdout)


@pytest.fixture
def cli(drsync_bin: str, tmp_path: Path) -> Cli:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "t.key")
    return Cli(drsync_bin, tmp_path)


def _registry(path: Path, residents: int = 2000) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT, moved TEXT)")
    db.executemany("INSERT INTO resident (name, moved) VALUES (?, ?)",
                   [(f"住民 {i}", f"2026-11-{i % 28 + 1:02d}") for i in range(residents)])
    db.execute("CREATE TABLE code (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    db.executemany("INSERT INTO code VALUES (?, ?)", [(f"c{i}", "x") for i in range(37)])
    db.execute("DELETE FROM resident WHERE id % 10 = 0")  # rowids with gaps
    db.commit()
    db.close()
    return path


def _checksum(path: Path, table: str) -> int:
    """The documented row checksum, computed here on its own: the sum mod 2**63 of the
    8-byte BLAKE2b of repr(row) over the table's rows."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        db.close()
    return sum(int.from_bytes(hashlib.blake2b(repr(tuple(r)).encode(), digest_size=8)
                              .digest(), "big") for r in rows) % (1 << 63)


def _flip_byte_in_every_pack(repo_dir: Path) -> list[str]:
    names = []
    for pack in sorted((repo_dir / "data").rglob("*")):
        if pack.is_file():
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 0x01
            pack.write_bytes(bytes(data))
            names.append(f"data/{pack.parent.name}/{pack.name}")
    return names


def test_sqlite_backup_records_table_counts_and_a_drill_passes(cli: Cli, tmp_path: Path) -> None:
    db = _registry(tmp_path / "registry.db")
    cli("--config", str(cli.config), "backup", "--sqlite", str(db))
    spec = cli.json("--config", str(cli.config), "snapshots")[-1]["source"]["spec"]
    assert spec["tables"] == {"code": {"rows": 37, "checksum": _checksum(db, "code")},
                              "resident": {"rows": 1800, "rowid_sum": sum(
                                  i for i in range(1, 2001) if i % 10),
                                  "checksum": _checksum(db, "resident")}}

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    doc = cli.json("drill", "--config", str(cli.config), "--scratch-dir", str(scratch))
    assert doc["status"] == "ok" and doc["tenant"] == "Nobeoka"
    snaps = cli.json("--config", str(cli.config), "snapshots")
    assert doc["snapshot_id"] == snaps[-1]["id"]
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["sqlite integrity_check"] == {"name": "sqlite integrity_check", "ok": True,
                                                "detail": "ok"}
    assert checks["table counts"]["ok"] and "1837 rows" in checks["table counts"]["detail"]
    assert doc["rto_s"] > 0 and doc["rpo_s"] >= 0
    assert list(scratch.iterdir()) == []  # torn down

    runs = cli.json("--config", str(cli.config), "runs")
    drill_runs = [r for r in runs if r["kind"] == "drill"]
    assert [(r["id"], r["status"], r["snapshot_id"]) for r in drill_runs] == [
        (doc["drill_id"], "ok", doc["snapshot_id"])]
    repo = Repository.open(open_store(str(tmp_path / "repo")), Secret(passphrase="pw"))
    stored = load_drills(repo)
    assert [(d["drill_id"], d["status"], d["rto_s"]) for d in stored] == [
        (doc["drill_id"], "ok", pytest.approx(doc["rto_s"], abs=1e-3))]
    assert [c["name"] for c in stored[0]["checks"]] == [c["name"] for c in doc["checks"]]
    # A relative --scratch-dir: the SQLite check crashed with a traceback ("relative path
    # can't be expressed as a file URI") and no drill was recorded. Found by an edge hunt.
    relative = subprocess.run([cli.exe, "drill", "--config", str(cli.config), "--scratch-dir",
                               "scratch", "--json"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
    assert relative.returncode == 0, relative.stderr
    assert json.loads(relative.stdout)["status"] == "ok" and list(scratch.iterdir()) == []


def test_a_drill_fails_naming_the_damaged_pack_and_removes_its_scratch(
        cli: Cli, tmp_path: Path) -> None:
    db = _registry(tmp_path / "registry.db")
    cli("--config", str(cli.config), "backup", "--sqlite", str(db))
    damaged = _flip_byte_in_every_pack(tmp_path / "repo")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = cli("drill", "--config", str(cli.config), "--scratch-dir", str(scratch), "--json",
               ok=False)
    assert done.returncode == 13, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "failed"
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["restore"]
    assert any(name in failed[0]["detail"] for name in damaged), failed[0]["detail"]
    assert "authentication failed" in failed[0]["detail"]
    assert list(scratch.iterdir()) == []
    # On record as failed, in the catalog and in the store.
    runs = cli.json("--config", str(cli.config), "runs")
    assert [(r["kind"], r["status"]) for r in runs if r["id"] == doc["drill_id"]] == [
        ("drill", "failed")]
    assert failed[0]["detail"] in runs[0]["error"]
    text = cli("drill", "--config", str(cli.config), ok=False)
    assert text.returncode == 13 and "failed: restore: " in text.stdout


def test_files_drill_checks_every_size(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "exports"
    (src / "sub").mkdir(parents=True)
    (src / "residents.csv").write_bytes(text_like(700_000, seed=1))
    (src / "sub" / "empty").write_bytes(b"")
    (src / "link").symlink_to("residents.csv")
    cli("--config", str(cli.config), "backup", str(src))
    doc = cli.json("drill", "--config", str(cli.config))
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "ok" and checks["files"]["detail"] == \
        "2 files with the snapshot's sizes"
    assert doc["bytes_restored"] == 700_000
    # A scratch directory that does not exist yet is made (and only the drill's own
    # directory in it removed); one that cannot be made is one line, exit 17.
    scratch = tmp_path / "not" / "yet"
    assert cli.json("drill", "--config", str(cli.config), "--scratch-dir",
                    str(scratch))["status"] == "ok"
    assert scratch.is_dir() and list(scratch.iterdir()) == []
    (tmp_path / "a-file").write_text("in the way")
    done = cli("drill", "--config", str(cli.config), "--scratch-dir",
               str(tmp_path / "a-file" / "scratch"), ok=False)
    assert done.returncode == 17
    assert done.stderr.strip().splitlines() == [
        f"drsync: error: cannot make the drill's scratch directory in "
        f"{tmp_path / 'a-file' / 'scratch'}: Not a directory"]


def test_counts_that_differ_from_the_recorded_ones_fail_the_drill(tmp_path: Path) -> None:
    """A backup whose recorded counts do not match what is restored (here: written so
    on purpose) fails the count check, naming the table and both numbers."""
    repo = make_repository(str(tmp_path / "repo"), "pw")
    db = _registry(tmp_path / "registry.db", residents=50)
    with sqlite_consistent_copy(str(db)) as copy:
        spec = dict(copy.info)
        spec["tables"] = {**spec["tables"], "resident": {"rows": 46, "rowid_sum": 1}}
        writer = SnapshotWriter(repo, repo.load_index())
        with open(copy.path, "rb") as fh:
            writer.add_stream(Entry(copy.name, "stream", 0o600), fh)
        writer.commit(host="h", source_kind="sqlite", source_spec=spec, tags=[],
                      summary={}, version="t")
    result = run_drill(repo, tenant="Nobeoka")
    assert result.status == "failed"
    counts = next(c for c in result.checks if c.name == "table counts")
    assert not counts.ok
    assert "resident: rowid_sum 1125, recorded 1" in counts.detail
    assert "resident: rows 45, recorded 46" in counts.detail
    integrity = next(c for c in result.checks if c.name == "sqlite integrity_check")
    assert integrity.ok
    # Older snapshots recorded no counts: the drill validates with what exists.
    with sqlite_consistent_copy(str(db)) as copy:
        spec = {k: v for k, v in copy.info.items() if k != "tables"}
        writer = SnapshotWriter(repo, repo.load_index())
        writer.add_stream(Entry(copy.name, "stream", 0o600), io.BytesIO(copy.path.read_bytes()))
        writer.commit(host="h", source_kind="sqlite", source_spec=spec, tags=[],
                      summary={}, version="t")
    result = run_drill(repo, tenant="Nobeoka")
    assert result.status == "ok"
    assert "not recorded" in next(c for c in result.checks if c.name == "table counts").detail


def test_a_changed_value_with_the_same_counts_fails_the_checksum(tmp_path: Path) -> None:
    """One column of one row differs from what the backup recorded (same rows, same
    rowids): only the per-table checksum can tell, and it names the table."""
    repo = make_repository(str(tmp_path / "repo"), "pw")
    db = _registry(tmp_path / "registry.db", residents=50)
    with sqlite_consistent_copy(str(db)) as copy:
        spec = dict(copy.info)  # counted before the change below
        conn = sqlite3.connect(copy.path)
        conn.execute("UPDATE resident SET name = 'someone else' WHERE id = 7")
        conn.commit()
        conn.close()
        writer = SnapshotWriter(repo, repo.load_index())
        with open(copy.path, "rb") as fh:
            writer.add_stream(Entry(copy.name, "stream", 0o600), fh)
        writer.commit(host="h", source_kind="sqlite", source_spec=spec, tags=[],
                      summary={}, version="t")
    result = run_drill(repo, tenant="Nobeoka")
    counts = next(c for c in result.checks if c.name == "table counts")
    assert result.status == "failed" and not counts.ok
    assert counts.detail.startswith("resident: checksum ") and "rows" not in counts.detail
    assert "code" not in counts.detail


def _comparable_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(runs, key=lambda r: r["id"])


def test_catalog_rebuilt_from_the_store_alone_equals_the_lost_one(cli: Cli,
                                                                  tmp_path: Path) -> None:
    db = _registry(tmp_path / "registry.db")
    cfg = str(cli.config)
    cli("--config", cfg, "backup", "--sqlite", str(db))
    sqlite3.connect(db).execute("DELETE FROM resident WHERE id < 100").connection.commit()
    cli("--config", cfg, "backup", "--sqlite", str(db))
    cli("--config", cfg, "backup", "--sqlite", str(tmp_path / "nonexistent.db"), ok=False)
    cli("drill", "--config", cfg)
    _flip_byte_in_every_pack(tmp_path / "repo")
    cli("drill", "--config", cfg, ok=False)

    runs_before = cli.json("--config", cfg, "runs")
    snaps_before = cli.json("--config", cfg, "snapshots")
    assert sorted(r["status"] for r in runs_before) == ["failed", "failed", "ok", "ok", "ok"]
    from drsync.catalog.db import Catalog

    catalog = Catalog(str(tmp_path / "catalog.sqlite"))
    drills_before = catalog.drills()
    catalog.close()
    assert len(drills_before) == 2

    (tmp_path / "catalog.sqlite").unlink()  # the primary and its catalog are gone
    assert cli.json("--config", cfg, "runs") == []
    rebuilt = cli.json("catalog", "rebuild", "--config", cfg)
    assert (rebuilt["runs"], rebuilt["drills"]) == (3, 2)

    assert _comparable_runs(cli.json("--config", cfg, "runs")) == _comparable_runs(runs_before)
    assert cli.json("--config", cfg, "snapshots") == snaps_before
    catalog = Catalog(str(tmp_path / "catalog.sqlite"))
    assert catalog.drills() == drills_before
    catalog.close()
    # Rebuilding again (or into a catalog that has the runs) duplicates nothing.
    cli("catalog", "rebuild", "--config", cfg)
    assert len(cli.json("--config", cfg, "runs")) == 5
    # A catalog file damaged (truncated): other commands say what to do in one line;
    # rebuild moves it aside and rebuilds it, equal again.
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(path.read_bytes()[:1000])
    broken = cli("--config", cfg, "runs", ok=False)
    assert broken.returncode == 4
    assert broken.stderr.strip().endswith("(a damaged catalog: `drsync catalog rebuild` moves "
                                          "it aside and rebuilds it from the store)")
    done = cli("catalog", "rebuild", "--config", cfg)
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("catalog.sqlite.damaged-")]
    assert aside.stat().st_size == 1000
    assert done.stderr.strip() == (f"drsync: warning: cannot open catalog {path}: "
                                   "(sqlite3.DatabaseError) database disk image is malformed: "
                                   f"moved aside to {aside}; rebuilding it from the store")
    assert _comparable_runs(cli.json("--config", cfg, "runs")) == _comparable_runs(runs_before)


def test_catalog_rebuild_into_another_catalog_url(cli: Cli, tmp_path: Path) -> None:
    db = _registry(tmp_path / "registry.db")
    cfg = str(cli.config)
    cli("--config", cfg, "backup", "--sqlite", str(db))
    cli("drill", "--config", cfg)
    other = tmp_path / "secondary.sqlite"
    done = cli("catalog", "rebuild", "--config", cfg, "--catalog", str(other))
    assert "1 run(s), 1 drill(s)" in done.stdout
    moved = cli.json("--config", cfg, "--catalog", str(other), "runs")
    assert _comparable_runs(moved) == _comparable_runs(cli.json("--config", cfg, "runs"))


def _record(**changes: Any) -> dict[str, Any]:
    return {"drill_id": "d" * 32, "tenant": "Nobeoka", "host": "dr-1", "status": "ok",
            "started": "2026-11-27T05:00:00+00:00", "finished": "2026-11-27T05:00:42+00:00",
            "snapshot_id": "a" * 64, "snapshot_time": "2026-11-27T01:00:00Z",
            "source_kind": "sqlite", "rto_s": 42.0, "rpo_s": 14400.0, "bytes_restored": 10,
            "checks": [{"name": "restore", "ok": True, "detail": "fine"}],
            "drsync_version": "t", **changes}


def test_drill_records_refuse_bad_shapes_and_skip_damaged_ones() -> None:
    from drsync.errors import UsageError
    from drsync.repo.check import check_repository
    from drsync.repo.drills import save_drill
    from drsync.repo.objects import TYPE_DRILL
    from drsync.testing import make_repo

    repo = make_repo()
    for bad, why in ((_record(status="maybe"), "'status'"), (_record(rto_s="1"), "'rto_s'"),
                     (_record(extra=1), "unknown field 'extra'"),
                     (_record(started="2026-11-27T05:00:00"), "no time zone"),
                     (_record(checks=[{"name": "x", "ok": 1, "detail": ""}]), "'checks'")):
        with pytest.raises(UsageError, match=why):
            save_drill(repo, bad)
    save_drill(repo, _record())
    damaged = save_drill(repo, _record(drill_id="e" * 32))
    data = bytearray(repo.store.get(f"drills/{damaged}"))
    data[-1] ^= 1
    repo.store.delete(f"drills/{damaged}")
    repo.store.put(f"drills/{damaged}", bytes(data))
    malformed, _size = repo.save_document(TYPE_DRILL, "drills", {**_record(drill_id="f" * 32),
                                                                 "rto_s": None})
    warnings: list[str] = []
    assert [d["drill_id"] for d in load_drills(repo, warnings.append)] == ["d" * 32]
    assert len(warnings) == 2
    assert any(f"drills/{damaged}" in w for w in warnings)
    assert any(f"drills/{malformed}" in w and "'rto_s'" in w for w in warnings)
    errors = check_repository(repo).errors
    assert any(f"drills/{damaged}" in e for e in errors)


def test_a_damaged_newest_snapshot_is_not_passed_over_for_an_older_one(cli: Cli,
                                                                         tmp_path: Path) -> None:
    """A snapshot object that fails to open may be the newest point (its time is inside
    it). `restore latest` restored the older one with exit 0 and the drill proved the
    older one "ok" without a word: the loss of the newest night was hidden. Found by an
    edge hunt."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "registry.csv").write_text("night 1\n")
    cli("--config", str(cli.config), "backup", str(data))
    (data / "registry.csv").write_text("night 2\n")
    newest = cli.json("--config", str(cli.config), "backup", str(data))["snapshot_id"]
    damaged = tmp_path / "repo" / "snapshots" / newest
    damaged.chmod(0o600)
    raw = bytearray(damaged.read_bytes())
    raw[-5] ^= 0x01
    damaged.write_bytes(bytes(raw))
    done = cli("--config", str(cli.config), "restore", "latest", "--target",
               str(tmp_path / "out"), ok=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 13 and len(lines) == 1, done.stderr
    assert f"cannot tell the latest snapshot: object snapshots/{newest}" in lines[0]
    assert "a snapshot id (`drsync snapshots`) restores a readable one" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    drill = cli.json("--config", str(cli.config), "drill", ok=False)
    assert drill["status"] == "failed"
    assert next(c for c in drill["checks"] if not c["ok"])["name"] == "snapshot"
    # The older point is still there for whoever names it.
    older = [s["id"] for s in cli.json("--config", str(cli.config), "snapshots")]
    assert newest not in older and len(older) == 1
    cli("--config", str(cli.config), "restore", older[0], "--target", str(tmp_path / "out"))
    assert next((tmp_path / "out").rglob("registry.csv")).read_text() == "night 1\n"
