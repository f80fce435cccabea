"""Throwaway PostgreSQL tenants: a cluster archiving into drsync, run as postgres."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import (
    PG_USER,
    Cluster,
    as_cluster_user,
    chown_to_cluster_user,
    make_cluster_dir,
)


class Tenant:
    """A cluster whose archive_command is drsync wal-push, and a repository for it.

    Every drsync command runs as the cluster's user with the postgres-runnable
    launcher, as the agent would on a tenant host.
    """

    def __init__(self, bindir: str, exe: str, settings: dict[str, str] | None = None) -> None:
        self.base = make_cluster_dir()
        self.exe = exe
        self.bindir = bindir
        self.cluster = Cluster(self.base, bindir)
        self.repo = self.base / "repo"
        self.key = self.base / "tenant.key"
        self.spool = self.base / "spool"
        self.config = self.base / "agent.toml"
        self.config.write_text(f'repo = "{self.repo}"\nkey_file = "{self.key}"\n'
                               f'catalog = "{self.base / "catalog.sqlite"}"\n'
                               f'[wal]\nspool = "{self.spool}"\n')
        chown_to_cluster_user(self.base)
        self.env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(self.base),
                    "XDG_STATE_HOME": str(self.base / "state"), "DRSYNC_INSECURE_TEST_KDF": "1",
                    "DRSYNC_CONFIG": str(self.config), "LANG": "C.UTF-8"}
        self.drsync("init", "--new-key-file", str(self.key), env={"DRSYNC_PASSWORD": "pw"})
        self.cluster.initdb({
            "archive_mode": "on",
            "archive_command": f"'{exe} wal-push --config {self.config} %p'",
            "track_commit_timestamp": "on",
            **(settings or {}),
        })
        self.cluster.start()

    def drsync(self, *args: str, env: dict[str, str] | None = None, ok: bool = True,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        cmd = as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()), self.exe, *args])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.base, env={"PATH": os.environ["PATH"]})
        if ok:
            assert done.returncode == 0, f"drsync {' '.join(args)}: {done.stderr}"
        return done

    def drsync_json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.drsync(*args, "--json", **kw).stdout)

    def pgbench(self, *args: str) -> None:
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, *args, "postgres")

    def switch_and_ship(self) -> str:
        """Close the current WAL segment, wait until it is archived, ship the spool."""
        segment = self.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        self.cluster.wait_archived(segment)
        self.drsync("wal-ship")
        return segment

    def close(self) -> None:
        self.cluster.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def tenant_factory(pg_bindir: str, pg_drsync: str) -> Iterator[Any]:
    made: list[Tenant] = []

    def make(settings: dict[str, str] | None = None) -> Tenant:
        made.append(Tenant(pg_bindir, pg_drsync, settings))
        return made[-1]

    yield make
    for tenant in made:
        tenant.close()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A postgres-owned directory for a second (restored) cluster."""
    path = make_cluster_dir("drpgr-")
    yield path
    pid = path / "data" / "postmaster.pid"
    if pid.exists():
        from drsync.testing_postgres import find_pg_bindir

        subprocess.run(as_cluster_user([f"{find_pg_bindir()}/pg_ctl", "-D", str(path / "data"),
                                        "-m", "immediate", "stop"]), capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
