"""drill.md: a drill that passes, one that fails on a damaged pack, and the heal it describes."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

from drsync.testing import make_repository
from tests.runbooks.conftest import operator_env, run_book


def test_drill_runbook_passes_fails_on_a_damaged_pack_and_heals(
        drsync_bin: str, tmp_path: Path) -> None:
    repo = tmp_path / "dc2" / "hyuga"
    make_repository(str(repo), key_file_path=tmp_path / "hyuga.key")
    config = tmp_path / "tenant.toml"
    config.write_text(f'repo = "{repo}"\nkey_file = "{tmp_path / "hyuga.key"}"\n'
                      f'tenant = "Hyuga"\ncatalog = "{tmp_path / "catalog.sqlite"}"\n')
    db = tmp_path / "registry.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO resident (name) VALUES (?)",
                         [(f"住民 {i}",) for i in range(4000)])
    conn.close()
    env = operator_env(drsync_bin, TENANT_CONFIG=str(config),
                       SCRATCH_DIR=str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()

    def backup() -> None:
        done = subprocess.run([drsync_bin, "--config", str(config), "backup", "--sqlite",
                               str(db)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    backup()
    passed = run_book("drill.md", env, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok: sqlite integrity_check: ok" in passed.stdout
    assert "ok: table counts: " in passed.stdout and "4000 rows" in passed.stdout
    assert "drill of Hyuga: ok, snapshot " in passed.stdout
    assert re.search(r"recorded: drill \w{8} ok", passed.stdout)
    assert list((tmp_path / "scratch").iterdir()) == []

    [pack] = [p for p in (repo / "data").rglob("*") if p.is_file()]
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    failed = run_book("drill.md", env, tmp_path)
    assert failed.returncode == 13, failed.stdout + failed.stderr
    name = f"data/{pack.parent.name}/{pack.name}"
    [line] = [x for x in failed.stdout.splitlines() if x.startswith("FAILED: restore: ")]
    assert name in line and "authentication failed" in line
    assert "drill FAILED: this tenant is NOT proven restorable" in failed.stdout
    assert "error: " in failed.stdout and name in failed.stdout.split("drill exit 13", 1)[1]
    assert "recorded: " not in failed.stdout  # it stops before claiming success

    # The heal step 3 describes (damaged-pack.md): the damaged pack repaired out of the
    # store, a backup, the drill again.
    repaired = subprocess.run([drsync_bin, "--config", str(config), "repair", "packs",
                               name, "--save-to", str(tmp_path / "quarantine")],
                              env=env, capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stderr
    assert not pack.exists() and (tmp_path / "quarantine" / pack.name).exists()
    backup()
    healed = run_book("drill.md", env, tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert re.search(r"recorded: drill \w{8} ok", healed.stdout)
