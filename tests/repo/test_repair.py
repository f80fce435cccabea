"""repair packs: a damaged pack leaves the store, every blob that verifies is kept, and the
next backup heals what was lost; until it is repaired, backups reuse its damaged blobs."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import DrsyncError, IntegrityError, UsageError
from drsync.repo import Entry, RepoConfig, Repository, Secret, SnapshotReader
from drsync.repo.check import check_repository
from drsync.repo.index import pack_key
from drsync.repo.objects import object_id
from drsync.repo.pack import BLOB_GROUP, read_pack_header, stored_ranges
from drsync.repo.repair import repair_packs, resolve_pack_ids
from drsync.repo.writer import SnapshotWriter
from drsync.store import LocalStore
from drsync.testing import make_repo, make_repository, text_like

KiB, MiB = 1 << 10, 1 << 20
PASS = "test passphrase"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 * KiB, chunk_min=16 * KiB,
                     chunk_max=256 * KiB, pack_size=MiB)


def _data(seed: int = 5) -> bytes:
    return text_like(2 * MiB, seed=seed) + random.Random(seed).randbytes(2 * MiB)


def _reopen(repo: Repository) -> Repository:
    return Repository.open(repo.store, Secret(passphrase=PASS))


def _backup(repo: Repository, data: bytes) -> str:
    result = run_backup(repo, BackupRequest(stdin_name="dump", stdin=io.BytesIO(data)))
    assert result.exit_code == 0
    return result.snapshot_id


def _restore(repo: Repository, ref: str) -> bytes:
    fresh = _reopen(repo)
    with SnapshotReader(fresh) as reader:
        snap = fresh.find_snapshot(ref)
        return b"".join(b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap))


def _packs(repo: Repository) -> dict[str, Path]:
    root = Path(repo.store.url)
    return {i.key.rsplit("/", 1)[-1]: root / i.key for i in repo.store.list("data/")}


def _data_pack(repo: Repository) -> tuple[str, Path, int]:
    """The largest pack holding no tree blob, and the offset of its second stored range."""
    for pack_id, path in sorted(_packs(repo).items(), key=lambda kv: -kv[1].stat().st_size):
        entries = read_pack_header(repo.key, path.read_bytes())
        if all(e.blob_type != 1 for e in entries) and len(entries) >= 3:
            ranges = sorted(stored_ranges(entries), key=lambda m: m[0].offset)
            return pack_id, path, ranges[1][0].offset + 40
    raise AssertionError("no pack of file data with three blobs")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def test_backups_reuse_a_damaged_blob_until_repair_takes_the_pack_out(
        repo: Repository, tmp_path: Path) -> None:
    data = _data()
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)
    damaged = path.read_bytes()
    # The flaw repair exists for: a later backup of the same source deduplicates against
    # the damaged blob, so its snapshot cannot be restored either.
    second = _backup(_reopen(repo), data)
    with pytest.raises(IntegrityError):
        _restore(repo, second)

    report = repair_packs(_reopen(repo), save_to=tmp_path / "quarantine")
    [fix] = report.packs
    assert (fix.pack_id, fix.status, fix.blobs_lost) == (pack_id, "repaired", 1)
    assert fix.blobs_salvaged >= 2 and fix.blobs_held == 0
    assert f"offset {offset - 40}: blob " in fix.problems[0]
    assert "authentication failed" in fix.problems[0]
    assert pack_id not in _packs(repo)  # out of the store...
    assert (tmp_path / "quarantine" / pack_id).read_bytes() == damaged  # ...and kept here
    assert report.packs_written == 1 and report.index_files_written == 1
    assert sorted(s["id"] for s in report.snapshots_affected) == sorted([first, second])
    assert all(s["blobs_lost"] == 1 for s in report.snapshots_affected)
    # Now the loss is named without reading any data, and nothing else is.
    named = check_repository(_reopen(repo)).errors
    assert sum("cannot be fully restored: 1 blob in missing pack" in e for e in named) == 2

    third = _backup(_reopen(repo), data)  # stores the lost chunk again
    assert _restore(repo, third) == data
    assert _restore(repo, first) == data and _restore(repo, second) == data  # healed
    after = check_repository(_reopen(repo), read_data=True)
    assert after.ok, after.errors


def test_a_damaged_header_loses_no_blob(repo: Repository, tmp_path: Path) -> None:
    data = _data(6)
    first = _backup(repo, data)
    pack_id, path, _offset = _data_pack(repo)
    _flip(path, path.stat().st_size - 30)  # inside the sealed header
    report = repair_packs(_reopen(repo), [pack_id[:10]], save_to=tmp_path / "q")
    [fix] = report.packs
    assert fix.status == "repaired" and fix.blobs_lost == 0 and fix.blobs_salvaged >= 3
    assert fix.problems[0].startswith("pack header: ")
    assert report.snapshots_affected == []
    assert _restore(repo, first) == data
    assert check_repository(_reopen(repo), read_data=True).ok


def test_a_truncated_pack_keeps_what_lies_before_the_cut(repo: Repository,
                                                         tmp_path: Path) -> None:
    data = _data(7)
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    path.chmod(0o600)
    path.write_bytes(path.read_bytes()[:offset])  # the second range is cut, and all after
    report = repair_packs(_reopen(repo), [f"data/{pack_id[:2]}/{pack_id}"],
                          save_to=tmp_path / "q")
    [fix] = report.packs
    assert fix.status == "repaired" and fix.blobs_salvaged == 1 and fix.blobs_lost >= 2
    assert any("past the pack's" in p for p in fix.problems)
    assert _backup(_reopen(repo), data)
    assert _restore(repo, first) == data


def test_an_intact_pack_is_left_alone_and_a_dry_run_changes_nothing(
        repo: Repository, tmp_path: Path) -> None:
    _backup(repo, _data(8))
    pack_id, path, offset = _data_pack(repo)
    other = next(p for p in _packs(repo) if p != pack_id)
    report = repair_packs(_reopen(repo), [other], save_to=tmp_path / "q")
    assert [(p.pack_id, p.status) for p in report.packs] == [(other, "intact")]
    _flip(path, offset)
    root = Path(repo.store.url)
    before = sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    dry = repair_packs(_reopen(repo), save_to=tmp_path / "q-dry", dry_run=True)
    assert [(p.pack_id, p.status, p.blobs_lost) for p in dry.packs] == [(pack_id, "repaired", 1)]
    # What it would write is counted, what it read too; nothing was written.
    assert dry.packs_written == 1 and dry.bytes_written > 0 and dry.packs[0].saved_to is None
    assert dry.packs_read == len(_packs(repo))
    assert sorted((p, p.read_bytes()) for p in root.rglob("*") if p.is_file()) == before
    assert not (tmp_path / "q-dry").exists()
    (tmp_path / "a-file").write_text("in the way")
    with pytest.raises(DrsyncError, match=r"cannot save damaged packs to .*: Not a directory"):
        repair_packs(_reopen(repo), save_to=tmp_path / "a-file" / "q", dry_run=True)


def test_a_quarantine_that_cannot_be_written_deletes_nothing(repo: Repository,
                                                             tmp_path: Path) -> None:
    data = _data(9)
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    root = Path(repo.store.url)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    with pytest.raises(DrsyncError) as info:
        repair_packs(_reopen(repo), save_to=blocked / "quarantine")
    assert info.value.exit_code == 17
    assert str(info.value) == (f"cannot save damaged packs to {blocked / 'quarantine'}: Not a "
                               "directory; nothing was stored or deleted (give --save-to a "
                               "directory this user can write, with room for the damaged "
                               "packs)")
    # Found before anything was stored: no salvage pack, no index, the pack still there.
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) == before
    assert not (Path(repo.store.url) / "locks").exists() or not any(
        (Path(repo.store.url) / "locks").iterdir())  # the lock was released
    # Run again with room: done.
    report = repair_packs(_reopen(repo), save_to=tmp_path / "q")
    assert [p.status for p in report.packs] == ["repaired"]
    assert pack_id not in _packs(repo)
    _backup(_reopen(repo), data)
    assert _restore(repo, first) == data
    assert check_repository(_reopen(repo), read_data=True).ok


def test_killed_before_the_delete_a_second_run_finishes(repo: Repository, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(10)
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)

    def killed(self: LocalStore, key: str) -> None:
        raise KeyboardInterrupt  # as a SIGINT between the index and the delete

    with monkeypatch.context() as patched:
        patched.setattr(LocalStore, "delete", killed)
        with pytest.raises(KeyboardInterrupt):
            repair_packs(_reopen(repo), save_to=tmp_path / "q")
    assert pack_id in _packs(repo)
    from drsync.repo.lock import remove_lock
    remove_lock(repo.store)  # what `drsync unlock` does for the dead process's lock
    again = repair_packs(_reopen(repo), save_to=tmp_path / "q")
    assert [(p.pack_id, p.status) for p in again.packs] == [(pack_id, "repaired")]
    assert pack_id not in _packs(repo)
    _backup(_reopen(repo), data)
    assert _restore(repo, first) == data
    assert check_repository(_reopen(repo), read_data=True).ok


def test_a_damaged_group_is_lost_whole_and_its_neighbours_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo")
    make_repository(store, PASS, config=RepoConfig(chunk_avg=64 * KiB, chunk_min=16 * KiB,
                                                   chunk_max=256 * KiB, pack_size=MiB))
    repo = Repository.open(store, Secret(passphrase=PASS))
    rel = text_like(3 * MiB, seed=3)
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry("rel", "file", mode=0o600, size=len(rel)), io.BytesIO(rel),
                      fixed_size=32 * KiB)
    snap = writer.commit(host="t", source_kind="files", source_spec={}, tags=[], summary={},
                         version="t")
    target = None
    for pack_id, path in _packs(repo).items():
        groups = [m for m in stored_ranges(read_pack_header(repo.key, path.read_bytes()))
                  if m[0].blob_type == BLOB_GROUP]
        if len(groups) >= 2:
            target = (pack_id, path, groups)
            break
    assert target is not None
    pack_id, path, groups = target
    _flip(path, groups[0][0].offset + 100)
    report = repair_packs(Repository.open(store, Secret(passphrase=PASS)),
                          save_to=tmp_path / "q")
    [fix] = report.packs
    assert fix.blobs_lost == len(groups[0]) >= 2
    assert fix.blobs_salvaged == sum(len(m) for m in groups[1:]) + (
        len(read_pack_header(repo.key, (tmp_path / "q" / pack_id).read_bytes()))
        - sum(len(m) for m in groups))
    assert f"group of {len(groups[0])} blobs" in fix.problems[0]
    assert [s["id"] for s in report.snapshots_affected] == [snap.id]
    assert report.snapshots_affected[0]["blobs_lost"] == len(groups[0])


def test_pack_names_resolve_as_check_prints_them() -> None:
    a, b = "3fa1c2d0" + "0" * 56, "3fa1c2d0" + "1" * 56
    known = [a, b]
    assert resolve_pack_ids([a, f"data/3f/{b}", "3fa1c2d01", "3fa1c2d000…"], known) == [a, b]
    with pytest.raises(UsageError, match="names 2 packs"):
        resolve_pack_ids(["3fa1c2d0"], known)
    with pytest.raises(UsageError, match="at least 8 hex digits"):
        resolve_pack_ids(["3fa1c2d"], known)
    with pytest.raises(UsageError, match="no pack 'deadbeef00'"):
        resolve_pack_ids(["deadbeef00"], known)
    with pytest.raises(UsageError, match="is not a pack"):
        resolve_pack_ids(["snapshots/abc"], known)


def test_the_quarantined_bytes_are_the_damaged_object(repo: Repository, tmp_path: Path) -> None:
    _backup(repo, _data(11))
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)
    report = repair_packs(_reopen(repo), save_to=tmp_path / "q")
    saved = Path(report.packs[0].saved_to or "")
    assert object_id(saved.read_bytes()) != pack_id  # damaged, as it was in the store
    assert oct(saved.stat().st_mode & 0o777) == oct(0o600)
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temporary
    assert not os.path.exists(Path(repo.store.url) / pack_key(pack_id))


def test_repair_waits_for_nobody_a_held_lock_is_exit_12(repo: Repository,
                                                         tmp_path: Path) -> None:
    from drsync.repo.lock import RepositoryLock

    _backup(repo, _data(12))
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)
    with RepositoryLock(repo.store, "backup"), pytest.raises(DrsyncError) as info:
        repair_packs(_reopen(repo), save_to=tmp_path / "q")
    assert info.value.exit_code == 12 and "lock" in str(info.value)
    assert pack_id in _packs(repo) and not (tmp_path / "q").exists()


def test_a_repair_killed_while_saving_leaves_no_temporary_after_the_next(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    data = _data(13)
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    # What a repair killed mid-write (by a pid that has ended) left: half a copy.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (quarantine / f".{pack_id[:12]}.{dead}.tmp").write_bytes(b"half")
    (quarantine / "notes.txt").write_text("the operator's")  # not repair's: left alone
    report = repair_packs(_reopen(repo), save_to=quarantine)
    assert [p.status for p in report.packs] == ["repaired"]
    assert sorted(p.name for p in quarantine.iterdir()) == sorted([pack_id, "notes.txt"])
    # Named again, the pack repaired before is missing: none of its blobs counted lost
    # that the salvage holds.
    again = repair_packs(_reopen(repo), [pack_id], save_to=quarantine)
    [gone] = again.packs
    assert (gone.status, gone.blobs_lost) == ("missing", 1)
    assert gone.blobs_held == report.packs[0].blobs_salvaged
    assert "taken out by an earlier repair" in gone.problems[0]
    _backup(_reopen(repo), data)
    assert _restore(repo, first) == data



def test_a_rerun_after_a_kill_before_the_index_copies_nothing_twice(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after its salvage pack was stored but before its index: the rerun finds
    that pack (no index names it, its header verifies) holding the blobs, and writes no
    second copy (a duplicate no prune would ever reclaim)."""
    from drsync.repo.prune import IndexWriter

    data = _data(17)
    first = _backup(repo, data)
    pack_id, path, offset = _data_pack(repo)
    _flip(path, offset)

    def killed(self: IndexWriter) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(IndexWriter, "flush", killed)
        with pytest.raises(KeyboardInterrupt):
            repair_packs(_reopen(repo), save_to=tmp_path / "q")
    salvage = set(_packs(repo)) - {pack_id}
    from drsync.repo.lock import remove_lock
    remove_lock(repo.store)
    again = repair_packs(_reopen(repo), save_to=tmp_path / "q")
    [fix] = again.packs
    assert fix.status == "repaired" and fix.blobs_salvaged == 0 and fix.blobs_held >= 2
    assert again.packs_written == 0 and set(_packs(repo)) == salvage
    _backup(_reopen(repo), data)
    assert _restore(repo, first) == data
    assert check_repository(_reopen(repo), read_data=True).ok
