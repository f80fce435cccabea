"""The writer's stop point: a backup asked to stop writes no snapshot, keeps its packs."""

from __future__ import annotations

import io
import random
import threading
from typing import Any

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import RunInterrupted
from drsync.repo import RepoConfig
from drsync.repo.check import check_repository
from drsync.store import MemoryStore
from drsync.store.throttle import ThrottledStore, TokenBucket
from drsync.testing import make_repository

MiB = 1 << 20


def test_stop_raises_before_the_snapshot_and_the_next_run_reuses_the_packs() -> None:
    repo = make_repository(MemoryStore(), "pw", config=RepoConfig(
        chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10, pack_size=MiB))

    data = random.Random(1).randbytes(6 * MiB)

    def stop_once_two_packs_are_stored() -> str | None:
        # By progress, not by a count of checks: on a loaded machine the first packs
        # may still be sealing after 4 MiB were read. The last check comes after the
        # last upload, so a stop is always asked, with packs stored.
        return "deadline" if len(repo.stored_packs()) >= 2 else None

    req = BackupRequest(stdin_name="db.dump", stdin=io.BytesIO(data),
                        should_stop=stop_once_two_packs_are_stored)
    with pytest.raises(RunInterrupted) as info:
        run_backup(repo, req)
    assert info.value.reason == "deadline"
    assert repo.snapshot_ids() == []
    packs_left = len(repo.stored_packs())
    assert packs_left >= 1  # finished packs stay for the next run
    assert check_repository(repo).ok
    result = run_backup(repo, BackupRequest(stdin_name="db.dump", stdin=io.BytesIO(data)))
    assert repo.snapshot_ids() == [result.snapshot_id]
    assert result.bytes_read == len(data)
    # the packs of the interrupted run were reused: less was stored the second time
    assert result.bytes_added < len(data) - (packs_left - 1) * MiB // 2
    assert check_repository(repo, read_data=True).ok


def test_a_stop_asked_while_packs_wait_for_a_slow_link_drops_them() -> None:
    """The tester's overrun: the source is read, packs wait for a throttled link, the
    deadline comes. The pack being uploaded finishes; the queued ones are not sent."""
    inner = MemoryStore()
    bucket = TokenBucket(4 * MiB)  # a 1 MiB pack takes a quarter of a second
    repo = make_repository(ThrottledStore(inner, bucket, None), "pw", config=RepoConfig(
        chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10, pack_size=MiB))
    data = random.Random(3).randbytes(10 * MiB)
    writer_thread = threading.current_thread()
    read = [0]
    stored_at_stop: list[int] = []

    def progress(n: int) -> None:
        read[0] += n

    def deadline_once_the_source_is_read() -> str | None:
        # The writer's own thread asks once more (for the tree) after the last byte is
        # read; the deadline comes just after, while it waits for the queued packs.
        if stored_at_stop:
            return "deadline"
        if threading.current_thread() is writer_thread and read[0] == len(data):
            stored_at_stop.append(len(repo.stored_packs()))
        return None

    req = BackupRequest(stdin_name="db.dump", stdin=io.BytesIO(data),
                        should_stop=deadline_once_the_source_is_read)
    with pytest.raises(RunInterrupted) as info:
        run_backup(repo, req, progress=progress)
    assert info.value.reason == "deadline"
    assert repo.snapshot_ids() == []
    assert check_repository(repo).ok
    [at_stop] = stored_at_stop
    stored = len(repo.stored_packs())
    assert stored <= at_stop + repo.store.connections  # only the packs in flight finished

    bucket.set_rate(0)  # the next night's link is free
    result = run_backup(repo, BackupRequest(stdin_name="db.dump", stdin=io.BytesIO(data)))
    assert repo.snapshot_ids() == [result.snapshot_id]
    added = len(repo.stored_packs()) - stored
    assert added >= 2  # the packs queued at the deadline were never sent...
    assert added < stored  # ...and the stored ones were reused, not sent again
    assert check_repository(repo, read_data=True).ok


def test_a_stop_asked_at_the_last_check_still_keeps_the_snapshot_out() -> None:
    calls = [0]

    def count() -> str | None:
        calls[0] += 1
        return None

    run_backup(make_repository(MemoryStore(), "pw"),
               BackupRequest(stdin_name="s", stdin=io.BytesIO(b"x" * 1000), should_stop=count))
    last = calls[0]  # the check after the last upload, just before the snapshot
    repo = make_repository(MemoryStore(), "pw")
    seen = [0]

    def stop_at_last() -> str | None:
        seen[0] += 1
        return "deadline" if seen[0] >= last else None

    with pytest.raises(RunInterrupted):
        run_backup(repo, BackupRequest(stdin_name="s", stdin=io.BytesIO(b"x" * 1000),
                                       should_stop=stop_at_last))
    assert repo.snapshot_ids() == []
    assert check_repository(repo).ok


def test_a_run_stopped_at_the_deadline_records_what_it_read_and_stored(tmp_path: Any) -> None:
    """An overrun's bytes are what the operator sizes the next night by (window-overrun.md):
    the catalog and the sealed run record keep them, not zeros."""
    from drsync.catalog.db import Catalog
    from drsync.repo.runs import load_runs

    repo = make_repository(MemoryStore(), "pw", config=RepoConfig(
        chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10, pack_size=MiB))
    data = random.Random(2).randbytes(6 * MiB)
    asked = [0]

    def stop_after_4_mib() -> str | None:
        asked[0] += 1
        return "deadline" if asked[0] > 64 else None

    catalog = Catalog(str(tmp_path / "catalog.sqlite"), state_dir=tmp_path)
    try:
        with pytest.raises(RunInterrupted):
            run_backup(repo, BackupRequest(stdin_name="db.dump", stdin=io.BytesIO(data),
                                           should_stop=stop_after_4_mib), catalog=catalog)
        [run] = catalog.runs(limit=None)
    finally:
        catalog.close()
    stored = sum(repo.stored_packs().values())
    assert run.status == "overrun"
    assert 2 * MiB < run.bytes_read < len(data)
    assert stored <= run.bytes_added < run.bytes_read + MiB
    [record] = load_runs(repo)
    assert (record["status"], record["bytes_read"], record["bytes_added"]) == (
        "overrun", run.bytes_read, run.bytes_added)
