"""A real fleet on this machine: five tenants, local repositories, real backups.

Nobeoka (priority 1): files; Hyuga (2): a SQLite database; Saiki (2, rto 2 h):
a pg_dump of a scratch database on the local PostgreSQL (127.0.0.1:5432);
Kadogawa (3): a repository with no backup yet; Shiiba (1): no repository
configured at all.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drsync.testing import make_repository
from tests.helpers import unavailable

PG = "host=127.0.0.1 port=5432"


@dataclass
class DrFleet:
    exe: str
    base: Path
    fleet: Path
    targets: Path
    catalog: Path
    sources: dict[str, Path] = field(default_factory=dict)
    pg_source: str | None = None
    pg_target: str | None = None

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DRSYNC_CATALOG": str(self.catalog)}
        return subprocess.run([self.exe, *args], capture_output=True, text=True, env=env,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "DRSYNC_CATALOG": str(self.catalog)}
        return subprocess.Popen([self.exe, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)


def psql(dbname: str, sql: str) -> str:
    done = subprocess.run(["psql", f"{PG} dbname={dbname}", "-XAtqc", sql],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pg_available() -> bool:
    if shutil.which("psql") is None or shutil.which("pg_dump") is None:
        return False
    done = subprocess.run(["psql", f"{PG} dbname=test", "-XAtqc", "select 1"],
                          capture_output=True, text=True, timeout=30)
    return done.returncode == 0


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def dr_fleet(drsync_bin: str, tmp_path: Path) -> Iterator[DrFleet]:
    if not _pg_available():
        unavailable("needs the local PostgreSQL on 127.0.0.1:5432 (database test)")
    setup = DrFleet(drsync_bin, tmp_path, tmp_path / "fleet.toml", tmp_path / "targets.toml",
                    tmp_path / "catalog.sqlite")
    suffix = uuid.uuid4().hex[:10]
    setup.pg_source, setup.pg_target = f"drfleet_src_{suffix}", f"drfleet_dst_{suffix}"
    psql("test", f"CREATE DATABASE {setup.pg_source}")
    try:
        _populate(setup)
        yield setup
    finally:
        for db in (setup.pg_source, setup.pg_target):
            psql("test", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _backup(setup: DrFleet, name: str, *args: str) -> None:
    repo, key = setup.base / "repos" / name, setup.base / "keys" / f"{name}.key"
    done = setup.run("--repo", str(repo), "--key-file", str(key), "backup", *args)
    assert done.returncode == 0, done.stderr


def _populate(setup: DrFleet) -> None:
    (setup.base / "keys").mkdir()
    for name in ("nobeoka", "hyuga", "saiki", "kadogawa"):
        make_repository(str(setup.base / "repos" / name),
                        key_file_path=setup.base / "keys" / f"{name}.key")
    files = setup.base / "src" / "nobeoka"
    (files / "registry" / "2026").mkdir(parents=True)
    for i in range(40):  # 12 MB: big enough that a kill can land mid-way
        (files / "registry" / "2026" / f"r{i:03d}.bin").write_bytes(os.urandom(300_000))
    (files / "README.txt").write_text("resident registry export\n")
    setup.sources["nobeoka"] = files
    _backup(setup, "nobeoka", str(files))
    db = setup.base / "src" / "hyuga.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT, ward TEXT)")
        conn.executemany("INSERT INTO resident (name, ward) VALUES (?, ?)",
                         [(f"resident {i}", f"ward {i % 7}") for i in range(5000)])
    conn.close()
    setup.sources["hyuga"] = db
    _backup(setup, "hyuga", "--sqlite", str(db))
    psql(str(setup.pg_source), "CREATE TABLE tax (id int PRIMARY KEY, amount numeric); "
         "INSERT INTO tax SELECT g, g * 1.5 FROM generate_series(1, 3000) g")
    _backup(setup, "saiki", "--pg-dump", f"{PG} dbname={setup.pg_source}")
    setup.fleet.write_text("""
[window]
start = "23:00"
minutes = 180

[[link]]
name = "wan"
mbit_per_s = 20

[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300

[dr]
restore_mbit_per_s = 80

[[tenant]]
name = "Nobeoka"
priority = 1
rto_hours = 4
repo = "repos/nobeoka"
key_file = "keys/nobeoka.key"

[[tenant]]
name = "Hyuga"
priority = 2
repo = "repos/hyuga"
key_file = "keys/hyuga.key"

[[tenant]]
name = "Saiki"
priority = 2
rto_hours = 2
repo = "repos/saiki"
key_file = "keys/saiki.key"

[[tenant]]
name = "Kadogawa"
priority = 3
repo = "repos/kadogawa"
key_file = "keys/kadogawa.key"

[[tenant]]
name = "Shiiba"
priority = 1
""")
    setup.targets.write_text(f"""
[[target]]
tenant = "Nobeoka"
directory = "restore/nobeoka"

[[target]]
tenant = "Hyuga"
directory = "restore/hyuga"

[[target]]
tenant = "Saiki"
pg_restore = "{PG} dbname={setup.pg_target}"

[[target]]
tenant = "Kadogawa"
directory = "restore/kadogawa"

[[target]]
tenant = "Shiiba"
directory = "restore/shiiba"
""")
