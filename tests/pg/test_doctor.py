"""`doctor` against a running throwaway server whose settings the test changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drsync.testing_postgres import Cluster


def test_doctor_reads_a_real_servers_settings(cluster: Cluster, drsync_bin: str) -> None:
    """doctor against a running server: compressed WAL and a 10 s archive_timeout are each
    named with the cost, and fixing them (reload) turns both to ok."""
    cluster.psql("ALTER SYSTEM SET wal_compression = 'zstd'")
    cluster.psql("ALTER SYSTEM SET archive_timeout = '10s'")
    cluster.psql("SELECT pg_reload_conf()")

    def doctor() -> tuple[int, dict[str, Any]]:
        done = subprocess.run([drsync_bin, "doctor", "--pg", cluster.dsn, "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, {f["setting"]: f for f in json.loads(done.stdout)}

    code, found = doctor()
    assert code == 1
    assert found["wal_compression"]["value"] == "zstd" and not found["wal_compression"]["ok"]
    assert "14-61% more bytes" in found["wal_compression"]["advice"]
    assert found["archive_timeout"]["value"] == "10s" and not found["archive_timeout"]["ok"]
    assert "8640 a day" in found["archive_timeout"]["advice"]
    assert found["full_page_writes"]["ok"]

    cluster.psql("ALTER SYSTEM SET wal_compression = 'off'")
    cluster.psql("ALTER SYSTEM SET archive_timeout = '5min'")
    cluster.psql("SELECT pg_reload_conf()")
    _, found = doctor()
    assert found["wal_compression"]["ok"] and found["archive_timeout"]["ok"]


def _archiving_cluster(pg_bindir: str, archive_command: str) -> Cluster:
    from drsync.testing_postgres import make_cluster_dir

    c = Cluster(make_cluster_dir(), pg_bindir)
    c.initdb({"archive_mode": "on", "archive_command": f"'{archive_command}'"})
    c.start()
    return c


def _fail_once(c: Cluster) -> str:
    """Write, switch segments, and wait until the archiver has failed on that segment."""
    import time

    c.psql("CREATE TABLE t AS SELECT 1 AS x")
    segment = c.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while c.psql("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver") != segment:
        assert time.monotonic() < deadline, c.log.read_text()[-2000:]
        time.sleep(0.2)
    return segment


def _doctor(drsync_bin: str, c: Cluster) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([drsync_bin, "doctor", "--pg", c.dsn, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {f["setting"]: f for f in json.loads(done.stdout)}


def test_doctor_reports_an_archive_command_that_fails(pg_bindir: str, pg_drsync: str,
                                                      drsync_bin: str, tmp_path: Path) -> None:
    """drsync wal-push as archive_command, but with a config file that is not there: the
    setting looks right, pg_stat_archiver says every attempt fails, and doctor says so,
    naming the segment and the time."""
    c = _archiving_cluster(pg_bindir, f"{pg_drsync} wal-push --config {tmp_path}/gone.toml %p")
    try:
        segment = _fail_once(c)
        failed_at = c.psql("SELECT last_failed_time FROM pg_stat_archiver")
        code, found = _doctor(drsync_bin, c)
    finally:
        c.stop("immediate")
        shutil.rmtree(c.base, ignore_errors=True)
    assert code == 1
    assert found["archive_command"]["ok"]  # it does name drsync wal-push
    archiver = found["archiver"]
    assert not archiver["ok"] and "archive_command is failing" in archiver["advice"]
    assert f"last failed {segment} at {failed_at}" in archiver["value"]
    assert found["archive_command executable"]["ok"]  # the server's user can run that one


def test_doctor_reports_a_drsync_the_server_user_cannot_execute(
        pg_bindir: str, drsync_bin: str, tmp_path: Path) -> None:
    """archive_command names a drsync in a directory only root may enter (as a venv in
    root's home would be): doctor names the file, the user, and why."""
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    exe = hidden / "drsync"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    c = _archiving_cluster(pg_bindir, f"{exe} wal-push %p")
    try:
        if os.geteuid() != 0:
            pytest.skip("needs root: the cluster must run as another user than this test")
        import time

        c.psql("CREATE TABLE t AS SELECT 1 AS x")
        c.psql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while "Permission denied" not in c.log.read_text():
            assert time.monotonic() < deadline, c.log.read_text()[-2000:]
            time.sleep(0.2)
        code, found = _doctor(drsync_bin, c)
    finally:
        c.stop("immediate")
        shutil.rmtree(c.base, ignore_errors=True)
    # Exit 126 from the shell is fatal to the archiver process, which restarts before
    # pg_stat_archiver counts the failure: only this check sees it.
    assert code == 1
    executable = found["archive_command executable"]
    assert executable["value"] == str(exe) and not executable["ok"]
    assert "the server's user postgres cannot run it" in executable["advice"]
    blocked = executable["advice"].split("no search permission on ", 1)[1].split(" (")[0]
    assert exe.is_relative_to(blocked)  # the first directory on the way postgres may not enter
