"""A lost or damaged object is never hidden by a later "ok".

A backup never references a blob whose pack it has not seen present; check
names every snapshot a missing or damaged blob keeps from being restored;
one unreadable index, snapshot or key wrapping is skipped with a warning,
not fatal; a rollback of the store shows against the local catalog.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import IntegrityError
from drsync.repo import Repository, Secret, SnapshotReader
from drsync.repo.check import check_repository, recorded_snapshots_missing
from drsync.repo.keys import KeyFile
from drsync.store import LocalStore
from drsync.testing import make_repo, text_like

MiB = 1 << 20
PASS = "test passphrase"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 * 1024, chunk_min=16 * 1024,
                     chunk_max=256 * 1024, pack_size=MiB)


def _data(seed: int = 5) -> bytes:
    return text_like(2 * MiB, seed=seed) + os.urandom(2 * MiB)


def _backup(repo: Repository, data: bytes, tags: list[str] | None = None) -> str:
    result = run_backup(repo, BackupRequest(stdin_name="dump", stdin=io.BytesIO(data),
                                            tags=tags or []))
    assert result.exit_code == 0
    return result.snapshot_id


def _reopen(repo: Repository, warnings: list[str] | None = None) -> Repository:
    return Repository.open(repo.store, Secret(passphrase=PASS),
                           warn=warnings.append if warnings is not None else None)


def _restore(repo: Repository, ref: str) -> bytes:
    fresh = _reopen(repo)
    snap = fresh.find_snapshot(ref)
    with SnapshotReader(fresh) as reader:
        return b"".join(b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap))


def _root(repo: Repository) -> Path:
    return Path(repo.store.url)


def _packs(repo: Repository) -> list[Path]:
    return sorted(_root(repo) / i.key for i in repo.store.list("data/"))


def _pack_blobs(repo: Repository, pack: Path) -> int:
    """How many distinct blobs of the (only) snapshot live in ``pack``."""
    index = _reopen(repo).load_index()
    return sum(1 for _blob, loc in index.items() if loc.pack_id == pack.name)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_backup_after_a_pack_is_lost_stores_its_chunks_again(repo: Repository,
                                                             damage: str) -> None:
    data = _data()
    first = _backup(repo, data)
    pack = _packs(repo)[0]
    if damage == "delete":
        pack.unlink()
    else:
        pack.write_bytes(pack.read_bytes()[:-100])
    broken = check_repository(_reopen(repo))
    assert f"object data/{pack.parent.name}/{pack.name}: " in "\n".join(broken.errors)
    word = "missing" if damage == "delete" else "truncated"
    assert any(e.startswith(f"snapshot {first[:8]} (") and f"in {word} pack {pack.name[:12]}…"
               in e for e in broken.errors), broken.errors
    second = _backup(_reopen(repo), data)  # the same data: every chunk is "known" to the index
    assert second != first
    assert _restore(repo, second) == data
    # The chunks stored again heal the older snapshot too (same chunk ids).
    assert _restore(repo, first) == data
    report = check_repository(_reopen(repo))
    assert report.ok, report.errors
    assert any(pack.name in n and "no snapshot needs it any more" in n for n in report.notes)


def test_check_names_each_snapshot_of_a_missing_pack_with_time_tags_and_count(
        repo: Repository) -> None:
    data = _data()
    first = _backup(repo, data, tags=["nightly"])
    second = _backup(_reopen(repo), data, tags=["weekly"])  # deduplicated: same packs
    pack = max(_packs(repo), key=lambda p: p.stat().st_size)
    blobs = _pack_blobs(repo, pack)
    assert blobs >= 2
    pack.unlink()
    report = check_repository(_reopen(repo))
    assert not report.ok
    assert f"object data/{pack.parent.name}/{pack.name}: missing (named by the index)" \
        in report.errors
    snaps = {s.id: s for s in _reopen(repo).snapshots()}
    for snapshot_id, tag in ((first, "nightly"), (second, "weekly")):
        when = snaps[snapshot_id].time[:19].replace("T", " ")
        line = (f"snapshot {snapshot_id[:8]} ({when} {tag}) cannot be fully restored: "
                f"{blobs} blobs in missing pack {pack.name[:12]}…")
        assert line in report.errors, report.errors


def test_check_read_data_names_the_snapshot_of_a_damaged_blob(repo: Repository) -> None:
    snapshot_id = _backup(repo, _data())
    pack = _packs(repo)[0]
    _flip(pack, 200)  # inside the first blob
    assert not any("cannot be fully restored" in e for e in check_repository(repo).errors)
    report = check_repository(_reopen(repo), read_data=True)
    named = [e for e in report.errors if "cannot be fully restored" in e]
    assert len(named) == 1, report.errors
    assert named[0].startswith(f"snapshot {snapshot_id[:8]} (")
    assert named[0].endswith(f"1 blob in damaged pack {pack.name[:12]}…")


@pytest.mark.parametrize("damage", ["flip", "garbage", "foreign"])
def test_an_unreadable_index_is_skipped_with_a_warning_and_packs_adopted(
        repo: Repository, damage: str) -> None:
    data = _data()
    snapshot_id = _backup(repo, data)
    (index,) = sorted((_root(repo) / "index").iterdir())
    if damage == "flip":
        _flip(index, 40)
        name = f"index/{index.name}"
    elif damage == "garbage":
        index.write_bytes(b"\x00garbage" * 10)
        name = f"index/{index.name}"
    else:
        (index.parent / "README").write_text("not an index")
        name = "index/README"
    warnings: list[str] = []
    fresh = _reopen(repo, warnings)
    fresh.load_index()
    fresh.load_index()
    (warning,) = warnings  # once, however often the index is loaded
    assert warning.startswith(f"object {name}: skipped: ")
    # Every blob is found again in the packs' authenticated headers: the restore works.
    assert _restore(repo, snapshot_id) == data
    report = check_repository(_reopen(repo))
    assert any(e.startswith(f"object {name}: ") for e in report.errors), report.errors
    assert not any("cannot be fully restored" in e for e in report.errors), report.errors
    # The next backup indexes the adopted packs; nothing is stored twice.
    before = sum(p.stat().st_size for p in _packs(repo))
    _backup(_reopen(repo), data)
    assert sum(p.stat().st_size for p in _packs(repo)) - before < 64 * 1024
    warnings.clear()
    assert len(_reopen(repo, warnings).load_index()) > 0 and warnings == [warning]


@pytest.mark.parametrize("damage", ["flip", "foreign"])
def test_an_unreadable_snapshot_is_skipped_with_a_warning(repo: Repository,
                                                          damage: str) -> None:
    older = _backup(repo, _data(1))
    newer = _backup(_reopen(repo), _data(2))
    if damage == "flip":
        _flip(_root(repo) / "snapshots" / newer, 30)
        name, survivors = f"snapshots/{newer}", [older]
    else:
        (_root(repo) / "snapshots" / "notes.txt").write_text("hello")
        name, survivors = "snapshots/notes.txt", [older, newer]
    warnings: list[str] = []
    fresh = _reopen(repo, warnings)
    assert [s.id for s in fresh.snapshots()] == survivors
    assert len(warnings) == 1 and warnings[0].startswith(f"object {name}: ")
    if damage == "flip":  # it may have been the newest: `latest` is not the older one
        with pytest.raises(IntegrityError, match=f"cannot tell the latest snapshot: object "
                                                 f"{name}: "):
            fresh.find_snapshot("latest")
    else:  # a stray file was never a snapshot
        assert fresh.find_snapshot("latest").id == survivors[-1]
    _backup(fresh, _data(3))  # backups go on
    report = check_repository(_reopen(repo))
    assert any(name in e for e in report.errors), report.errors


def test_a_malformed_key_wrapping_does_not_lock_the_tenant_out(repo: Repository,
                                                               tmp_path: Path) -> None:
    snapshot_id = _backup(repo, b"registry")
    key_file = repo.add_key_file()
    # Sorted before every real wrapping, so it is tried first.
    (_root(repo) / "keys" / ("0" * 32)).write_bytes(b"DRSYK\x01{not json")
    warnings: list[str] = []
    fresh = Repository.open(repo.store, Secret(passphrase=PASS), warn=warnings.append)
    assert _restore(fresh, snapshot_id) == b"registry"
    assert warnings == [f"object keys/{'0' * 32}: undecodable JSON: Expecting property "
                        "name enclosed in double quotes: line 1 column 2 (char 1): skipped"]
    # A key file opens its own wrapping, untouched by the damaged one.
    path = tmp_path / "agent.key"
    key_file.write(path)
    assert Repository.open(repo.store, Secret(key_file=KeyFile.load(path))).config.id
    report = check_repository(fresh)
    assert any(e.startswith(f"object keys/{'0' * 32}: ") for e in report.errors), report.errors
    # With every wrapping malformed, the error names one of them, not a wrong passphrase.
    for wrapping in (_root(repo) / "keys").iterdir():
        wrapping.write_bytes(b"DRSYK\x01[]")
    with pytest.raises(IntegrityError, match=r"object keys/[0-9a-f]{32}: undecodable"):
        Repository.open(repo.store, Secret(passphrase=PASS))


def test_rollback_of_the_newest_snapshot_is_reported_against_the_catalog(
        repo: Repository) -> None:
    older = _backup(repo, _data(1))
    newer = _backup(_reopen(repo), _data(2))
    snaps = {s.id: s for s in _reopen(repo).snapshots()}
    known = {s.id: s.time for s in snaps.values()}
    assert check_repository(_reopen(repo), known_snapshots=known).ok
    (_root(repo) / "snapshots" / newer).unlink()
    report = check_repository(_reopen(repo), known_snapshots=known)
    when = snaps[newer].time[:19].replace("T", " ")
    assert report.errors == [f"snapshot {newer[:8]} ({when}) recorded in the catalog is missing "
                             "from the store (rolled back or deleted)"]
    # An older one deleted while a newer one stays is a note, not a rollback.
    errors, notes = recorded_snapshots_missing(known, [newer], [snaps[newer]])
    assert errors == [] and len(notes) == 1 and older[:8] in notes[0]


def test_repository_needs_an_object_the_store_lost_exit_13(repo: Repository) -> None:
    data = _data()
    snapshot_id = _backup(repo, data)
    fresh = _reopen(repo)
    index = fresh.load_index()  # listed while the pack was there
    pack = _packs(repo)[-1]
    pack.unlink()
    snap = fresh.find_snapshot(snapshot_id)
    with SnapshotReader(fresh, index) as reader, pytest.raises(IntegrityError) as caught:
        for entry in reader.entries(snap):
            for _block in reader.blobs(entry.chunks):
                pass
    assert caught.value.exit_code == 13
    assert f"object data/{pack.parent.name}/{pack.name}: missing (named by the index)" \
        in str(caught.value)


def test_a_backup_whose_lock_was_taken_writes_no_snapshot(repo: Repository) -> None:
    """`unlock --force` on a live backup (then, say, a prune): the backup must not make a
    snapshot visible that may reference what the prune deleted."""
    from drsync.errors import RepositoryLocked
    from drsync.repo.lock import remove_lock

    taken = {"done": False}

    def progress(_n: int) -> None:
        if not taken["done"]:
            remove_lock(repo.store)  # what `drsync unlock --force` does
            taken["done"] = True

    with pytest.raises(RepositoryLocked) as info:
        run_backup(repo, BackupRequest(stdin_name="dump", stdin=io.BytesIO(_data(14))),
                   progress=progress)
    assert "the writer lock was taken from this backup stdin:dump while it ran" in str(
        info.value) and info.value.exit_code == 12
    assert _reopen(repo).snapshot_ids() == []
    assert run_backup(_reopen(repo), BackupRequest(stdin_name="dump",
                                                   stdin=io.BytesIO(_data(14)))).exit_code == 0


def test_a_pack_pruned_during_a_restore_is_said_to_be_that(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import drsync.restore
    from drsync.repo.index import index_document, pack_key
    from drsync.repo.objects import TYPE_INDEX

    data = _data(15)
    _backup(repo, data)
    fresh = _reopen(repo)
    doomed = _packs(repo)[0].name

    class PrunedMeanwhile(SnapshotReader):
        """Once the restore has read the index, a prune writes a new one and deletes a
        pack the restore planned to read."""

        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw)  # type: ignore[arg-type]
            fresh.save_document(TYPE_INDEX, "index", index_document([]))
            fresh.store.delete(pack_key(doomed))

    monkeypatch.setattr(drsync.restore, "SnapshotReader", PrunedMeanwhile)
    with pytest.raises(IntegrityError) as info:
        drsync.restore.restore_snapshot(fresh, "latest", target=tmp_path / "out")
    assert str(info.value).endswith("; the repository changed while this restore ran (a "
                                    "prune or repair replaced its index): run the restore "
                                    "again, it resumes with what is stored now")
    assert doomed[:12] in str(info.value)
    # Damage alone (no index changed) is still damage, said as before.
    monkeypatch.setattr(drsync.restore, "SnapshotReader", SnapshotReader)
    with pytest.raises(IntegrityError) as plain:
        drsync.restore.restore_snapshot(_reopen(repo), "latest", target=tmp_path / "out2")
    assert "the repository changed" not in str(plain.value)


def test_check_names_every_lost_pack_an_index_names_a_blob_in(repo: Repository) -> None:
    """After repairs, an old index file may still name a pack taken out earlier, beside the
    one the blob was lost from: both are named, not whichever index was read first."""
    from drsync.repo.index import index_document, index_packs, pack_key
    from drsync.repo.objects import TYPE_INDEX

    snapshot_id = _backup(repo, _data(16))
    pack = _packs(repo)[0]
    [name] = repo.index_names()
    records = index_packs(repo._read_document(TYPE_INDEX, name))
    [(pack_id, size, entries)] = [r for r in records if r[0] == pack.name]
    earlier = "e" * 64  # a pack an earlier repair took out, still named by an old index
    repo.save_document(TYPE_INDEX, "index", index_document([(earlier, size, entries)]))
    repo.store.delete(pack_key(pack_id))
    errors = check_repository(_reopen(repo)).errors
    [line] = [e for e in errors if e.startswith(f"snapshot {snapshot_id[:8]} (")]
    first, second = sorted([pack_id, earlier])
    assert f" in missing packs {first[:12]}…, {second[:12]}…" in line


def test_a_run_record_the_store_refused_is_sent_by_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store down when a run ended: its record waits in the outbox, and the next run
    that stores its own sends it, so a catalog rebuilt from the store misses no run."""
    from drsync.errors import StoreUnavailable
    from drsync.outbox import use_outbox
    from drsync.repo.runs import load_runs, save_run_or_warn
    from drsync.store import MemoryStore

    class DownForRuns(MemoryStore):
        down = True

        def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
            if self.down and key.startswith("runs/"):
                raise StoreUnavailable("memory://: connection refused")
            super().put(key, data, if_absent=if_absent)

    store = DownForRuns()
    repo = make_repo(store)
    use_outbox(tmp_path / "run-outbox")
    try:
        def record(run_id: str, status: str) -> dict[str, object]:
            return {"run_id": run_id, "tenant": "Nobeoka", "host": "h", "kind": "backup",
                    "status": status, "started": "2026-12-07T02:00:00+00:00",
                    "finished": "2026-12-07T02:05:00+00:00"}

        save_run_or_warn(repo, record("a" * 32, "failed"), quiet=True)
        assert load_runs(repo) == []
        assert len(list((tmp_path / "run-outbox").rglob("*.json"))) == 1
        store.down = False
        save_run_or_warn(repo, record("b" * 32, "ok"), quiet=True)
        assert sorted(r["run_id"] for r in load_runs(repo)) == ["a" * 32, "b" * 32]
        assert list((tmp_path / "run-outbox").rglob("*.json")) == []
    finally:
        use_outbox(None)


def test_a_backup_that_failed_because_the_store_did_is_recorded_by_the_next(
        tmp_path: Path) -> None:
    """A backup that failed because the link died kept its record out of the store and
    out of the outbox too (only the local catalog had it): a catalog rebuilt from the
    store showed that night as if nothing had run. Found by an edge hunt."""
    from drsync.errors import StoreError
    from drsync.outbox import use_outbox
    from drsync.repo.runs import load_runs
    from drsync.store import MemoryStore

    class LinkDies(MemoryStore):
        down = False

        def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
            if self.down and key.startswith("data/"):
                raise StoreError("memory://: writing a pack: connection reset (gave up "
                                 "after 4 attempts in 300 s)")
            super().put(key, data, if_absent=if_absent)

    store = LinkDies()
    repo = make_repo(store)
    use_outbox(tmp_path / "run-outbox")
    try:
        store.down = True
        with pytest.raises(StoreError):
            run_backup(repo, BackupRequest(stdin_name="registry.dump",
                                           stdin=io.BytesIO(os.urandom(1 << 20))))
        assert load_runs(repo) == []
        (kept,) = (tmp_path / "run-outbox").rglob("*.json")
        assert json.loads(kept.read_text())["status"] == "failed"
        store.down = False
        run_backup(repo, BackupRequest(stdin_name="registry.dump",
                                       stdin=io.BytesIO(b"night 2")))
        assert sorted(r["status"] for r in load_runs(repo)) == ["failed", "ok"]
        assert "connection reset" in next(r["error"] for r in load_runs(repo)
                                          if r["status"] == "failed")
    finally:
        use_outbox(None)


def test_a_forget_cut_short_has_told_each_delete_that_succeeded() -> None:
    """A forget whose link died after it deleted a snapshot (listing wal/, say) recorded
    nothing forgotten: `check` then called the snapshot rolled back (exit 13), and naming
    it to forget again was "no such snapshot". Found by an edge hunt."""
    from drsync.errors import StoreError
    from drsync.repo.forget import forget
    from drsync.repo.retention import RetentionPolicy
    from drsync.store import MemoryStore

    class DiesAfterDeletes(MemoryStore):
        def list(self, prefix: str = ""):  # type: ignore[no-untyped-def]
            if prefix == "wal/":
                raise StoreError("memory://: listing wal/: connection reset")
            return super().list(prefix)

    repo = make_repo(DiesAfterDeletes())
    older = _backup(repo, b"night 1")
    _backup(repo, b"night 2")
    told: list[str] = []
    with pytest.raises(StoreError, match="listing wal/"):
        forget(repo, RetentionPolicy(), snapshots=[older], on_removed=told.append)
    assert told == [older] and older not in repo.snapshot_ids()
