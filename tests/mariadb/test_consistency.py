"""A dump taken while transfers commit is consistent, and its recorded binlog position is
exact: the dump plus the binlogs from that position reproduce the source table for table."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drsync.testing_mariadb import MariadbServer
from tests.mariadb.tenant import MariadbTenant, poll

pytestmark = pytest.mark.slow
ACCOUNTS = 200
TOTAL = ACCOUNTS * 1000


@pytest.fixture
def tenant(mariadb: MariadbServer, drsync_bin: str, tmp_path: Path) -> Iterator[MariadbTenant]:
    made = MariadbTenant(mariadb, drsync_bin, tmp_path)
    yield made
    made.kill_receiver()


def _transfers(server: MariadbServer, stop: threading.Event, done: list[int]) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        a, b, amount = rng.randrange(ACCOUNTS), rng.randrange(ACCOUNTS), rng.randint(1, 50)
        server.sql(f"START TRANSACTION; UPDATE account SET balance = balance - {amount} "
                   f"WHERE id = {a}; INSERT INTO transfer (src, dst, amount) VALUES "
                   f"({a}, {b}, {amount}); UPDATE account SET balance = balance + {amount} "
                   f"WHERE id = {b}; COMMIT", "bank")
        done[0] += 1


def test_a_dump_under_writes_is_consistent_and_rolls_forward_exactly(
        tenant: MariadbTenant, mariadb_factory: Callable[[], MariadbServer]) -> None:
    server = tenant.server
    server.sql("CREATE DATABASE bank; USE bank; CREATE TABLE account (id INT PRIMARY KEY, "
               "balance INT NOT NULL) ENGINE=InnoDB; CREATE TABLE transfer (id INT "
               "AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount INT) ENGINE=InnoDB; "
               "CREATE TABLE filler (id INT PRIMARY KEY, note TEXT) ENGINE=InnoDB; "
               f"INSERT INTO account SELECT seq, 1000 FROM seq_0_to_{ACCOUNTS - 1}; "
               "INSERT INTO filler SELECT seq, REPEAT(MD5(seq), 8) FROM seq_1_to_150000")
    tenant.start_receiver()
    stop, done = threading.Event(), [0]
    writer = threading.Thread(target=_transfers, args=(server, stop, done))
    writer.start()
    try:
        poll("transfers committing", lambda: done[0] > 20)
        dump = tenant.drsync_json("backup", "--mariadb-dump", server.dsn_for("bank"))
        poll("transfers after the dump", lambda: done[0] > 60)
    finally:
        stop.set()
        writer.join()
    server.sql("FLUSH BINARY LOGS")
    last_sealed = server.query("SHOW BINARY LOGS").splitlines()[-2].split("\t")[0]
    poll("every binlog sealed", lambda: last_sealed in tenant.spooled())
    tenant.stop_receiver()
    tenant.drsync_json("wal-ship")
    spec = tenant.drsync_json("snapshots")[-1]["source"]["spec"]
    recorded = spec["tables"]  # {} when a transfer committed between the two snapshots

    elsewhere = mariadb_factory()
    tenant.drsync_json("restore", dump["snapshot_id"], "--mariadb-restore",
                       elsewhere.dsn_for("at_dump"))
    balance, transfers = elsewhere.query(
        "SELECT SUM(balance), (SELECT COUNT(*) FROM at_dump.transfer) FROM at_dump.account"
    ).split("\t")
    assert int(balance) == TOTAL and 0 < int(transfers) < done[0]
    if recorded:  # counted in a snapshot at the dump's own binlog position: its counts
        assert recorded["bank.transfer"]["rows"] == int(transfers)
        assert recorded["bank.account"]["rows"] == ACCOUNTS

    tenant.drsync_json("restore", dump["snapshot_id"], "--mariadb-restore",
                       elsewhere.dsn_for("latest"), "--target", "latest")
    checksums = "CHECKSUM TABLE {db}.account, {db}.transfer, {db}.filler"
    assert [r.split("\t")[1] for r in elsewhere.query(
        checksums.format(db="latest")).splitlines()] == [
        r.split("\t")[1] for r in server.query(checksums.format(db="bank")).splitlines()]
    assert elsewhere.query("SELECT COUNT(*) FROM latest.transfer") == str(done[0])
