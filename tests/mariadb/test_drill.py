"""Drills of mariadb_dump snapshots: loaded into a scratch database on the dumped server,
rows counted against the dump's own counts, dropped; a damaged pack named."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer

SCHEMA = """
CREATE DATABASE registry; USE registry;
CREATE TABLE resident (id INT PRIMARY KEY, name VARCHAR(100)) ENGINE=InnoDB;
CREATE TABLE fee (id INT AUTO_INCREMENT PRIMARY KEY, amount DECIMAL(10,2)) ENGINE=InnoDB;
CREATE TABLE empty_one (x INT) ENGINE=InnoDB;
INSERT INTO resident SELECT seq, CONCAT('住民 ', seq) FROM seq_1_to_2500;
INSERT INTO fee (amount) SELECT seq * 1.5 FROM seq_1_to_700;
"""


def _databases(server: MariadbServer) -> list[str]:
    return sorted(server.query("SHOW DATABASES").split())


def test_a_mariadb_dump_drill_counts_rows_in_a_scratch_database_and_drops_it(
        mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> None:
    mariadb.sql(SCHEMA)
    make_repository(str(tmp_path / "repo"), "pw")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}

    def drsync(*args: str, code: int = 0) -> Any:
        done = subprocess.run([drsync_bin, *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == code, done.stderr
        return json.loads(done.stdout)

    drsync("backup", "--mariadb-dump", mariadb.dsn_for("registry"))
    before = _databases(mariadb)
    doc = drsync("drill")
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["status"] == "ok", doc
    assert checks["restore"]["detail"].startswith("into scratch database drsync_drill_")
    assert checks["table counts"]["detail"] == "3 tables, 3200 rows as recorded"
    assert _databases(mariadb) == before  # the scratch database is gone
    assert mariadb.query("SELECT COUNT(*) FROM registry.resident") == "2500"

    # A changed table after the backup does not matter: the drill reads the backup.
    mariadb.sql("DELETE FROM registry.fee WHERE id < 100")
    assert drsync("drill")["status"] == "ok"

    # A damaged pack: named, and the half-made scratch database dropped all the same.
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            data[len(data) // 2] ^= 0x01
            pack.write_bytes(bytes(data))
    doc = drsync("drill", code=13)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert failed and failed[0]["name"] == "restore" and "data/" in failed[0]["detail"], failed
    assert _databases(mariadb) == before
