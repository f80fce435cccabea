"""`doctor` against a running throwaway server whose settings the test changes."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from drsync.testing_postgres import Cluster


def test_doctor_reads_a_real_servers_settings(cluster: Cluster, drsync_bin: str) -> None:
    """doctor against a running server: compressed WAL and a 10 s archive_timeout are each
    named with the cost, and fixing them (reload) turns both to ok."""
    cluster.psql("ALTER SYSTEM SET wal_compression = 'zstd'")
    cluster.psql("ALTER SYSTEM SET archive_timeout = '10s'")
    cluster.psql("SELECT pg_reload_conf()")

    def doctor() -> tuple[int, dict[str, Any]]:
        done = subprocess.run([drsync_bin, "doctor", "--pg", cluster.dsn, "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, {f["setting"]: f for f in json.loads(done.stdout)}

    code, found = doctor()
    assert code == 1
    assert found["wal_compression"]["value"] == "zstd" and not found["wal_compression"]["ok"]
    assert "14-61% more bytes" in found["wal_compression"]["advice"]
    assert found["archive_timeout"]["value"] == "10s" and not found["archive_timeout"]["ok"]
    assert "8640 a day" in found["archive_timeout"]["advice"]
    assert found["full_page_writes"]["ok"]

    cluster.psql("ALTER SYSTEM SET wal_compression = 'off'")
    cluster.psql("ALTER SYSTEM SET archive_timeout = '5min'")
    cluster.psql("SELECT pg_reload_conf()")
    _, found = doctor()
    assert found["wal_compression"]["ok"] and found["archive_timeout"]["ok"]
