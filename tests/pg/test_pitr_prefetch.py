"""Point-in-time recovery through the prefetch queue: the right rows, served from the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drsync.wal.prefetch import stop_prefetcher
from drsync.wal.queue import QUEUE_DIR
from tests.pg.pitr import restore_between, restored_ids

pytestmark = pytest.mark.slow


def test_pitr_over_a_dozen_segments_with_prefetch_replays_to_the_target(
        tenant_factory: Any, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "1", "-q")
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    segments = set()
    for i in range(12):  # one row, then a segment switch: twelve more archived segments
        tenant.cluster.psql(f"INSERT INTO stamped (note) VALUES ('row {i}')")
        segments.add(tenant.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    tenant.switch_and_ship()
    assert len(segments) == 12
    rows = [(int(a), b) for a, b in (line.split("|") for line in tenant.cluster.psql(
        "SELECT id, pg_xact_commit_timestamp(xmin) FROM stamped ORDER BY id").splitlines())]
    config = tenant.base / "prefetch.toml"
    config.write_text(tenant.config.read_text() + "[restore]\nwal_prefetch = 4\n")
    config.chmod(0o644)
    try:
        expected, restored = restore_between(tenant, base["snapshot_id"], rows, 9, scratch_dir,
                                             global_args=("--config", str(config)))
        assert restored_ids(restored) == expected == [r for r, _ in rows[:10]]
        log = (scratch_dir / "data" / "drsync-restore.log").read_text()
        hits = log.count("from the prefetch queue")
        assert hits >= 8, log[-3000:]
        # Only verified segments were ever queued; nothing but segments is served from it.
        assert ".history: from the prefetch queue" not in log
        restored.stop()
    finally:
        stop_prefetcher(scratch_dir / "data" / "pg_wal" / QUEUE_DIR)
    assert not (scratch_dir / "data" / "pg_wal" / QUEUE_DIR).exists()
