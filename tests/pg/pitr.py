"""Restoring to a moment between two commits, shared by the PITR tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drsync.testing_postgres import Cluster, free_port


def stamped_inserts(tenant: Any, n: int) -> list[tuple[int, str]]:
    """n rows, each committed alone; returns (id, commit timestamp) from the server."""
    for i in range(n):
        tenant.cluster.psql(f"INSERT INTO stamped (note) VALUES ('row {i}')")
    rows = tenant.cluster.psql(
        "SELECT id, pg_xact_commit_timestamp(xmin) FROM stamped ORDER BY id")
    return [(int(a), b) for a, b in (line.split("|") for line in rows.splitlines())]


def restore_between(tenant: Any, base_id: str, rows: list[tuple[int, str]], k: int,
                    scratch_dir: Path, *, global_args: tuple[str, ...] = (),
                    env: dict[str, str] | None = None) -> tuple[list[int], Cluster]:
    """Restore ``base_id`` to half-way between the commits of rows k and k+1 and start it.

    ``global_args`` go before ``restore`` (e.g. ``--config FILE``), ``env`` over the
    tenant's environment. Returns the ids that must be there (committed at or before
    the target) and the running restored cluster.
    """
    target = tenant.cluster.psql(
        f"SELECT (timestamptz '{rows[k][1]}' + (timestamptz '{rows[k + 1][1]}' - "
        f"timestamptz '{rows[k][1]}') / 2)::text")
    expected = [rid for rid, ts in rows if ts <= target]
    assert 0 < len(expected) < len(rows)
    port = free_port()
    done = tenant.drsync_json(
        *global_args, "restore", base_id, "--pgdata", str(scratch_dir / "data"),
        "--target-time", target, "--start", "--pg-option", f"port={port}",
        "--pg-option", f"unix_socket_directories={scratch_dir}", env=env)
    assert done["started"] is True
    return expected, Cluster(scratch_dir, tenant.bindir, port)


def restored_ids(cluster: Cluster) -> list[int]:
    return [int(x) for x in cluster.psql("SELECT id FROM stamped ORDER BY id").split()]
