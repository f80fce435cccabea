"""Prune killed (SIGKILL) at each phase boundary: the repository stays consistent,
every kept snapshot restores byte-identical, and the next prune finishes the job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drsync.repo import Repository, Secret
from drsync.repo.check import check_repository
from drsync.repo.forget import forget
from drsync.repo.prune import prune
from drsync.repo.retention import RetentionPolicy
from drsync.repo.wal import seal_wal, wal_key
from drsync.store import open_store
from drsync.testing import backup_bytes, make_repo
from tests.repo.test_prune import KiB, _pg_base, restored, three_nights

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "test passphrase"
WAL = [f"0000000100000000000000{n:02X}" for n in range(1, 9)]


def open_repo(path: Path) -> Repository:
    return Repository.open(open_store(str(path)), Secret(passphrase=PASSPHRASE))


def data_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "data").rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], int]:
    """A forgotten-but-not-pruned repository, what its snapshots hold, and the data size
    an uninterrupted prune leaves."""
    base = tmp_path_factory.mktemp("prune") / "repo"
    repo = make_repo(open_store(str(base)), PASSPHRASE, chunk_avg=1 * KiB, chunk_min=256,
                     chunk_max=4 * KiB, pack_size=1 << 20)
    three_nights(repo)
    stream = backup_bytes(repo, os.urandom(20 * KiB), name="pg")
    repo.store.delete(f"snapshots/{stream.id}")
    _pg_base(repo, "2026-11-01T03:00:00.000000Z", 2, stream.tree)
    _pg_base(repo, "2026-11-02T03:00:00.000000Z", 5, stream.tree)
    for name in WAL:
        repo.store.put(wal_key(name), seal_wal(repo.key, name, os.urandom(64)))
    # One of each group goes: night 1 and 2 of the stream, the first base backup.
    forget(repo, RetentionPolicy(keep_last=1))
    expected = restored(repo)
    reference = base.parent / "reference"
    shutil.copytree(base, reference)
    prune(open_repo(reference), max_unused=0.0)
    return base, expected, data_bytes(reference)


@pytest.mark.parametrize(("op", "prefix"), [
    ("put", "lock"),      # before anything: only the lock is left behind
    ("put", "data/"),     # repacking: a new pack no index names yet
    ("put", "index/"),    # the new index is being written
    ("delete", "data/"),  # deleting the dead and repacked packs
    ("delete", "index/"),  # deleting the superseded index files
    ("delete", "wal/"),   # expiring WAL
])
def test_a_prune_killed_at_each_phase_leaves_a_consistent_repository(
        prepared: tuple[Path, dict[str, bytes], int], tmp_path: Path, op: str,
        prefix: str) -> None:
    base, expected, reference_size = prepared
    path = tmp_path / "repo"
    shutil.copytree(base, path)
    done = subprocess.run([sys.executable, "-m", "tests.repo.prune_driver", str(path),
                           PASSPHRASE, op, prefix, "1"], cwd=ROOT, capture_output=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr.decode()  # killed where asked, not before
    assert (path / "lock").exists()
    repo = open_repo(path)
    report = check_repository(repo, read_data=True)
    assert report.errors == []
    assert restored(repo) == expected
    # The next prune takes over the dead one's lock and finishes the job in one run.
    prune(repo, max_unused=0.0)
    assert check_repository(repo, read_data=True).errors == []
    assert restored(repo) == expected
    left = prune(repo, max_unused=0.0, dry_run=True)
    assert left.bytes_unused == 0 and left.packs_deleted == 0 and left.wal_expired == []
    assert sorted(p.name for p in (path / "wal").iterdir()) == WAL[4:]
    assert data_bytes(path) <= reference_size * 1.02  # nothing stored twice
