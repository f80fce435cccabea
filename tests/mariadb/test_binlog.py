"""binlog-receive: every complete binlog sealed into the spool, the current one never; a
restart resumes from the last complete file; wal-ship ships them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drsync.repo import Repository
from drsync.repo.keys import KeyFile, Secret
from drsync.repo.wal import open_wal, wal_key
from drsync.sources.mariadb.binlog import next_binlog, summarize_binlog
from drsync.store import LocalStore
from drsync.testing_mariadb import MariadbServer
from tests.mariadb.tenant import MariadbTenant, poll


@pytest.fixture
def tenant(mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> Iterator[MariadbTenant]:
    made = MariadbTenant(mariadb, drsync_bin, tmp_path)
    yield made
    made.kill_receiver()


def _open(tenant: MariadbTenant) -> Repository:
    return Repository.open(LocalStore(tenant.repo), Secret(key_file=KeyFile.load(tenant.key)))


def test_complete_binlogs_are_sealed_byte_for_byte_and_the_current_one_never(
        tenant: MariadbTenant) -> None:
    server = tenant.server
    server.sql("CREATE DATABASE town; CREATE TABLE town.t (id INT PRIMARY KEY) ENGINE=InnoDB")
    first = server.query("SHOW BINARY LOGS").splitlines()[0].split("\t")[0]
    tenant.start_receiver()
    server.sql("INSERT INTO t SELECT seq FROM seq_1_to_100; FLUSH BINARY LOGS", "town")
    poll("the first binlog spooled", lambda: first in tenant.spooled())
    current = tenant.current_binlog()
    server.sql("INSERT INTO t SELECT seq FROM seq_101_to_200", "town")
    assert current not in tenant.spooled()
    result = tenant.stop_receiver()
    assert result["started_from"] == first and current not in tenant.spooled()

    # Restarted, it resumes with the file it had not sealed, and seals it once rotated.
    tenant.start_receiver()
    server.sql("FLUSH BINARY LOGS")
    poll("the resumed binlog spooled", lambda: current in tenant.spooled())
    result = tenant.stop_receiver()
    assert result["started_from"] == current and result["spooled"] >= 1

    repo = _open(tenant)
    for name in tenant.spooled():
        _head, plain = open_wal(repo.key, (tenant.spool / name).read_bytes(), name)
        assert plain == (server.data / name).read_bytes()  # the server's own file
        assert summarize_binlog(plain).complete
    assert tenant.current_binlog() not in tenant.spooled()
    assert next_binlog(current) == tenant.current_binlog()

    shipped = tenant.drsync_json("wal-ship")
    assert shipped["shipped"] == len({first, current}) and tenant.spooled() == []
    stored = repo.store.get(wal_key(current))
    assert open_wal(repo.key, stored, current)[1] == (server.data / current).read_bytes()


def test_rotate_every_seals_changes_without_waiting_for_the_server(
        tenant: MariadbTenant) -> None:
    server = tenant.server
    before = tenant.current_binlog()
    tenant.start_receiver("--rotate-every", "1")
    server.sql("CREATE DATABASE town")
    poll("the binlog holding the change sealed", lambda: before in tenant.spooled())
    tenant.stop_receiver()


def test_a_receiver_that_cannot_connect_says_so_in_one_line(tenant: MariadbTenant) -> None:
    done = tenant.drsync("binlog-receive", "mariadb://root:nope@127.0.0.1:1/", check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 15 and len(lines) == 1 and "127.0.0.1" in lines[0], lines
    assert "nope" not in done.stderr


def test_a_server_restart_stops_the_receiver_and_the_next_one_seals_what_it_missed(
        tenant: MariadbTenant) -> None:
    server = tenant.server
    server.sql("CREATE DATABASE town; CREATE TABLE town.t (id INT) ENGINE=InnoDB")
    before = tenant.current_binlog()
    tenant.start_receiver()
    receiver = tenant._receiver
    assert receiver is not None
    time.sleep(1)
    server.sql("INSERT INTO town.t VALUES (1)")
    server.stop()  # the binlog ends with STOP; the receiver loses its server
    out, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 15 and "mariadb-binlog stopped" in err, (out, err)
    tenant._receiver = None
    server.start()
    server.sql("INSERT INTO town.t VALUES (2)")
    tenant.start_receiver()
    poll("the binlog the server closed at shutdown sealed", lambda: before in tenant.spooled())
    tenant.stop_receiver()
    repo = _open(tenant)
    plain = open_wal(repo.key, (tenant.spool / before).read_bytes(), before)[1]
    assert summarize_binlog(plain).ends_with == "stop"


def test_a_restart_after_the_server_purged_its_point_names_the_gap_and_start_file_resumes(
        tenant: MariadbTenant) -> None:
    """A receiver down longer than the server kept its binlogs: the restart ended with
    mariadb-binlog's "Could not find first log file name in binary log index file", and
    --start-file was silently ignored (the staging's record won), so the only way out was
    moving files by hand. Found by an edge hunt."""
    server = tenant.server
    server.sql("CREATE DATABASE town; CREATE TABLE town.t (id INT) ENGINE=InnoDB")
    tenant.start_receiver()
    server.sql("INSERT INTO town.t VALUES (1); FLUSH BINARY LOGS")
    sealed_first = tenant.current_binlog()
    poll("a binlog sealed", tenant.spooled)
    tenant.stop_receiver()
    stopped_at = tenant.current_binlog()  # where the next run resumes
    server.sql("INSERT INTO town.t VALUES (2); FLUSH BINARY LOGS; FLUSH BINARY LOGS")
    oldest = tenant.current_binlog()

    def purged() -> bool:  # refused while a replica (the receiver just stopped) reads it
        server.sql(f"PURGE BINARY LOGS TO '{oldest}'", check=False)
        return server.query("SHOW BINARY LOGS").split("\t")[0] == oldest

    poll("the server purged the binlogs before the current one", purged, timeout=60)
    # A receiver that did not see the purge runs until stopped: bounded here.
    done = subprocess.run([tenant.exe, "binlog-receive", server.dsn], env=tenant.env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 15 and len(lines) == 1, done.stderr
    assert (f"no longer has binlog {stopped_at}, where the last run stopped (its oldest is "
            f"{oldest})") in lines[0] and f"--start-file {oldest}" in lines[0]
    assert sealed_first != oldest
    tenant.start_receiver("--start-file", oldest)
    server.sql("INSERT INTO town.t VALUES (3); FLUSH BINARY LOGS")
    poll("the binlog after the gap sealed", lambda: oldest in tenant.spooled())
    tenant.stop_receiver()
    staging = tenant.spool / ".binlog-receive"
    assert [p.name for p in staging.iterdir() if p.name.startswith("set-aside-")]
