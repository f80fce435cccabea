"""SIGKILL at several points of a backup: the repository stays consistent, the next
backup succeeds, and what it restores is byte-identical."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drsync.repo import RepoConfig
from drsync.testing import make_repository

MiB = 1 << 20


def _count(repo: Path, prefix: str) -> int:
    base = repo / prefix
    return sum(1 for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")) \
        if base.exists() else 0


def _feed_until(proc: subprocess.Popen[bytes], data: bytes,
                condition: Callable[[], bool]) -> None:
    """Write stdin slowly until ``condition`` holds, so the kill lands where we want."""
    assert proc.stdin is not None
    for offset in range(0, len(data), 256 * 1024):
        if condition():
            return
        proc.stdin.write(data[offset : offset + 256 * 1024])
        proc.stdin.flush()
        time.sleep(0.02)
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_at_several_points_then_check_backup_restore(drsync_bin: str,
                                                             tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    env = {**os.environ, "DRSYNC_REPO": str(repo), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}

    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([drsync_bin, *args], input=stdin, env=env, capture_output=True,
                              timeout=300)

    make_repository(str(repo), "pw", config=RepoConfig(chunk_avg=64 << 10, chunk_min=64 << 10,
                                                       pack_size=1 << 20))
    # Large enough that every kill point is reached while input is still flowing: the
    # feeder can run ahead of what is stored by at most the pipe, the in-flight window
    # and the upload queue (a few MiB).
    data = os.urandom(40 * MiB)
    points: list[tuple[str, Callable[[], bool]]] = [
        ("after the lock, before any pack", lambda: (repo / "lock").exists()),
        ("after two packs, before an index", lambda: _count(repo, "data") >= 2),
        ("after the first index", lambda: _count(repo, "index") >= 1),
        ("after ten packs", lambda: _count(repo, "data") >= 10),
        ("with all input packed, while finishing", lambda: _count(repo, "data") >= 20),
    ]
    for name, condition in points:
        proc = subprocess.Popen([drsync_bin, "backup", "--stdin-name", "dump.bin"],
                                stdin=subprocess.PIPE, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        _feed_until(proc, data, condition)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, f"the backup ended before the kill {name}"
        checked = run("check", "--read-data")
        assert checked.returncode == 0, (name, checked.stdout.decode())
        assert b"error:" not in checked.stdout, name

    assert _count(repo, "snapshots") == 0  # no half snapshot ever appeared
    # A killed run's lock is stale (its pid is gone): the next backup takes over.
    done = run("backup", "--stdin-name", "dump.bin", "--json", stdin=data)
    assert done.returncode == 0, done.stderr.decode()
    restored = run("restore", "latest", "--stdout")
    assert restored.returncode == 0 and restored.stdout == data
    final = run("check", "--read-data")
    assert final.returncode == 0 and b"error:" not in final.stdout
    # Packs stored by the killed runs were adopted and reused, not uploaded again.
    stored = sum(p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file())
    assert stored < 1.5 * len(data)
