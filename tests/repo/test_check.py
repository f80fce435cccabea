"""Corruption and tampering: detected, named (object and offset), never restored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drsync.errors import IntegrityError
from drsync.repo import Repository, Secret, SnapshotReader
from drsync.repo.check import check_repository
from drsync.store import LocalStore
from drsync.testing import backup_bytes, make_repo, text_like

MiB = 1 << 20


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 * 1024,
                     chunk_min=16 * 1024, chunk_max=256 * 1024, pack_size=MiB)
    backup_bytes(repo, text_like(2 * MiB, seed=5) + os.urandom(2 * MiB))
    return repo


def _files(repo: Repository, prefix: str) -> list[Path]:
    root = Path(repo.store.url)
    return sorted(root / i.key for i in repo.store.list(prefix))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _restore_all(repo: Repository) -> bytes:
    fresh = Repository.open(repo.store, Secret(passphrase="test passphrase"))
    snap = fresh.find_snapshot("latest")
    with SnapshotReader(fresh) as reader:
        return b"".join(b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap))


def test_clean_repository_checks_ok(repo: Repository) -> None:
    report = check_repository(repo, read_data=True)
    assert report.ok, report.errors
    assert report.snapshots == 1 and report.packs >= 2
    assert report.bytes_verified == sum(i.size for i in repo.store.list("data/"))


def test_flipped_byte_in_a_pack_is_named_with_offset(repo: Repository) -> None:
    pack = _files(repo, "data/")[0]
    _flip(pack, 200)
    report = check_repository(repo, read_data=True)
    key = f"data/{pack.parent.name}/{pack.name}"
    assert any(key in e and "content does not match" in e for e in report.errors)
    assert any(f"{key} offset 6:" in e and "authentication failed" in e for e in report.errors)
    with pytest.raises(IntegrityError, match=key):
        _restore_all(repo)
    # Without --read-data the structure still looks fine: only reading finds a flipped byte.
    assert check_repository(repo).ok


def test_truncated_pack(repo: Repository) -> None:
    pack = _files(repo, "data/")[-1]
    pack.write_bytes(pack.read_bytes()[:-500])
    report = check_repository(repo)
    assert any("truncated" in e and pack.name in e for e in report.errors), report.errors


def test_flipped_byte_in_an_index(repo: Repository) -> None:
    index = _files(repo, "index/")[0]
    _flip(index, 40)
    report = check_repository(repo)
    assert any(f"index/{index.name}" in e and "does not match its name" in e
               for e in report.errors), report.errors


def test_flipped_byte_in_a_snapshot(repo: Repository) -> None:
    snap = _files(repo, "snapshots/")[0]
    _flip(snap, 30)
    report = check_repository(repo)
    assert any(f"snapshots/{snap.name}" in e for e in report.errors), report.errors
    with pytest.raises(IntegrityError, match=f"snapshots/{snap.name}"):
        repo.find_snapshot("latest")


def test_tampering_that_keeps_names_consistent_is_caught_by_authentication(
        repo: Repository) -> None:
    # Rewrite a snapshot object and rename it to its new hash: the name check passes,
    # the AEAD tag does not.
    snap = _files(repo, "snapshots/")[0]
    data = bytearray(snap.read_bytes())
    data[-3] ^= 0xFF
    import hashlib

    forged = snap.with_name(hashlib.sha256(bytes(data)).hexdigest())
    forged.write_bytes(bytes(data))
    snap.unlink()
    report = check_repository(repo)
    assert any(forged.name in e and "authentication failed" in e for e in report.errors)


def test_missing_pack_is_an_error(repo: Repository) -> None:
    pack = _files(repo, "data/")[0]
    os.unlink(pack)
    report = check_repository(repo)
    assert any(pack.name in e and "missing" in e for e in report.errors)


def test_unreferenced_pack_is_a_note_not_an_error(repo: Repository) -> None:
    stray = Path(repo.store.url) / "data" / "ff" / ("ff" * 32)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"DRSYP\x01 leftover of an interrupted run")
    report = check_repository(repo)
    assert report.ok
    assert any("unreferenced pack" in n and stray.name in n for n in report.notes)


class _LinkDown(LocalStore):
    """The link drops (past the retry deadline: the StoreError RetryStore gives up with)
    for every read under ``prefix``."""

    def __init__(self, root: str, prefix: str) -> None:
        super().__init__(root)
        self.prefix = prefix

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith(self.prefix):
            from drsync.errors import StoreError

            raise StoreError(f"{self.url}: reading {key}: ConnectionClosedError (gave up "
                             "reading after 3 attempts in 6 s; the retry deadline is 6 s)")
        return super().get(key, offset, length)


@pytest.mark.parametrize("prefix", ["data/", "snapshots/", "keys/"])
def test_a_store_that_cannot_be_reached_is_its_error_not_damage(repo: Repository,
                                                                 prefix: str) -> None:
    """A link cut during check made it report every pack it could not read as damaged and
    every snapshot as "cannot be fully restored" (exit 13), which a check once the link
    was back called clean. Found by an edge hunt."""
    from drsync.errors import StoreError

    link = _LinkDown(repo.store.url, "nothing/")
    down = Repository.open(link, Secret(passphrase="test passphrase"))
    link.prefix = prefix  # down once the repository is open
    with pytest.raises(StoreError, match="ConnectionClosedError") as info:
        check_repository(down, read_data=True)
    assert type(info.value) is StoreError  # exit 14, the store's, not 13
    # A pack that is gone is still damage, named as such.
    (pack,) = _files(repo, "data/")[:1]
    pack.unlink()
    report = check_repository(repo, read_data=True)
    assert not report.ok and any("missing" in e for e in report.errors), report.errors
