"""doctor --mariadb: binlog settings and grants, judged against the shipping interval."""

from __future__ import annotations

import json
import subprocess

from drsync.sources.mariadb.doctor import global_privileges, judge_mariadb
from drsync.testing_mariadb import MariadbServer

GOOD = {"log_bin": "ON", "binlog_format": "ROW", "server_id": "1", "binlog_row_image": "FULL",
        "expire_logs_days": "0", "binlog_expire_logs_seconds": "0",
        "max_binlog_size": str(64 << 20)}


def _bad(values: dict[str, str], privileges: set[str], interval: float = 86400) -> list[str]:
    return [f.setting for f in judge_mariadb(values, privileges, interval) if not f.ok]


def test_judge_names_each_setting_to_change() -> None:
    assert _bad(GOOD, {"ALL PRIVILEGES"}) == []
    assert _bad({**GOOD, "binlog_format": "MIXED", "log_bin": "OFF"}, {"ALL PRIVILEGES"}) == [
        "log_bin", "binlog_format"]
    assert _bad({**GOOD, "server_id": "0", "binlog_row_image": "MINIMAL"},
                {"ALL PRIVILEGES"}) == ["server_id", "binlog_row_image"]
    # Expiry against the interval: one day kept, shipped nightly, is too short.
    day = {**GOOD, "binlog_expire_logs_seconds": "86400"}
    assert _bad(day, {"ALL PRIVILEGES"}) == ["binlog_expire_logs_seconds"]
    assert _bad(day, {"ALL PRIVILEGES"}, interval=3600) == []
    assert _bad({**GOOD, "expire_logs_days": "1"}, {"ALL PRIVILEGES"}) == [
        "binlog_expire_logs_seconds"]
    assert _bad({**GOOD, "max_binlog_size": str(1 << 30)}, {"ALL PRIVILEGES"}) == [
        "max_binlog_size"]
    grants = global_privileges([
        "GRANT SELECT, RELOAD, LOCK TABLES, REPLICATION SLAVE, BINLOG MONITOR, SHOW VIEW, "
        "EVENT, TRIGGER ON *.* TO `backup`@`%` IDENTIFIED BY PASSWORD '*ABC'",
        "GRANT ALL PRIVILEGES ON `other`.* TO `backup`@`%`"])
    assert _bad(GOOD, grants) == []
    (finding,) = [f for f in judge_mariadb(GOOD, grants - {"REPLICATION SLAVE"}, 86400)
                  if not f.ok]
    assert finding.setting == "grants" and "REPLICATION SLAVE" in finding.advice


def test_doctor_checks_a_live_server(mariadb: MariadbServer, drsync_bin: str) -> None:
    done = subprocess.run([drsync_bin, "doctor", "--mariadb", mariadb.dsn, "--json"],
                          capture_output=True, text=True, timeout=60)
    findings = {f["setting"]: f for f in json.loads(done.stdout)}
    # The throwaway server keeps MariaDB's 1G max_binlog_size: the one thing to change.
    assert done.returncode == 1 and [s for s, f in findings.items() if not f["ok"]] == [
        "max_binlog_size"]
    assert findings["log_bin"]["ok"] and findings["grants"]["ok"]
    mariadb.sql("CREATE USER 'reader'@'127.0.0.1'; GRANT SELECT ON *.* TO 'reader'@'127.0.0.1'")
    done = subprocess.run([drsync_bin, "doctor", "--mariadb",
                           f"mariadb://reader@127.0.0.1:{mariadb.port}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "FIX  grants = SELECT: GRANT REPLICATION SLAVE, REPLICATION CLIENT" in done.stdout
    done = subprocess.run([drsync_bin, "doctor"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--pg DSN or --mariadb DSN" in done.stderr
