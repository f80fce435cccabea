"""Runbooks are procedures for a disaster: every command in them must work as written."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drsync.testing import make_repository

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S)


def _run(path: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + "\n".join(_blocks(path))
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def tenant(tmp_path: Path, drsync_bin: str) -> dict[str, str]:
    """A tenant's repository with two nights of a SQLite database, as the agent leaves it."""
    bindir = str(Path(drsync_bin).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "DRSYNC_REPO": str(tmp_path / "secondary-dc" / "tenant"),
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite"),
           "DRSYNC_PASSWORD": "tenant passphrase"}
    db = tmp_path / "registry.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT, address TEXT)")
    con.executemany("INSERT INTO resident (name, address) VALUES (?, ?)",
                    [(f"住民 {i}", f"宮崎県延岡市 {i}") for i in range(20000)])
    con.commit()
    make_repository(env["DRSYNC_REPO"], "tenant passphrase", tmp_path / "tenant.key")
    subprocess.run([drsync_bin, "backup", "--sqlite", str(db)], env=env, check=True,
                   capture_output=True)
    con.execute("UPDATE resident SET address = 'moved' WHERE id % 100 = 0")
    con.commit()
    con.close()
    subprocess.run([drsync_bin, "backup", "--sqlite", str(db)], env=env, check=True,
                   capture_output=True)
    del env["DRSYNC_PASSWORD"]
    env["DRSYNC_KEY_FILE"] = str(tmp_path / "tenant.key")
    env["SOURCE_DB"] = str(db)
    return env


def test_every_runbook_has_commands() -> None:
    books = sorted(RUNBOOKS.glob("*.md"))
    assert books
    for book in books:
        assert _blocks(book), f"{book.name} has no ```sh blocks"


def test_restore_tenant_runbook(tenant: dict[str, str], tmp_path: Path) -> None:
    restore_dir = tmp_path / "new-host" / "registry"
    env = {**tenant, "RESTORE_DIR": str(restore_dir)}
    done = _run(RUNBOOKS / "restore-tenant.md", env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registry.db ok" in done.stdout
    restored = sqlite3.connect(restore_dir / "registry.db")
    source = sqlite3.connect(tenant["SOURCE_DB"])
    query = "SELECT * FROM resident ORDER BY id"
    assert restored.execute(query).fetchall() == source.execute(query).fetchall()


def test_after_a_crash_runbook(tenant: dict[str, str], tmp_path: Path, drsync_bin: str) -> None:
    # Crash a backup for real: kill -9 while it waits for input, holding the lock.
    proc = subprocess.Popen([drsync_bin, "backup", "--stdin-name", "x"], env=tenant,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    repo = Path(tenant["DRSYNC_REPO"])
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(1 << 20))
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not (repo / "lock").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert (repo / "lock").exists()
    done = _run(RUNBOOKS / "after-a-crash.md", tenant, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note: object lock: stale" in done.stdout
    assert "removed lock" in done.stdout
    assert not (repo / "lock").exists()


@pytest.mark.slow
def test_restore_postgres_pitr_runbook(tenant_factory: Any, scratch_dir: Path) -> None:
    """The PostgreSQL runbook as root on a tenant archiving through wal-push: rows committed
    after the target are absent, every row before it is there."""
    from drsync.testing_postgres import Cluster, free_port

    tenant = tenant_factory()
    tenant.drsync("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY)")
    for _ in range(12):
        tenant.cluster.psql("INSERT INTO stamped DEFAULT VALUES")
    stamps = tenant.cluster.psql(
        "SELECT pg_xact_commit_timestamp(xmin)::text FROM stamped ORDER BY id").splitlines()
    target = tenant.cluster.psql(f"SELECT (timestamptz '{stamps[5]}' + (timestamptz "
                                 f"'{stamps[6]}' - timestamptz '{stamps[5]}') / 2)::text")
    tenant.switch_and_ship()
    port = free_port()
    exe_dir = str(Path(tenant.exe).parent)
    env = {**os.environ, "PATH": f"{exe_dir}:{tenant.bindir}:{os.environ['PATH']}",
           "DRSYNC_REPO": str(tenant.repo), "DRSYNC_KEY_FILE": str(tenant.key),
           "DRSYNC_CATALOG": str(tenant.base / "catalog.sqlite"), "TARGET_TIME": target,
           "PGDATA_NEW": str(scratch_dir / "data"), "PGPORT_NEW": str(port),
           "PGSOCKET_NEW": str(scratch_dir)}
    workdir = scratch_dir / "incident"
    workdir.mkdir()
    done = _run(RUNBOOKS / "restore-postgres-pitr.md", env, workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in recovery: false" in done.stdout
    restored = Cluster(scratch_dir, tenant.bindir, port)
    assert restored.psql("SELECT count(*) FROM stamped") == "6"
