"""Shared fixtures: an isolated environment for every test, throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# moto reads this when it is first imported, by whichever test module imports it first
# (tests/agent is collected before tests/store): small multipart parts keep the S3 tests
# fast, and the store tests rely on parts below S3's 5 MiB minimum.
os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(64 * 1024))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DRSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield
    from drsync.testing import stop_leftover_processes

    stop_leftover_processes(str(tmp_path))  # resident pushers, wal-fetch prefetchers


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real HTTP endpoint: moto's threaded server on loopback, one per test process
    (tests make buckets of their own), stopped at the end."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def drsync_bin() -> str:
    path = shutil.which("drsync")
    if path is None:
        venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "drsync"
        path = str(venv)
    return path


def _postgres_missing(reason: str) -> None:
    """Under CI a missing PostgreSQL is a failure; on a laptop, a skip that names it."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL 15 is required in CI: {reason}")
    pytest.skip(f"needs PostgreSQL 15 server binaries (initdb, pg_ctl, pg_basebackup): {reason}")


@pytest.fixture(scope="session")
def pg_bindir() -> str:
    from drsync.testing_postgres import find_pg_bindir, running_as_root

    bindir = find_pg_bindir()
    if bindir is None:
        _postgres_missing("no initdb in $DRSYNC_PG_BINDIR, /usr/lib/postgresql/*/bin or PATH")
    if running_as_root() and shutil.which("runuser") is None:
        _postgres_missing("running as root and runuser is missing")
    assert bindir is not None
    return bindir


@pytest.fixture(scope="session")
def pg_drsync(pg_bindir: str) -> str:
    """A drsync executable the cluster's user (postgres) can run, for archive_command."""
    from drsync.testing_postgres import postgres_runnable_drsync

    return postgres_runnable_drsync()


@pytest.fixture
def tenant_factory(pg_bindir: str, pg_drsync: str) -> Iterator[Any]:
    from drsync.testing_postgres import ArchivingTenant

    made: list[Any] = []

    def make(settings: dict[str, str] | None = None, **kw: Any) -> Any:
        made.append(ArchivingTenant(pg_bindir, pg_drsync, settings, **kw))
        return made[-1]

    yield make
    for tenant in made:
        tenant.close()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A postgres-owned directory for a second (restored) cluster."""
    from drsync.testing_postgres import make_cluster_dir

    path = make_cluster_dir("drpgr-")
    yield path
    pid = path / "data" / "postmaster.pid"
    if pid.exists():
        from drsync.testing_postgres import as_cluster_user, find_pg_bindir

        subprocess.run(as_cluster_user([f"{find_pg_bindir()}/pg_ctl", "-D", str(path / "data"),
                                        "-m", "immediate", "stop"]), capture_output=True)
    from drsync.testing import stop_leftover_processes

    stop_leftover_processes(str(path))  # restore_command's prefetcher, in the data directory
    shutil.rmtree(path, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leave nothing running: a wal-push or wal-fetch helper that a test's own cleanup
    missed is stopped here, and named, so the miss is fixed rather than left to idle."""
    from drsync.testing import stop_leftover_processes
    from drsync.testing_postgres import CLUSTER_DIRS

    factory = getattr(session.config, "_tmp_path_factory", None)
    # This session's throwaway clusters only: another test run on the machine (CI, a
    # developer's second shell) has helpers under /tmp/drpg* too, and they are its own.
    markers = [str(path) for path in CLUSTER_DIRS]  # mkdtemp names: none prefixes another
    if factory is not None:
        markers.append(str(factory.getbasetemp()))
    for marker in markers:
        left = stop_leftover_processes(marker)
        if left:
            print(f"\nstopped {len(left)} drsync helper(s) left running under {marker}: "
                  f"pids {left}")
