"""`check` over the WAL a real cluster archived through wal-push and wal-ship."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_check_authenticates_archived_wal_and_reports_a_gap(tenant_factory: Any) -> None:
    tenant = tenant_factory()
    tenant.cluster.psql("CREATE TABLE registry (id int)")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    segments = []
    for i in range(3):
        tenant.cluster.psql(f"INSERT INTO registry SELECT generate_series(1, {1000 * (i + 1)})")
        segments.append(tenant.switch_and_ship())
    assert tenant.drsync("check", "--read-data").returncode == 0
    wal_dir = tenant.repo / "wal"

    # A flipped byte in one archived segment: named, exit 13.
    damaged = wal_dir / segments[1]
    original = damaged.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    damaged.write_bytes(bytes(flipped))
    assert tenant.drsync("check").returncode == 0  # structure alone reads no WAL content
    done = tenant.drsync("check", "--read-data", ok=False)
    assert done.returncode == 13
    assert f"error: object wal/{segments[1]}: authentication failed" in done.stdout
    damaged.write_bytes(original)

    # A middle segment deleted: a gap after the base backup, naming the segment.
    damaged.unlink()
    done = tenant.drsync("check", ok=False)
    assert done.returncode == 13
    gap = [line for line in done.stdout.splitlines() if "gap in the WAL chain" in line]
    assert len(gap) == 1, done.stdout
    assert gap[0].startswith(f"error: base backup {base['snapshot_id'][:8]} (")
    assert f"gap in the WAL chain: {segments[1]} is missing" in gap[0]
    assert gap[0].endswith(f"recovery stops at {segments[0]}")
