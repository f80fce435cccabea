"""Commands import only what they use: a local-store backup or restore never loads the
S3 client, the catalog's ORM, the report renderers or the plotting library (each is
megabytes of resident memory and tens of milliseconds of start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drsync.testing import make_repository

HEAVY = ("boto3", "botocore", "sqlalchemy", "rich", "matplotlib", "apscheduler")
RUNNER = """
import json, sys
from drsync.entry import main
try:
    main()
finally:
    loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r}))
    open({mark!r}, "w").write(json.dumps(loaded))
"""


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    make_repository(str(tmp_path / "repo"), None, tmp_path / "tenant.key")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_bytes(b"resident register\n" * 5000)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")},
            "DRSYNC_REPO": str(tmp_path / "repo"),
            "DRSYNC_KEY_FILE": str(tmp_path / "tenant.key"),
            "XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


def _loaded(tmp_path: Path, env: dict[str, str], *argv: str) -> tuple[list[str], str]:
    mark = tmp_path / "loaded.json"
    done = subprocess.run([sys.executable, "-c", RUNNER.format(heavy=HEAVY, mark=str(mark)),
                           *argv], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(mark.read_text()), done.stdout


def test_a_local_backup_and_restore_import_no_heavy_library(tmp_path: Path,
                                                           repo: dict[str, str]) -> None:
    loaded, out = _loaded(tmp_path, repo, "backup", str(tmp_path / "data"), "--json")
    assert loaded == []
    snapshot = json.loads(out)["snapshot_id"]
    loaded, _out = _loaded(tmp_path, repo, "restore", snapshot, "--target",
                           str(tmp_path / "out"), "--json")
    assert loaded == []
    assert any(p.name == "a.txt" for p in (tmp_path / "out").rglob("*"))


def test_help_imports_no_heavy_library(tmp_path: Path, repo: dict[str, str]) -> None:
    """--help imports every command's module for its one-line help: none may pull a
    renderer or a client in at import time."""
    loaded, out = _loaded(tmp_path, repo, "--help")
    assert loaded == []
    assert "backup" in out and "plan" in out
