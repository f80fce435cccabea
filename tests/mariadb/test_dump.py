"""mariadb-dump streamed into the repository, with the binlog position it is consistent at."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from drsync.repo import SnapshotReader
from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
            "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}


def _drsync(exe: str, env: dict[str, str], *args: str) -> tuple[Any, str]:
    done = subprocess.run([exe, *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_dump_records_the_binlog_position_counts_and_warns_of_myisam(
        mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> None:
    mariadb.sql("CREATE DATABASE registry; USE registry; "
                "CREATE TABLE resident (id INT PRIMARY KEY, name TEXT, photo BLOB) ENGINE=InnoDB;"
                "INSERT INTO resident SELECT seq, CONCAT('住民 ', seq), UNHEX('00FF10') "
                "FROM seq_1_to_1500; CREATE TABLE legacy (id INT) ENGINE=MyISAM; "
                "INSERT INTO legacy VALUES (1), (2); CREATE DATABASE other")
    file, position = mariadb.query("SHOW MASTER STATUS").split("\t")[:2]
    repo = make_repository(str(tmp_path / "repo"), "pw")
    env = _env(tmp_path)
    result, stderr = _drsync(drsync_bin, env, "backup", "--mariadb-dump",
                             mariadb.dsn_for("registry"))
    assert "registry.legacy: MyISAM table is not transactional" in stderr
    (snap,) = repo.snapshots()
    spec = snap.source_spec
    assert snap.source_kind == "mariadb_dump" and result["snapshot_id"] == snap.id
    assert (spec["binlog_file"], spec["binlog_position"]) == (file, int(position))
    assert spec["scope"] == "database" and spec["databases"] == ["registry"]
    assert spec["non_transactional"] == ["registry.legacy"]
    assert {t: c["rows"] for t, c in spec["tables"].items()} == {
        "registry.legacy": 2, "registry.resident": 1500}
    # The checksum is the documented one (drsync.sources.mariadb.checksum), written out here.
    assert spec["tables"]["registry.resident"]["checksum"] == int(mariadb.query(
        "SET time_zone = '+00:00'; SELECT SUM(CAST(CONV(LEFT(MD5(CONCAT("
        "IFNULL(CONCAT(LENGTH(id), ':', CAST(id AS BINARY)), 'N'), IFNULL(MD5(name), 'N'), "
        "IFNULL(MD5(photo), 'N'))), 15), 16, 10) AS UNSIGNED)) FROM registry.resident"))
    assert spec["consistent_at"].endswith("Z") and spec["server_version"].startswith("10.")
    # The stream is mariadb-dump's output, byte for byte the script (no CREATE DATABASE:
    # one database loads under any name).
    reader = SnapshotReader(repo)
    (entry,) = reader.entries(snap)
    script = b"".join(reader.blobs(entry.chunks))
    assert entry.path == "database.sql" and b"-- Dump completed" in script
    assert b"CREATE DATABASE" not in script and b"0x00FF10" in script


def test_password_reaches_the_programs_through_a_private_file(
        mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> None:
    mariadb.sql("CREATE DATABASE a; CREATE DATABASE b; CREATE TABLE a.t (id INT) ENGINE=InnoDB;"
                "CREATE TABLE b.t (id INT) ENGINE=InnoDB; INSERT INTO b.t VALUES (7);"
                "CREATE USER 'nightly'@'127.0.0.1' IDENTIFIED BY 's3cr#t\"pw';"
                "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, "
                "REPLICATION CLIENT ON *.* TO 'nightly'@'127.0.0.1'")
    make_repository(str(tmp_path / "repo"), "pw")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**_env(tmp_path), "TMPDIR": str(private_tmp)}
    options = tmp_path / "backup.cnf"
    options.write_text(f"[client]\nuser=nightly\npassword=\"s3cr#t\\\"pw\"\nhost=127.0.0.1\n"
                       f"port={mariadb.port}\n")
    options.chmod(0o600)
    _drsync(drsync_bin, env, "backup", "--mariadb-dump", "mariadb://", "--defaults-file",
            str(options), "--mariadb-database", "a", "--mariadb-database", "b")
    snaps, _ = _drsync(drsync_bin, env, "snapshots")
    spec = snaps[-1]["source"]["spec"]
    assert spec["scope"] == "databases" and spec["databases"] == ["a", "b"]
    assert spec["tables"] == {"a.t": {"rows": 0, "checksum": 0},
                              "b.t": {"rows": 1, "checksum": int(
                                  hashlib.md5(b"1:7").hexdigest()[:15], 16)}}
    # A password in the URL works too, and is never recorded.
    url = f"mariadb://nightly:s3cr%23t%22pw@127.0.0.1:{mariadb.port}/b"
    _drsync(drsync_bin, env, "backup", "--mariadb-dump", url)
    snaps, _ = _drsync(drsync_bin, env, "snapshots")
    assert "s3cr" not in json.dumps(snaps) and snaps[-1]["source"]["spec"]["databases"] == ["b"]
    assert list(private_tmp.iterdir()) == []  # the private option files are gone


def test_a_wrong_password_or_a_bad_dsn_is_one_line(mariadb: MariadbServer, drsync_bin: str,
                                                   tmp_path: Path) -> None:
    make_repository(str(tmp_path / "repo"), "pw")
    env = _env(tmp_path)
    for dsn, code, words in ((f"mariadb://root:wrong@127.0.0.1:{mariadb.port}/x", 15,
                              "Access denied"),
                             ("postgres://root@127.0.0.1/x", 2, "must be a URL like"),
                             (f"mariadb://root@127.0.0.1:{mariadb.port}/nowhere", 15,
                              "nowhere")):
        done = subprocess.run([drsync_bin, "backup", "--mariadb-dump", dsn], env=env,
                              capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == code and len(lines) == 1 and words in lines[0], lines
        assert "wrong" not in done.stderr


def test_counts_are_the_dumps_even_when_written_to_while_it_streams(
        mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> None:
    """The counts are taken in a snapshot started beside the dump's: a commit once both
    are reading changes neither, so the counts are recorded, and they are the dump's."""
    import time

    mariadb.sql("CREATE DATABASE busy; USE busy; CREATE TABLE t (id INT PRIMARY KEY) "
                "ENGINE=InnoDB; INSERT INTO t SELECT seq FROM seq_1_to_100; "
                "CREATE TABLE filler (id INT PRIMARY KEY, note TEXT) ENGINE=InnoDB; "
                "INSERT INTO filler SELECT seq, REPEAT(MD5(seq), 20) FROM seq_1_to_300000")
    repo = make_repository(str(tmp_path / "repo"), "pw")
    backup = subprocess.Popen([drsync_bin, "backup", "--mariadb-dump", mariadb.dsn_for("busy"),
                               "--json"], env=_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    reading = ""
    while time.monotonic() < deadline and backup.poll() is None:
        running = mariadb.query("SELECT info FROM information_schema.processlist WHERE "
                                "info LIKE '%filler%' AND info NOT LIKE '%processlist%'")
        if "SQL_NO_CACHE" in running and "MD5(CONCAT" in running:
            reading = running  # both the dump and the count are reading the filler
            break
        time.sleep(0.01)
    assert reading, "the dump and its count were never seen reading together"
    mariadb.sql("INSERT INTO busy.t VALUES (101)")
    out, err = backup.communicate(timeout=300)
    assert backup.returncode == 0, err
    snap_id = json.loads(out)["snapshot_id"]
    spec = next(s for s in repo.snapshots() if s.id == snap_id).source_spec
    assert spec["tables"]["busy.t"]["rows"] == 100  # the dump's moment, not the insert's
    assert spec["tables"]["busy.filler"]["rows"] == 300000
