"""Files root writes into another user's repository or catalog directory are that user's."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (as CI runs): root writing into "
                    "another user's repository")
def test_a_restore_run_as_root_leaves_the_owners_repository_and_catalog_usable(
        drsync_bin: str) -> None:
    """A restore run as root (the PITR runbook's way) in the postgres user's repository
    left root-owned 0600 run records and journal files: the user's next base backup
    failed (exit 14) and `runs` crashed with a traceback. Found by an edge hunt."""
    owner = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="drsync-owner-", dir="/tmp"))
    try:
        repo, state = base / "repo", base / "state"
        for d in (repo, state):
            d.mkdir()
            os.chown(d, owner.pw_uid, owner.pw_gid)
        env = {**os.environ, "DRSYNC_REPO": str(repo), "DRSYNC_PASSWORD": "pw",
               "DRSYNC_CATALOG": str(state / "catalog.sqlite")}
        for args in (["init"], ["backup", "--stdin-name", "x"], ["runs"],
                     ["restore", "latest", "--target", str(base / "out")]):
            done = subprocess.run([drsync_bin, *args], input=b"rows\n", env=env,
                                  capture_output=True, timeout=120)
            assert done.returncode == 0, done.stderr
        made = [p for d in (repo, state) for p in (d, *d.rglob("*"))]
        assert len(made) > 10
        assert [p for p in made if p.stat().st_uid != owner.pw_uid] == []
    finally:
        shutil.rmtree(base)
