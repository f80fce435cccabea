"""restore --mariadb-restore: a dump into a server under another name, created if missing;
a non-empty database refused unless --clean; a --databases dump of one loaded under any
name."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

from drsync.sources.mariadb.restore import without_database_switch
from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer

CHECKSUM = "CHECKSUM TABLE {db}.resident, {db}.fee"
SCHEMA = """
CREATE DATABASE registry; USE registry;
CREATE TABLE resident (id INT PRIMARY KEY, name VARCHAR(100), photo BLOB) ENGINE=InnoDB;
CREATE TABLE fee (id INT AUTO_INCREMENT PRIMARY KEY, resident INT, amount DECIMAL(10,2))
  ENGINE=InnoDB;
CREATE TRIGGER fee_positive BEFORE INSERT ON fee FOR EACH ROW SET NEW.amount = ABS(NEW.amount);
CREATE FUNCTION total(r INT) RETURNS DECIMAL(12,2) READS SQL DATA
  RETURN (SELECT COALESCE(SUM(amount), 0) FROM fee WHERE resident = r);
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM fee WHERE amount = 0;
INSERT INTO resident SELECT seq, CONCAT('住民 ', seq), UNHEX(REPEAT('00FF', seq % 50))
  FROM seq_1_to_3000;
INSERT INTO fee (resident, amount) SELECT seq % 3000 + 1, -(seq * 1.25) FROM seq_1_to_5000;
"""


def _checksums(server: MariadbServer, db: str) -> list[str]:
    return [line.split("\t")[1] for line in
            server.query(CHECKSUM.format(db=db)).splitlines()]


def test_dump_restores_under_another_name_with_routines_triggers_and_events(
        mariadb_factory: object, drsync_bin: str, tmp_path: Path) -> None:
    source = mariadb_factory()  # type: ignore[operator]
    elsewhere = mariadb_factory()  # type: ignore[operator]
    source.sql(SCHEMA)
    make_repository(str(tmp_path / "repo"), "pw")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}

    def drsync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([drsync_bin, *args], env=env, capture_output=True, text=True,
                              timeout=300)

    done = drsync("backup", "--mariadb-dump", source.dsn_for("registry"), "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)["snapshot_id"]

    done = drsync("restore", snap, "--mariadb-restore", elsewhere.dsn_for("copy"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["created"] == ["copy"] and result["replayed"] == []
    assert _checksums(elsewhere, "copy") == _checksums(source, "registry")
    assert elsewhere.query("SELECT copy.total(7)") == source.query("SELECT registry.total(7)")
    assert elsewhere.query("SELECT COUNT(*) FROM information_schema.triggers WHERE "
                           "trigger_schema = 'copy'") == "1"
    assert elsewhere.query("SELECT event_name FROM information_schema.events") == "nightly"

    # Not empty now: refused in one line, nothing touched; --clean drops and reloads it.
    elsewhere.sql("INSERT INTO copy.resident (id, name) VALUES (99999, 'extra')")
    done = drsync("restore", snap, "--mariadb-restore", elsewhere.dsn_for("copy"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "'copy' already exists" in lines[0]
    assert elsewhere.query("SELECT COUNT(*) FROM copy.resident") == "3001"
    done = drsync("restore", snap, "--mariadb-restore", elsewhere.dsn_for("copy"), "--clean")
    assert done.returncode == 0, done.stderr
    assert _checksums(elsewhere, "copy") == _checksums(source, "registry")

    # Only a mariadb_dump snapshot, and a target the archive cannot reach, are refused
    # before anything is loaded.
    done = drsync("restore", snap, "--mariadb-restore", elsewhere.dsn_for("other"),
                  "--target-time", "2000-01-01 00:00:00+00:00")
    assert done.returncode == 2 and "is before the dump" in done.stderr
    done = drsync("restore", snap, "--mariadb-restore", elsewhere.dsn_for("other"),
                  "--target-time", "2999-01-01 00:00:00+00:00")
    assert done.returncode == 2 and "not archived yet" in done.stderr
    assert elsewhere.query("SHOW DATABASES LIKE 'other'") == ""


def test_a_dump_of_every_database_restores_into_a_server(
        mariadb_factory: object, drsync_bin: str, tmp_path: Path) -> None:
    source = mariadb_factory()  # type: ignore[operator]
    elsewhere = mariadb_factory()  # type: ignore[operator]
    source.sql("CREATE DATABASE a; CREATE DATABASE b; CREATE TABLE a.t (id INT) ENGINE=InnoDB;"
               "CREATE TABLE b.u (id INT) ENGINE=InnoDB; INSERT INTO b.u VALUES (1), (2)")
    make_repository(str(tmp_path / "repo"), "pw")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    done = subprocess.run([drsync_bin, "backup", "--mariadb-dump", source.dsn, "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)["snapshot_id"]
    done = subprocess.run([drsync_bin, "restore", snap, "--mariadb-restore",
                           elsewhere.dsn_for("a")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "holds every database: give the server without a " \
        "database" in done.stderr, done.stderr
    done = subprocess.run([drsync_bin, "restore", snap, "--mariadb-restore", elsewhere.dsn,
                           "--target", "latest", "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scope"] == "all"
    assert elsewhere.query("SELECT COUNT(*) FROM b.u") == "2"
    assert elsewhere.query("SHOW TABLES FROM a") == "t"


def test_a_databases_dump_of_one_loses_only_its_create_and_use_lines_however_cut() -> None:
    """Scope ``databases`` with one name (a ``--databases`` dump): its CREATE DATABASE and
    USE lines go, so it loads into the database mariadb is given; nothing else changes."""
    lines = [b"-- MariaDB dump 10.19\n", b"-- Current Database: `registry`\n",
             b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `registry` /*!40100 DEFAULT "
             b"CHARACTER SET utf8mb4 */;\n", b"\n", b"USE `registry`;\n",
             b"INSERT INTO `t` VALUES ('\\nUSE `registry`;\\n'),('" + b"x" * 9000 + b"');\n",
             b"USE `registry2`;\n", b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `other` ;\n",
             b"  USE `registry`;\n", b"USE `registry`;\n", b"-- Dump completed"]
    script = b"".join(lines)
    kept = b"".join(line for i, line in enumerate(lines) if i not in (2, 4, 9))
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(script)), rng.randint(1, 40)))
        blocks = [script[a:b] for a, b in zip([0, *cuts], [*cuts, len(script)], strict=True)]
        assert b"".join(without_database_switch(blocks, "registry")) == kept
    assert b"".join(without_database_switch([script], "other")) == script.replace(lines[7], b"")
    # mid-line after a long line cut short: "USE `registry`;" there is data, not a switch
    tail = b"INSERT INTO `t` VALUES ('" + b"y" * 5000
    blocks = [tail, b"\nUSE `registry`;\n"[1:], b"x');\n"]
    assert b"".join(without_database_switch(blocks, "registry")) == b"".join(blocks)
