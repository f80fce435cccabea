"""wal-fetch with another repository's key file says so, as `snapshots` does, through both
front doors (drsync.entry's click-free path and the click command), and still exits 126:
fatal for PostgreSQL's restore_command, so recovery stops instead of ending early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drsync.testing import make_repository

SEG = "000000010000000000000003"


@pytest.mark.parametrize("module", ["drsync.entry", "drsync.cli"])
def test_wal_fetch_with_a_wrong_key_file_names_it_and_the_repository(
        module: str, tmp_path: Path, drsync_bin: str) -> None:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "right.key")
    make_repository(str(tmp_path / "other"), "pw", tmp_path / "wrong.key")
    global_opts = ["--repo", str(tmp_path / "repo"), "--key-file", str(tmp_path / "wrong.key")]
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")}
    done = subprocess.run([sys.executable, "-c", f"from {module} import main; main()",
                           *global_opts, "wal-fetch", SEG, str(pg_wal / "RECOVERYXLOG")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 126
    assert done.stderr == (f"drsync: error: wrong key file ({tmp_path / 'wrong.key'}) for "
                           f"repository {tmp_path / 'repo'}\n")
    assert not (pg_wal / "RECOVERYXLOG").exists()
    # The same words as every other command opening the repository with that key file.
    snapshots = subprocess.run([drsync_bin, *global_opts, "snapshots"], env=env,
                               capture_output=True, text=True, timeout=120)
    assert snapshots.returncode == 11
    assert snapshots.stderr.strip().endswith(done.stderr.strip().removeprefix("drsync: "))


def test_wal_fetch_from_no_repository_says_so(tmp_path: Path) -> None:
    make_repository(str(tmp_path / "other"), "pw", tmp_path / "k.key")
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "drsync", "--repo", str(tmp_path / "empty"),
                           "--key-file", str(tmp_path / "k.key"), "wal-fetch", SEG,
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 126
    assert done.stderr == f"drsync: error: no repository at {tmp_path / 'empty'}\n"
