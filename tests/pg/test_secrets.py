"""A password in a DSN (quoted, URI, or PGPASSWORD) reaches PostgreSQL's programs through
their environment only: never their argv, drsync's stderr, the snapshot's spec, the catalog.

The throwaway cluster asks ``clerk`` for a SCRAM password on its socket, so every backup and
restore below succeeds only if the password really reached pg_dump, pg_basebackup, psql,
pg_restore and pg_receivewal. Those run through shims (DRSYNC_PG_BINDIR) that record their
argv and their PGPASSWORD, then exec the real program.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from drsync.repo.crypto import MasterKey
from drsync.testing_postgres import Cluster
from drsync.wal.receive import receive_wal
from drsync.wal.spool import Spool

TOOLS = ("psql", "pg_dump", "pg_dumpall", "pg_basebackup", "pg_restore", "pg_receivewal")
SHIM = """#!/bin/sh
log="{log}/$(basename "$0").$$"
printf '%s\\0' "$0" "$@" > "$log.argv"
printf '%s' "${{PGPASSWORD-}}" > "$log.env"
exec {real}/$(basename "$0") "$@"
"""


def _require_password(cluster: Cluster, role: str, password: str) -> None:
    cluster.psql(f"CREATE ROLE {role} LOGIN SUPERUSER REPLICATION PASSWORD "
                 + "'" + password.replace("'", "''") + "'")
    (cluster.data / "pg_hba.conf").write_text(
        f"local all {role} scram-sha-256\nlocal replication {role} scram-sha-256\n"
        "local all all trust\nlocal replication all trust\n")
    cluster.psql("SELECT pg_reload_conf()")


def _shims(tmp_path: Path, pg_bindir: str) -> tuple[Path, Path]:
    shims, log = tmp_path / "shims", tmp_path / "shim-log"
    shims.mkdir()
    log.mkdir()
    for name in TOOLS:
        path = shims / name
        path.write_text(SHIM.format(log=log, real=pg_bindir))
        path.chmod(0o755)
    return shims, log


def _drsync(exe: str, env: dict[str, str], *args: str, ok: bool = True
            ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _spawned(log: Path) -> dict[str, list[tuple[list[str], str]]]:
    """Per tool, every run's (argv, PGPASSWORD)."""
    runs: dict[str, list[tuple[list[str], str]]] = {}
    for argv_file in sorted(log.glob("*.argv")):
        argv = argv_file.read_bytes().decode().split("\0")[:-1]
        env = argv_file.with_suffix(".env").read_text()
        runs.setdefault(argv_file.name.split(".")[0], []).append((argv, env))
    return runs


def _files_holding(root: Path, marker: bytes, skip: Path) -> list[str]:
    return [str(p) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents and marker in p.read_bytes()]


def test_dsn_passwords_reach_the_tools_only_through_their_environment(
        cluster: Cluster, pg_bindir: str, drsync_bin: str, tmp_path: Path) -> None:
    marker = "mk" + secrets.token_hex(6)
    password = f"p w'{marker}\\"  # a space, a quote and a backslash: quoting must be right
    _require_password(cluster, "clerk", password)
    cluster.psql("CREATE DATABASE registry OWNER clerk")
    cluster.psql("CREATE TABLE resident (id int PRIMARY KEY, name text); INSERT INTO resident "
                 "SELECT g, 'resident ' || g FROM generate_series(1, 200) g", dbname="registry")
    shims, log = _shims(tmp_path, pg_bindir)
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite"), "DRSYNC_PG_BINDIR": str(shims)}
    env.pop("PGPASSWORD", None)
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    kv = f"host={cluster.base} port={cluster.port} user=clerk dbname=registry password={quoted}"
    uri = (f"postgresql://clerk:{quote(password, safe='')}@/registry"
           f"?host={quote(str(cluster.base), safe='')}&port={cluster.port}")

    outputs = [_drsync(drsync_bin, env, "init")]
    outputs.append(_drsync(drsync_bin, env, "backup", "--pg-dump", kv, "--pg-dumpall-globals"))
    outputs.append(_drsync(drsync_bin, env, "backup", "--pg-base", uri))  # direct: psql
    outputs.append(_drsync(drsync_bin, env, "backup", "--pg-base", uri, "--pg-base-method",
                           "stream"))
    bare = kv.replace(f" password={quoted}", "")  # the password in drsync's environment
    outputs.append(_drsync(drsync_bin, {**env, "PGPASSWORD": password}, "backup", "--pg-dump",
                           bare))
    snaps = json.loads(_drsync(drsync_bin, env, "snapshots", "--json").stdout)
    assert [s["source"]["kind"] for s in snaps] == ["pg_dump", "pg_base", "pg_base", "pg_dump"]
    assert [s["source"]["spec"]["method"] for s in snaps[1:3]] == ["direct", "stream"]
    restore_dsn = kv.replace("dbname=registry", "dbname=copy")
    outputs.append(_drsync(drsync_bin, env, "restore", snaps[0]["id"], "--pg-restore",
                           restore_dsn))
    assert cluster.psql("SELECT count(*) FROM resident", dbname="copy") == "200"
    # A connection that fails: the message names the server, with the password masked.
    wrong = kv.replace(f"password={quoted}", f"password='{marker}-wrong'")
    failed = _drsync(drsync_bin, env, "backup", "--pg-dump", wrong, ok=False)
    assert failed.returncode == 15
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "password=***" in lines[0], lines
    assert "password authentication failed" in lines[0]
    outputs.append(failed)
    outputs.append(_drsync(drsync_bin, env, "runs", "--json"))  # journal into the catalog

    for done in outputs:
        assert marker not in done.stderr and marker not in done.stdout
    specs = [s["source"]["spec"] for s in snaps]
    assert marker not in json.dumps(snaps)
    assert sorted(s["dsn"] for s in specs) == sorted([
        kv.replace(f"password={quoted}", "password=***"),
        uri.replace(quote(password, safe=""), "***"),
        uri.replace(quote(password, safe=""), "***"), bare])
    assert (tmp_path / "catalog.sqlite").exists()
    assert _files_holding(tmp_path, marker.encode(), skip=log) == []

    runs = _spawned(log)
    assert {"psql", "pg_dump", "pg_dumpall", "pg_basebackup", "pg_restore"} <= set(runs)
    for tool, calls in runs.items():
        for argv, pgpassword in calls:
            assert not any(marker in arg for arg in argv), (tool, argv)
            assert pgpassword in (password, f"{marker}-wrong"), (tool, pgpassword)


def test_wal_receive_passes_the_password_in_the_environment(
        cluster: Cluster, pg_bindir: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "mk" + secrets.token_hex(6)
    _require_password(cluster, "clerk", marker)
    shims, log = _shims(tmp_path, pg_bindir)
    monkeypatch.setenv("DRSYNC_PG_BINDIR", str(shims))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    dsn = (f"postgresql://clerk:{marker}@/postgres?host={quote(str(cluster.base), safe='')}"
           f"&port={cluster.port}")
    from drsync.sources.postgres.tools import PgTools

    stops = iter([False, False, True])
    result: Any = receive_wal(dsn, Spool(tmp_path / "spool"), MasterKey.generate(),
                              slot="secret_test", stop=lambda: next(stops), poll_s=0.2,
                              tools=PgTools(str(shims)))
    assert result.slot == "secret_test"
    assert cluster.psql("SELECT count(*) FROM pg_replication_slots "
                        "WHERE slot_name = 'secret_test'") == "1"
    calls = _spawned(log)["pg_receivewal"]
    assert len(calls) == 2  # --create-slot, then the stream
    for argv, pgpassword in calls:
        assert marker not in " ".join(argv) and pgpassword == marker
