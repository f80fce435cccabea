"""`key rotate --reencrypt`: after it, the old generation's key decrypts no pack or WAL file;
snapshots restore unchanged; a run killed part-way is finished by the next."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drsync.repo import KeyFile, RepoConfig, Repository, Secret, Snapshot, SnapshotReader
from drsync.repo.check import check_repository
from drsync.repo.crypto import MasterKey
from drsync.repo.objects import FormatError
from drsync.repo.pack import read_pack_header
from drsync.repo.reencrypt import old_packs, reencrypt
from drsync.repo.wal import open_wal, parse_wal_header, seal_wal, wal_key
from drsync.store import MemoryStore
from drsync.testing import backup_bytes, make_repository

SEGMENT = "000000010000000000000007"


class KilledStore(MemoryStore):
    """Stops the run (as a kill would, from the store's view: nothing after it is written) at
    the n-th delete of a pack. Unlike a SIGKILL the lock is released on the way out."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.deletes_left: int | None = None

    def delete(self, key: str) -> None:
        if key.startswith("data/") and self.deletes_left is not None:
            if self.deletes_left == 0:
                raise KeyboardInterrupt("killed")
            self.deletes_left -= 1
        super().delete(key)


def _read(repo: Repository, snap: Snapshot) -> bytes:
    with SnapshotReader(repo) as reader:
        return b"".join(b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap))


def _tenant(tmp_path: Path) -> tuple[KilledStore, KeyFile, MasterKey, list[tuple[Snapshot,
                                                                                 bytes]]]:
    store = KilledStore("memory://tenant")
    config = RepoConfig(chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10,
                        pack_size=1 << 20)
    make_repository(store, None, tmp_path / "agent.key", config=config)
    agent = KeyFile.load(tmp_path / "agent.key")
    repo = Repository.open(store, Secret(key_file=agent))
    snaps = []
    for n in range(2):
        data = os.urandom(3 << 20) + b"shared tail" * 20000
        snaps.append((backup_bytes(repo, data, f"dump-{n}"), data))
    store.put(wal_key(SEGMENT), seal_wal(repo.key, SEGMENT, b"wal record" * 5000))
    leaked = repo.key
    repo.rotate(Secret(key_file=agent))
    return store, agent, leaked, snaps


def _assert_old_key_reads_nothing(store: MemoryStore, leaked: MasterKey) -> None:
    for name, data in store.objects.items():
        if name.startswith("data/"):
            with pytest.raises(FormatError):
                read_pack_header(leaked, data)
    with pytest.raises(FormatError):
        open_wal(leaked, store.objects[wal_key(SEGMENT)], SEGMENT)


def test_after_reencrypt_the_old_key_decrypts_nothing_and_all_restores(tmp_path: Path) -> None:
    store, agent, leaked, snaps = _tenant(tmp_path)
    wal_before = store.objects[wal_key(SEGMENT)]
    repo = Repository.open(store, Secret(key_file=agent))
    pending = old_packs(repo, repo.load_index())
    assert len(pending) >= 6
    seen: list[int] = []
    result = reencrypt(repo, progress=seen.append)
    assert result.packs_rewritten == len(pending) and sum(seen) == result.bytes_rewritten
    assert result.wal_rewritten == 1 and result.indexes_removed >= 1 and not result.retained
    _assert_old_key_reads_nothing(store, leaked)
    head = parse_wal_header(store.objects[wal_key(SEGMENT)])
    assert head == parse_wal_header(wal_before)  # name, content id, size, push time kept
    fresh = Repository.open(store, Secret(key_file=agent))
    assert open_wal(fresh.key, store.objects[wal_key(SEGMENT)], SEGMENT)[1] == \
        b"wal record" * 5000
    for snap, data in snaps:
        assert _read(fresh, fresh.load_snapshot(snap.id)) == data
    report = check_repository(fresh, read_data=True)
    assert report.ok and not report.notes, (report.errors, report.notes)
    assert reencrypt(fresh).packs_rewritten == 0  # nothing left to do


def test_a_killed_reencrypt_leaves_a_readable_repository_the_next_run_finishes(
        tmp_path: Path) -> None:
    store, agent, leaked, snaps = _tenant(tmp_path)
    repo = Repository.open(store, Secret(key_file=agent))
    total = len(old_packs(repo, repo.load_index()))
    store.deletes_left = 3  # killed while deleting the fourth old pack
    with pytest.raises(KeyboardInterrupt):
        reencrypt(repo)
    store.deletes_left = None
    fresh = Repository.open(store, Secret(key_file=agent))
    for snap, data in snaps:
        assert _read(fresh, fresh.load_snapshot(snap.id)) == data
    assert check_repository(fresh, read_data=True).ok
    assert 0 < len(old_packs(fresh, fresh.load_index())) < total
    reencrypt(fresh)
    _assert_old_key_reads_nothing(store, leaked)
    again = Repository.open(store, Secret(key_file=agent))
    for snap, data in snaps:
        assert _read(again, again.load_snapshot(snap.id)) == data
    assert check_repository(again, read_data=True).ok


def test_a_damaged_blob_stops_reencrypt_naming_it_and_deletes_nothing(tmp_path: Path) -> None:
    store, agent, _leaked, _snaps = _tenant(tmp_path)
    repo = Repository.open(store, Secret(key_file=agent))
    name = sorted(k for k in store.objects if k.startswith("data/"))[0]
    data = bytearray(store.objects[name])
    data[10] ^= 1
    store.objects[name] = bytes(data)
    before = set(store.objects)
    with pytest.raises(Exception, match=name):
        reencrypt(repo)
    assert {k for k in before if k.startswith("data/")} <= set(store.objects)
