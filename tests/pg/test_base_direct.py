"""Base backups read from the data directory itself (``--pg-base-method``), end to end."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from drsync.errors import SourceError
from drsync.sources.postgres import PgTools
from drsync.sources.postgres.direct import local_data_dir
from drsync.sources.postgres.physical import base_backup_source
from drsync.testing_postgres import Cluster, free_port
from tests.pg.pitr import restore_between, restored_ids, stamped_inserts

pytestmark = pytest.mark.slow


def spec_of(tenant: Any, snapshot_id: str) -> dict[str, Any]:
    snaps = tenant.drsync_json("snapshots")
    return dict(next(s for s in snaps if s["id"] == snapshot_id)["source"]["spec"])


def test_direct_backup_leaves_out_what_pg_basebackup_does_and_replays_to_a_later_time(
        tenant_factory: Any, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "1", "-q")
    tenant.cluster.psql("CREATE UNLOGGED TABLE scratchpad AS SELECT g FROM generate_series(1, "
                        "5000) g; CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
    before = stamped_inserts(tenant, 3)
    base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    spec = spec_of(tenant, base["snapshot_id"])
    assert spec["method"] == "direct" and "method_fallback" not in spec
    assert spec["data_directory"] == str(tenant.cluster.data)
    assert spec["files_read"] > 100 and spec["files_reused"] == 0
    assert spec["start_wal"] <= spec["stop_wal"]
    rows = before + stamped_inserts(tenant, 30)[3:]
    tenant.switch_and_ship()

    # The files as restored: no server state from the running original.
    plain = scratch_dir / "plain"
    tenant.drsync_json("restore", base["snapshot_id"], "--pgdata", str(plain))
    assert not (plain / "postmaster.pid").exists()
    assert not (plain / "postmaster.opts").exists()
    assert sorted(os.listdir(plain / "pg_wal")) == ["archive_status"]
    assert os.listdir(plain / "pg_stat_tmp") == []
    label = (plain / "backup_label").read_text()
    assert f"START WAL LOCATION: {spec['start_lsn']}" in label
    unlogged = tenant.cluster.psql("SELECT pg_relation_filepath('scratchpad')")
    assert (tenant.cluster.data / unlogged).exists()
    assert not (plain / unlogged).exists() and (plain / f"{unlogged}_init").exists()

    # Point in time: the rows committed by then, none after; the unlogged table empty.
    expected, restored = restore_between(tenant, base["snapshot_id"], rows, 20, scratch_dir)
    assert restored_ids(restored) == expected and len(expected) == 21
    assert restored.psql("SELECT count(*) FROM scratchpad") == "0"
    assert restored.psql("SELECT count(*) FROM pgbench_accounts") == "100000"
    restored.stop()


def test_second_direct_backup_reuses_untouched_files_and_rereads_a_changed_one(
        tenant_factory: Any, scratch_dir: Path) -> None:
    tenant = tenant_factory()
    tenant.pgbench("-i", "-s", "2", "-q")
    tenant.cluster.psql("CHECKPOINT")
    time.sleep(2.5)  # past the reuse margin: the tables' files are older than the backup
    first = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    tenant.cluster.psql("UPDATE pgbench_accounts SET abalance = 7 WHERE aid % 1000 = 1")
    tenant.cluster.psql("CHECKPOINT")
    # The dry run the agent's night choice makes skips the same files the backup will.
    dry = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn, "--dry-run")
    second = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    assert dry["bytes_read"] == second["bytes_read"] < first["bytes_read"]
    assert dry["bytes_to_add"] > 0
    spec = spec_of(tenant, second["snapshot_id"])
    assert spec["reused_from"] == first["snapshot_id"]
    assert spec["files_reused"] > 100
    assert second["bytes_read"] < first["bytes_read"]
    again = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn, "--pg-base-reread")
    assert spec_of(tenant, again["snapshot_id"])["files_reused"] == 0
    tenant.switch_and_ship()

    port = free_port()
    done = tenant.drsync_json(
        "restore", second["snapshot_id"], "--pgdata", str(scratch_dir / "data"),
        "--target-lsn", spec["stop_lsn"], "--start", "--pg-option", f"port={port}",
        "--pg-option", f"unix_socket_directories={scratch_dir}")
    assert done["started"] is True
    restored = Cluster(scratch_dir, tenant.bindir, port)
    # The changed table was read again: its update is there; the reused ones are whole.
    assert restored.psql("SELECT count(*) FROM pgbench_accounts WHERE abalance = 7") == "200"
    assert restored.psql("SELECT count(*) FROM pgbench_accounts") == "200000"
    assert restored.psql("SELECT count(*) FROM pgbench_branches") == "2"
    restored.stop()


def test_stream_is_the_fallback_and_can_be_forced(tenant_factory: Any) -> None:
    tenant = tenant_factory()
    forced = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn,
                                "--pg-base-method", "stream")
    spec = spec_of(tenant, forced["snapshot_id"])
    assert spec["method"] == "stream" and "method_fallback" not in spec
    assert spec["start_lsn"] and spec["stop_wal"]


class _Answers(PgTools):
    """The server's answers about its data directory, as given (a remote server's)."""

    def __init__(self, bindir: str, data_directory: Path) -> None:
        super().__init__(bindir)
        self._data = data_directory

    def query(self, dsn: str, sql: str) -> list[list[str]]:
        if "data_directory" in sql:
            return [[str(self._data), "on", "0"]]
        return super().query(dsn, sql)


def test_direct_only_for_a_readable_data_directory_of_the_same_cluster(
        cluster: Cluster, pg_bindir: str, tmp_path: Path) -> None:
    tools = PgTools(pg_bindir)
    ident = tools.server_info(cluster.dsn)["system_identifier"]
    assert local_data_dir(tools, cluster.dsn, str(ident)) == (cluster.data, "")
    other = "1" + str(ident)
    found, why = local_data_dir(tools, cluster.dsn, other)
    assert found is None and "another cluster" in why
    found, why = local_data_dir(_Answers(pg_bindir, tmp_path / "elsewhere"), cluster.dsn,
                                str(ident))
    assert found is None and "not readable here" in why


def test_auto_falls_back_to_the_stream_and_direct_refuses_in_one_line(
        cluster: Cluster, pg_bindir: str, tmp_path: Path) -> None:
    remote = _Answers(pg_bindir, tmp_path / "elsewhere")
    spec: dict[str, Any] = {}
    names = set()
    with base_backup_source(cluster.dsn, spec, tools=remote) as items:
        for item in items:
            names.add(item.meta.path)
            if item.open is not None:
                with item.open() as content:
                    content.read()
    assert spec["method"] == "stream" and "not readable here" in spec["method_fallback"]
    assert "pgdata/backup_label" in names and "pgdata/global/pg_control" in names
    with pytest.raises(SourceError, match=r"cannot read the data directory directly: .*"
                                          r"not readable here"), \
            base_backup_source(cluster.dsn, {}, tools=remote, method="direct"):
        pass


def test_a_backup_whose_session_died_fails_in_one_line(cluster: Cluster, pg_bindir: str) -> None:
    tools = PgTools(pg_bindir)
    with pytest.raises(SourceError) as failed, \
            base_backup_source(cluster.dsn, {}, tools=tools, method="direct") as items:
        next(items)
        ended = cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE query LIKE 'SELECT pg_backup_start%'")
        assert ended == "t"
        for _item in items:
            pass
    message = str(failed.value)
    assert "the backup session ended" in message and "\n" not in message
    # The server holds no backup in progress: a new one starts.
    spec: dict[str, Any] = {}
    with base_backup_source(cluster.dsn, spec, tools=tools, method="direct") as items:
        for item in items:
            if item.open is not None:
                with item.open() as content:
                    content.read()
    assert spec["method"] == "direct" and spec["stop_lsn"]


def test_a_large_relation_is_cut_every_64_kib_and_a_changed_page_costs_one_chunk(
        tenant_factory: Any, scratch_dir: Path) -> None:
    from drsync.repo import Repository, SnapshotReader
    from drsync.repo.keys import Secret
    from drsync.sources.postgres.physical import LARGE_CHUNK, LARGE_FILE
    from drsync.store import open_store

    tenant = tenant_factory({"autovacuum": "off"})  # nothing writes the table but the test
    tenant.pgbench("-i", "-s", "2", "-q")  # pgbench_accounts: 26 MB, over LARGE_FILE
    accounts = "pgdata/" + tenant.cluster.psql("SELECT pg_relation_filepath('pgbench_accounts')")
    tenant.cluster.psql("CHECKPOINT")
    first = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
    spec = spec_of(tenant, first["snapshot_id"])
    assert spec["fixed_chunk"] == 32768
    assert spec["fixed_chunk_map"] == [[0, 32768], [LARGE_FILE, LARGE_CHUNK]]
    # One row of page 1000: its page and the one its new version went to (a full page
    # has no room; the last one, or one more) change, nothing else of the file.
    tenant.cluster.psql("UPDATE pgbench_accounts SET abalance = 7 WHERE ctid = '(1000,1)'")
    tenant.cluster.psql("CHECKPOINT")
    second = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn, "--pg-base-reread")

    repo = Repository.open(open_store(str(tenant.repo)), Secret(passphrase="pw"))
    with SnapshotReader(repo) as reader:
        old, new = ({e.path: e for e in reader.entries(repo.find_snapshot(s["snapshot_id"]))
                     if e.type == "file"} for s in (first, second))
        for entry in new.values():
            chunk = LARGE_CHUNK if entry.size >= LARGE_FILE else 32768
            if not entry.path.endswith("/backup_label"):  # pg_backup_stop's, not a file
                assert len(entry.chunks) == -(-entry.size // chunk), entry.path
        assert new[accounts].size >= LARGE_FILE
        before, after = old[accounts].chunks, new[accounts].chunks
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False))
                   if a != b]
        changed += list(range(len(before), len(after)))  # the file grew by a page
        assert 1 <= len(changed) <= 2 and len(after) > 400 and len(after) >= len(before)
        assert 1000 * 8192 // LARGE_CHUNK in changed  # the updated row's page
        # Restored, the file is the server's, byte for byte.
        target = scratch_dir / "data"
        tenant.drsync_json("restore", second["snapshot_id"], "--pgdata", str(target))
        assert (target / accounts.removeprefix("pgdata/")).read_bytes() == (
            tenant.cluster.data / accounts.removeprefix("pgdata/")).read_bytes()
