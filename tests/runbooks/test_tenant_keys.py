"""add-a-tenant.md and lost-key.md: a repository's keys from its creation to a lost key file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from drsync.testing import make_repository
from tests.runbooks.conftest import operator_env, run_book

FLEET = """
[window]
start = "23:00"
minutes = 180

[[link]]
name = "lgwan"
mbit_per_s = 20

[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300

[[tenant]]
name = "Nobeoka"
priority = 1
rto_hours = 4
repo = "repos/nobeoka"
key_file = "keys/nobeoka.key"
"""


def _registry(path: Path, residents: int) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO resident (name) VALUES (?)",
                         [(f"住民 {i}",) for i in range(residents)])
    conn.close()
    return path


def _rows(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, name FROM resident ORDER BY id").fetchall()
    conn.close()
    return rows


def test_add_a_tenant_runbook(drsync_bin: str, tmp_path: Path) -> None:
    site = tmp_path / "dc2"
    (site / "keys").mkdir(parents=True)
    make_repository(str(site / "repos" / "nobeoka"), key_file_path=site / "keys" / "nobeoka.key")
    env = operator_env(drsync_bin, DRSYNC_CATALOG=str(tmp_path / "catalog.sqlite"))
    nobeoka = subprocess.run([drsync_bin, "--repo", str(site / "repos" / "nobeoka"),
                              "--key-file", str(site / "keys" / "nobeoka.key"), "backup",
                              "--stdin-name", "x"], input="x", env=env, capture_output=True,
                             text=True)
    assert nobeoka.returncode == 0, nobeoka.stderr
    (site / "fleet.toml").write_text(FLEET)
    made = subprocess.run([drsync_bin, "key", "gen-escrow", "--out", str(tmp_path / "operator")],
                          env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    db = _registry(tmp_path / "kitaura.db", 3000)
    # The site's config (an S3 site's [s3] section; here a [store] one) reaches tenant.toml.
    (site / "site.toml").write_text("[store]\nconnections = 2\n")
    env.update(DRSYNC_CONFIG=str(site / "site.toml"))
    env.update(TENANT="Kitaura", TENANT_REPO=str(site / "repos" / "kitaura"),
               TENANT_DIR=str(tmp_path / "etc-drsync-kitaura"),
               ESCROW_PUB=str(tmp_path / "operator" / "escrow.pub"),
               FLEET=str(site / "fleet.toml"), SOURCE_DB=str(db))
    work = tmp_path / "work"
    work.mkdir()
    done = run_book("add-a-tenant.md", env, work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Kitaura: scheduled, ends " in done.stdout
    assert "Kitaura: restorable, snapshot " in done.stdout and "RTO 8 h met" in done.stdout
    keys = json.loads(subprocess.run(
        [drsync_bin, "--config", str(tmp_path / "etc-drsync-kitaura" / "tenant.toml"),
         "key", "list", "--json"], env=env, capture_output=True, text=True).stdout)["keys"]
    assert sorted(k["kind"] for k in keys) == ["escrow", "keyfile", "passphrase"]
    assert (tmp_path / "etc-drsync-kitaura" / "tenant.key").stat().st_mode & 0o077 == 0
    tenant_toml = (tmp_path / "etc-drsync-kitaura" / "tenant.toml").read_text()
    assert "[store]\nconnections = 2" in tenant_toml
    schedule = json.loads((work / "schedule.json").read_text())
    assert set(schedule["tenants"]) == {"Nobeoka", "Kitaura"}
    # The escrow key really opens it: the operators' way in if every key is lost.
    recovered = subprocess.run(
        [drsync_bin, "--repo", str(site / "repos" / "kitaura"), "key", "recover",
         "--escrow-key", str(tmp_path / "operator" / "escrow.key"),
         "--new-key-file", str(tmp_path / "spare.key")], env=env, capture_output=True, text=True)
    assert recovered.returncode == 0, recovered.stderr
    restored = tmp_path / "restored"
    back = subprocess.run([drsync_bin, "--repo", str(site / "repos" / "kitaura"), "--key-file",
                           str(tmp_path / "spare.key"), "restore", "latest", "--target",
                           str(restored)], env=env, capture_output=True, text=True)
    assert back.returncode == 0, back.stderr
    [copy] = list(restored.rglob("kitaura.db"))
    assert _rows(copy) == _rows(db)


def test_lost_key_runbook(drsync_bin: str, tmp_path: Path) -> None:
    repo, key = tmp_path / "dc2" / "nobeoka", tmp_path / "nobeoka.key"
    make_repository(str(repo), "forgotten passphrase", key)
    env = operator_env(drsync_bin, DRSYNC_CATALOG=str(tmp_path / "catalog.sqlite"),
                       DRSYNC_REPO=str(repo))

    def drsync(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([drsync_bin, *args], env={**env, **extra}, capture_output=True,
                              text=True, timeout=120)

    assert drsync("key", "gen-escrow", "--out", str(tmp_path / "operator")).returncode == 0
    assert drsync("--key-file", str(key), "key", "escrow", "--pubkey",
                  str(tmp_path / "operator" / "escrow.pub")).returncode == 0
    data = tmp_path / "exports"
    data.mkdir()
    for night in range(2):
        (data / f"night-{night}.csv").write_bytes(bytes(range(256)) * 4000 + bytes([night]))
        backed = drsync("--key-file", str(key), "backup", str(data))
        assert backed.returncode == 0, backed.stderr
    leaked = tmp_path / "leaked.key"
    leaked.write_bytes(key.read_bytes())
    key.unlink()  # lost with the town hall's host; a copy may be in someone's hands
    (tmp_path / "new.pass").write_text("a new passphrase for the envelope\n")
    env.update(ESCROW_KEY=str(tmp_path / "operator" / "escrow.key"),
               NEW_KEY_FILE=str(tmp_path / "nobeoka-2.key"),
               NEW_PASSWORD_FILE=str(tmp_path / "new.pass"))
    done = run_book("lost-key.md", env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "master key generation 0 -> 1" in done.stdout
    assert done.stdout.count(", generation 1") == 3 and "(in use)" in done.stdout
    # The lost key file and the old passphrase open nothing any more.
    old = drsync("--key-file", str(leaked), "snapshots")
    assert old.returncode == 11, old.stdout + old.stderr
    assert drsync("snapshots", DRSYNC_PASSWORD="forgotten passphrase").returncode == 11
    assert drsync("snapshots", DRSYNC_PASSWORD="a new passphrase for the envelope").returncode == 0
    # Every byte is still there for the new key.
    out = tmp_path / "restored"
    back = drsync("--key-file", str(tmp_path / "nobeoka-2.key"), "restore", "latest",
                  "--target", str(out))
    assert back.returncode == 0, back.stderr
    restored = {p.name: p.read_bytes() for p in out.rglob("*.csv")}
    assert restored == {p.name: p.read_bytes() for p in data.iterdir()}
    # ... and the escrow key, re-wrapped under the new generation, still opens it.
    again = drsync("key", "recover", "--escrow-key", str(tmp_path / "operator" / "escrow.key"),
                   "--new-key-file", str(tmp_path / "spare.key"))
    assert again.returncode == 0, again.stderr
