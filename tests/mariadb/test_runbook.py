"""runbooks/restore-mariadb-pitr.md, every command as written, on a tenant whose host is lost:
rows committed after the target are absent, every row before it is there."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drsync.testing_mariadb import MariadbServer
from tests.mariadb.tenant import MariadbTenant, poll

pytestmark = pytest.mark.slow
RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "restore-mariadb-pitr.md"


def test_restore_mariadb_pitr_runbook(mariadb_factory: Callable[[], MariadbServer],
                                      drsync_bin: str, tmp_path: Path) -> None:
    server = mariadb_factory()
    tenant = MariadbTenant(server, drsync_bin, tmp_path)
    server.sql("CREATE DATABASE registry; CREATE TABLE registry.stamped "
               "(id INT PRIMARY KEY) ENGINE=InnoDB")
    tenant.start_receiver("--rotate-every", "1")
    try:
        tenant.drsync("backup", "--mariadb-dump", server.dsn_for("registry"))
        server.sql("INSERT INTO stamped SELECT seq FROM seq_1_to_6", "registry")
        moment = math.ceil(time.time() + 0.01)
        while time.time() < moment + 1.1:
            time.sleep(0.05)
        server.sql("INSERT INTO stamped SELECT seq FROM seq_7_to_12", "registry")
        last = tenant.current_binlog()
        poll("the last rows sealed", lambda: last in tenant.spooled())
        tenant.stop_receiver()
    finally:
        tenant.kill_receiver()
    tenant.drsync("wal-ship")
    server.stop()

    elsewhere = mariadb_factory()
    options = tmp_path / "new-host.cnf"
    options.write_text(f"[client]\nuser=root\nhost=127.0.0.1\nport={elsewhere.port}\n")
    options.chmod(0o600)
    bindir = str(Path(drsync_bin).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "DRSYNC_REPO": str(tenant.repo), "DRSYNC_KEY_FILE": str(tenant.key),
           "DRSYNC_CATALOG": str(tmp_path / "new-catalog.sqlite"),
           "TARGET_TIME": datetime.fromtimestamp(moment, UTC).isoformat(sep=" "),
           "MARIADB_OPTIONS": str(options), "DATABASE": "registry"}
    workdir = tmp_path / "incident"
    workdir.mkdir()
    script = "set -euo pipefail\n" + "\n".join(
        re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(), flags=re.S))
    done = subprocess.run(["bash", "-c", script], env=env, cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tables: 1" in done.stdout
    assert elsewhere.query("SELECT COUNT(*), MAX(id) FROM registry.stamped") == "6\t6"
