"""Prune on real repositories (in memory): what it deletes, repacks and keeps, and why."""

from __future__ import annotations

import io
import os
import time

import pytest

from drsync.errors import IntegrityError
from drsync.pgrestore import pitr_range
from drsync.repo import Entry, Repository, Snapshot, SnapshotReader, SnapshotWriter
from drsync.repo.check import check_repository
from drsync.repo.forget import forget
from drsync.repo.prune import parse_max_unused, prune
from drsync.repo.retention import RetentionPolicy
from drsync.repo.wal import seal_wal, wal_key
from drsync.store import MemoryStore
from drsync.testing import backup_bytes, make_repo
from drsync.wal.archive import wal_archive

KiB = 1 << 10


def small_repo() -> Repository:
    return make_repo(chunk_avg=1 * KiB, chunk_min=256, chunk_max=4 * KiB, pack_size=1 << 20)


def nights(repo: Repository, n: int, size: int = 1 << 20, churn: int = 200 * KiB,
           seed: int = 1) -> list[bytes]:
    """``n`` backups of one stream, each night rewriting ``churn`` bytes at a new place."""
    rng = __import__("random").Random(seed)
    data = bytearray(rng.randbytes(size))
    versions = []
    for night in range(n):
        start = (night * churn * 2) % (size - churn)
        data[start:start + churn] = rng.randbytes(churn)
        versions.append(bytes(data))
        backup_bytes(repo, versions[-1])
    return versions


def restored(repo: Repository) -> dict[str, bytes]:
    """Every snapshot's stream, by snapshot id (verifying every blob)."""
    out = {}
    with SnapshotReader(repo) as reader:
        for snap in repo.snapshots():
            [entry] = list(reader.entries(snap))
            out[snap.id] = b"".join(reader.blobs(entry.chunks))
    return out


def assert_clean(repo: Repository) -> None:
    report = check_repository(repo, read_data=True)
    assert report.errors == []


def objects(repo: Repository, prefix: str) -> set[str]:
    return {i.key for i in repo.store.list(prefix)}


def test_forget_then_prune_frees_space_and_every_kept_snapshot_restores() -> None:
    repo = small_repo()
    versions = nights(repo, 6)
    before = restored(repo)
    size_before = sum(i.size for i in repo.store.list("data/"))
    result = forget(repo, RetentionPolicy(keep_last=2))
    assert len(result.removed) == 4 and len(repo.snapshot_ids()) == 2
    assert {i.key for i in repo.store.list("snapshots/")} == {
        f"snapshots/{d.snapshot.id}" for d in result.groups[0].kept}
    report = prune(repo, max_unused=0.0)
    assert report.packs_deleted + report.packs_repacked > 0
    assert report.bytes_unused > 0 and report.bytes_rewritten > 0
    size_after = sum(i.size for i in repo.store.list("data/"))
    assert size_after < size_before * 0.75
    assert_clean(repo)
    after = restored(repo)
    assert after == {k: v for k, v in before.items() if k in after}
    assert sorted(after.values()) == sorted(versions[-2:])
    # With 0% tolerated, nothing dead is left: a dry run finds nothing to do.
    again = prune(repo, max_unused=0.0, dry_run=True)
    assert again.bytes_unused == 0 and again.packs_deleted == again.packs_repacked == 0
    assert len(objects(repo, "index/")) == 1  # compacted


def three_nights(repo: Repository) -> None:
    """Night 1 dies whole; night 3 rewrites 30% of night 2's first pack, 5% of its second."""
    rng = __import__("random").Random(7)
    backup_bytes(repo, rng.randbytes(1536 * KiB))
    second = bytearray(rng.randbytes(3 << 20))
    backup_bytes(repo, bytes(second))
    second[100 * KiB:400 * KiB] = rng.randbytes(300 * KiB)
    second[1100 * KiB:1150 * KiB] = rng.randbytes(50 * KiB)
    backup_bytes(repo, bytes(second))


def test_max_unused_decides_how_much_is_repacked() -> None:
    plans, left = {}, {}
    for text in ("unlimited", "10%", "0%"):
        repo = small_repo()
        three_nights(repo)
        forget(repo, RetentionPolicy(keep_last=1))
        plans[text] = prune(repo, max_unused=parse_max_unused(text))
        after = prune(repo, dry_run=True, max_unused=None)
        live = sum(i.size for i in repo.store.list("data/")) - after.bytes_unused
        left[text] = after.bytes_unused
        assert left[text] <= {"unlimited": float("inf"), "10%": 0.1 * live, "0%": 0}[text]
        assert_clean(repo)
    assert plans["unlimited"].packs_repacked == 0 and left["unlimited"] > 0
    assert plans["unlimited"].packs_deleted == plans["0%"].packs_deleted > 0
    assert 0 < plans["10%"].packs_repacked < plans["0%"].packs_repacked
    assert left["unlimited"] > left["10%"] > left["0%"] == 0


def test_a_dry_run_and_a_prune_with_nothing_to_do_change_nothing() -> None:
    repo = small_repo()
    nights(repo, 3)
    forget(repo, RetentionPolicy(keep_last=1))
    stored = dict(repo.store.objects)  # type: ignore[attr-defined]
    plan = prune(repo, dry_run=True, max_unused=0.0)
    assert repo.store.objects == stored  # type: ignore[attr-defined]
    assert plan.packs_deleted + plan.packs_repacked > 0
    done = prune(repo, max_unused=0.0)
    # What the dry run said it would delete and write is what the prune did (it wrote
    # "0 B" before: a slow link's upload unmentioned). Written: the live blobs' bytes,
    # less than the packs made of them (headers, the index of each pack).
    assert (plan.packs_deleted, plan.packs_repacked, plan.bytes_deleted) == (
        done.packs_deleted, done.packs_repacked, done.bytes_deleted)
    assert plan.packs_repacked == 0 or 0 < plan.bytes_rewritten <= done.bytes_rewritten
    assert plan.bytes_rewritten >= 0.9 * done.bytes_rewritten
    assert plan.packs_written == done.packs_written
    stored = dict(repo.store.objects)  # type: ignore[attr-defined]
    report = prune(repo, max_unused=0.0)
    assert repo.store.objects == stored  # type: ignore[attr-defined]
    assert report.index_files_written == report.index_files_deleted == 0


def test_prune_refuses_a_repository_with_an_unreadable_snapshot_and_deletes_nothing() -> None:
    repo = small_repo()
    nights(repo, 3)
    forget(repo, RetentionPolicy(keep_last=1))
    victim = f"snapshots/{repo.snapshot_ids()[0]}"
    store = repo.store
    assert isinstance(store, MemoryStore)
    store.objects[victim] = store.objects[victim][:-1] + bytes([store.objects[victim][-1] ^ 1])
    stored = dict(store.objects)
    with pytest.raises(IntegrityError, match=f"object {victim}.*prune refuses"):
        prune(repo, max_unused=0.0)
    assert store.objects.keys() - {"lock"} == stored.keys() - {"lock"}
    assert not store.exists("lock")  # released


def test_packs_no_index_named_at_the_start_are_never_deleted() -> None:
    """A writer whose lock went stale may still be filling packs: prune leaves every
    pack it did not find indexed, and the late backup's snapshot restores whole."""
    repo = small_repo()
    nights(repo, 2)
    forget(repo, RetentionPolicy(keep_last=1))
    late = os.urandom(3 << 20)
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("late", "stream"), io.BytesIO(late))
    deadline = time.monotonic() + 30
    while len(objects(repo, "data/")) < 4 + 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # its first packs are stored, not yet indexed
    unindexed = {p for p in repo.stored_packs() if p not in repo.load_index().packs}
    assert unindexed
    report = prune(repo, max_unused=0.0)
    assert report.packs_adopted >= len(unindexed)
    assert unindexed <= set(repo.stored_packs())
    snap = writer.commit(host="late", source_kind="stdin", source_spec={"name": "late"},
                         tags=[], summary={}, version="test")
    assert_clean(repo)
    with SnapshotReader(repo) as reader:
        [entry] = list(reader.entries(snap))
        assert b"".join(reader.blobs(entry.chunks)) == late


def _pg_base(repo: Repository, at: str, start: int, tree: list[str]) -> Snapshot:
    seg = f"0000000100000000000000{start:02X}"
    snap = Snapshot(time=at, start_time=at, host="db1", source_kind="pg_base",
                    source_spec={"timeline": 1, "start_wal": seg, "stop_wal": seg,
                                 "consistent_at": at, "system_identifier": "7001",
                                 "wal_segment_size": 16 << 20},
                    tree=tree, tags=[], summary={}, drsync_version="test")
    repo.save_snapshot(snap)
    return snap


def test_forget_and_prune_keep_exactly_the_wal_the_kept_base_backups_need() -> None:
    repo = small_repo()
    stream = backup_bytes(repo, os.urandom(50 * KiB))
    repo.store.delete(f"snapshots/{stream.id}")
    bases = [_pg_base(repo, f"2026-11-0{d}T03:00:00.000000Z", start, stream.tree)
             for d, start in ((1, 2), (2, 5), (3, 8))]
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 12)]
    for name in names:
        repo.store.put(wal_key(name), seal_wal(repo.key, name, os.urandom(64)))
    before = pitr_range(repo)
    assert before["earliest"] == bases[0].time
    result = forget(repo, RetentionPolicy(keep_last=2))
    assert result.removed == [bases[0].id]
    assert result.wal_expirable == 4  # segments 1..4 end before the base backup at 5
    assert set(objects(repo, "wal/")) == {wal_key(n) for n in names}  # forget keeps WAL
    after = pitr_range(repo)
    assert after["earliest"] == bases[1].time
    assert after["latest"] == before["latest"]
    assert [r["snapshot_id"] for r in after["base_backups"]] == [b.id for b in bases[1:]]
    report = prune(repo)
    assert report.wal_expired == names[:4]
    assert objects(repo, "wal/") == {wal_key(n) for n in names[4:]}
    final = pitr_range(repo)
    assert final["earliest"] == bases[1].time and final["latest"] == before["latest"]
    assert all(r["complete"] and r["last_wal"] == names[-1] for r in final["base_backups"])
    assert_clean(repo)
    assert [c.complete for c in wal_archive(repo).coverage()] == [True, True]


def test_the_marker_finds_every_chunk_id_however_trees_are_cut_and_shared() -> None:
    """Ids cut across tree blobs, and tree blobs met again in a later snapshot (read
    once: only their edges are scanned again), are all marked, and nothing else."""
    import json
    import random

    from drsync.repo.prune import _Marker

    rng = random.Random(3)

    def tree(ids: list[list[str]]) -> bytes:
        return b"".join(json.dumps({"path": f"f{i}", "type": "file", "chunks": c}).encode()
                        + b"\n" for i, c in enumerate(ids))

    def cut(data: bytes) -> list[bytes]:
        points = sorted(rng.sample(range(1, len(data)), len(data) // 300))
        return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]

    files = [[rng.randbytes(32).hex() for _ in range(rng.randrange(1, 6))] for _ in range(80)]
    first_tree = tree(files)
    first = cut(first_tree)
    # The second tree shares the first's blobs up to a cut inside an id, and from there
    # the rest of that id differs: only the shared blob's tail finds the new id.
    hexdigits = b"0123456789abcdef"
    k, offset = next((k, sum(map(len, first[:k]))) for k in range(len(first) // 2, len(first))
                     if first[k - 1][-1] in hexdigits and first[k][0] in hexdigits)
    run = len(first[k]) - len(first[k].lstrip(hexdigits))
    second_tree = (first_tree[:offset] + rng.randbytes(run).hex()[:run].encode()
                   + first_tree[offset + run:])
    changed = [json.loads(line)["chunks"] for line in second_tree.splitlines()]
    second = first[:k] + cut(second_tree[offset:])
    blobs = {rng.randbytes(32): b for b in first + second}
    by_data = {v: k for k, v in blobs.items()}
    reads: list[bytes] = []

    def read(blob_id: bytes) -> bytes:
        reads.append(blob_id)
        return blobs[blob_id]

    marker = _Marker(read)
    for parts in (first, second):
        marker.mark(Snapshot(time="", start_time="", host="", source_kind="", source_spec={},
                             tree=[by_data[p].hex() for p in parts]))
    tree_ids = {by_data[p].hex() for p in first + second}
    chunk_ids = {h for ids in files + changed for h in ids}
    expected = {int(h[:16], 16) for h in chunk_ids | tree_ids}
    assert marker.live == expected
    assert len(reads) == len(set(reads)) == len(set(first + second))
