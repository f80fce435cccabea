"""Master-key rotation: a new generation without re-upload; old data stays readable, a
removed wrapping opens nothing, dedup survives."""

from __future__ import annotations

import json
import os

import pytest

from drsync.errors import IntegrityError, UsageError, WrongKey
from drsync.repo import KeyFile, Repository, Secret, Snapshot, SnapshotReader
from drsync.repo.crypto import GENERATION_FLAG, MasterKey
from drsync.repo.escrow import EscrowKeyPair
from drsync.repo.index import pack_key
from drsync.repo.objects import HEADER_SIZE
from drsync.store import MemoryStore
from drsync.testing import FAST_KDF, backup_bytes, make_repository


def _read(repo: Repository, snap: Snapshot) -> bytes:
    with SnapshotReader(repo) as reader:
        return b"".join(b"".join(reader.blobs(e.chunks)) for e in reader.entries(snap))


def _sealed_generations(repo: Repository, snap: Snapshot) -> set[int]:
    """The generation of every blob of the snapshot's streams, read from the stored bytes."""
    index = repo.load_index()
    with SnapshotReader(repo) as reader:
        chunks = [c for e in reader.entries(snap) for c in e.chunks]
    found = set()
    for chunk in chunks:
        loc = index.get(bytes.fromhex(chunk))
        assert loc is not None
        sealed = repo.store.get(pack_key(loc.pack_id), loc.offset, loc.length)
        found.add(MasterKey.sealed_generation(sealed))
    return found


def _chunks(repo: Repository, snap: Snapshot) -> list[str]:
    with SnapshotReader(repo) as reader:
        return [c for e in reader.entries(snap) for c in e.chunks]


def _data_objects(store: MemoryStore) -> dict[str, bytes]:
    return {k: v for k, v in store.objects.items() if k.startswith("data/")}


@pytest.fixture
def tenant(tmp_path: os.PathLike[str]) -> tuple[MemoryStore, KeyFile, KeyFile]:
    store = MemoryStore("memory://tenant")
    repo = make_repository(store, None, os.path.join(tmp_path, "agent.key"))
    leaked = repo.add_key_file()
    return store, KeyFile.load(os.path.join(tmp_path, "agent.key")), leaked


def test_rotate_new_data_new_generation_old_data_readable_dedup_kept(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    repo = Repository.open(store, Secret(key_file=agent))
    # 9 MiB: chunks are at most 4 MiB, so at least one ends well inside it and is the same
    # chunk in the second backup, wherever this repository's seeded chunker cuts (3 MiB
    # was sometimes one chunk, which the appended data then changed).
    first = os.urandom(9 << 20)
    old = backup_bytes(repo, first)
    assert _sealed_generations(repo, old) == {0}
    assert all(b[HEADER_SIZE] < GENERATION_FLAG for b in _data_objects(store).values())
    # Rotation refuses while a wrapping it cannot re-wrap is there.
    with pytest.raises(UsageError, match=second.key_id):
        repo.rotate(Secret(key_file=agent))
    before = _data_objects(store)
    done = repo.rotate(Secret(key_file=agent), key_files=(second,))
    assert (done.old_generation, done.generation) == (0, 1) and not done.removed
    assert _data_objects(store) == before  # nothing re-uploaded or rewritten

    blobs_before = len(repo.load_index())
    new = backup_bytes(repo, first + os.urandom(1 << 20))
    assert _sealed_generations(repo, new) == {0, 1}  # the old chunks deduplicated
    # Dedup kept: every chunk of the old backup but its last is in the new one, and the
    # index grew by exactly the new backup's chunks it did not have, and its tree. (A
    # fixed bound of 4 new blobs failed when the re-cut tail made four data chunks.)
    old_chunks, new_chunks = _chunks(repo, old), _chunks(repo, new)
    assert set(old_chunks[:-1]) <= set(new_chunks)
    added = set(new_chunks) - set(old_chunks)  # the re-cut old last chunk and the tail
    assert len(repo.load_index()) - blobs_before == len(added) + len(new.tree)

    for kf in (agent, second):
        fresh = Repository.open(store, Secret(key_file=kf))
        assert fresh.key.generation == 1
        assert _read(fresh, fresh.load_snapshot(old.id)) == first
        assert _read(fresh, fresh.load_snapshot(new.id))[: len(first)] == first


def test_a_leaked_key_file_is_cut_off_without_rewriting_data(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, leaked = tenant
    repo = Repository.open(store, Secret(key_file=agent))
    pair = EscrowKeyPair.generate()
    repo.add_escrow(pair.public)
    data = os.urandom(2 << 20)
    old = backup_bytes(repo, data)
    packs = _data_objects(store)
    done = repo.rotate(Secret(key_file=agent), remove_others=True)
    assert [w.key_id for w in done.removed if w.kind == "keyfile"] == [leaked.key_id]
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(key_file=leaked))
    newer = backup_bytes(repo, b"after the leak" * 10000)
    assert set(packs) <= set(_data_objects(store))  # old packs untouched
    for secret in (Secret(key_file=agent), Secret(escrow_key=pair)):
        fresh = Repository.open(store, secret)
        assert fresh.key.generation == 1
        assert _read(fresh, fresh.load_snapshot(old.id)) == data
        assert _read(fresh, fresh.load_snapshot(newer.id)) == b"after the leak" * 10000
    assert sorted((w.kind, w.generation) for w in fresh.wrappings()) == \
        [("escrow", 1), ("keyfile", 1)]


def test_removing_an_old_wrapping_after_rotation_takes_effect_at_once(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    repo = Repository.open(store, Secret(key_file=agent))
    data = os.urandom(1 << 20)
    snap = backup_bytes(repo, data)
    repo.rotate(Secret(key_file=agent), key_files=(second,))
    repo.remove_wrapping(second.key_id)
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(key_file=second))
    assert _read(Repository.open(store, Secret(key_file=agent)), snap) == data


def test_passphrase_rotation_twice_and_a_stale_wrapping_is_refused() -> None:
    store = MemoryStore("memory://tenant")
    make_repository(store, "words")
    repo = Repository.open(store, Secret(passphrase="words"))
    stale = {k: v for k, v in store.objects.items() if k.startswith("keys/")}
    snap = backup_bytes(repo, b"generation zero" * 5000)
    repo.rotate(Secret(passphrase="words"), kdf=FAST_KDF)
    repo.rotate(Secret(passphrase="words"), kdf=FAST_KDF)
    fresh = Repository.open(store, Secret(passphrase="words"))
    assert fresh.key.generation == 2 and [g for g, _ in fresh.key.older] == [1, 0]
    assert _read(fresh, snap) == b"generation zero" * 5000
    later = backup_bytes(fresh, b"generation two" * 5000)
    # A wrapping of generation 0 put back (an old copy) opens generation 0 only: it cannot
    # read what generation 2 sealed, and rotating from it is refused.
    store.objects.update(stale)
    old_id = next(iter(stale)).removeprefix("keys/")
    store.objects = {k: v for k, v in store.objects.items()
                     if not k.startswith("keys/") or k == f"keys/{old_id}"}
    from_stale = Repository.open(store, Secret(passphrase="words"))
    assert from_stale.key.generation == 0
    with pytest.raises(IntegrityError, match="generation 2"):
        from_stale.load_snapshot(later.id)
    with pytest.raises(UsageError, match="generation 2"):
        from_stale.rotate(Secret(passphrase="words"), kdf=FAST_KDF)


def test_a_wrappings_generation_field_is_authenticated(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    Repository.open(store, Secret(key_file=agent)).rotate(Secret(key_file=agent),
                                                           key_files=(second,))
    name = f"keys/{agent.key_id}"
    doc = json.loads(store.objects[name][HEADER_SIZE:])
    doc["generation"] = 0
    store.objects[name] = store.objects[name][:HEADER_SIZE] + json.dumps(doc).encode()
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(key_file=agent))


def test_a_missing_generations_document_is_named(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    Repository.open(store, Secret(key_file=agent)).rotate(Secret(key_file=agent),
                                                           key_files=(second,))
    del store.objects["generations/1"]
    with pytest.raises(IntegrityError, match="generations/1: missing"):
        Repository.open(store, Secret(key_file=agent))


def test_rotate_refuses_a_key_file_that_does_not_open_the_repository(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    repo = Repository.open(store, Secret(key_file=agent))
    forged = KeyFile(second.repo_id, second.key_id, bytes(32))
    with pytest.raises(WrongKey, match=second.key_id):
        repo.rotate(Secret(key_file=agent), key_files=(forged,))
    assert "generations/1" not in store.objects


def test_wal_sealed_before_a_rotation_is_fetched_with_the_rotated_key_file(
        tenant: tuple[MemoryStore, KeyFile, KeyFile], tmp_path: os.PathLike[str]) -> None:
    from drsync.repo.wal import open_wal, seal_wal
    from drsync.wal.push import spool_key

    store, agent, second = tenant
    repo = Repository.open(store, Secret(key_file=agent))
    segment = "000000010000000000000001"
    before = seal_wal(repo.key, segment, b"wal of generation 0" * 100)
    repo.rotate(Secret(key_file=agent), key_files=(second,))
    after = seal_wal(repo.key, segment, b"wal of generation 1" * 100)
    path = os.path.join(tmp_path, "agent.key")
    # wal-fetch's path: the key file's wrapping alone holds generation 1 only; reading
    # takes the full open, which adds the older generations.
    key = spool_key(None, path, lambda kf: store.get(f"keys/{kf.key_id}"),
                    lambda: Repository.open(store, Secret(key_file=agent)).key, cache=False)
    assert key.generation == 1
    assert open_wal(key, before, segment)[1] == b"wal of generation 0" * 100
    assert open_wal(key, after, segment)[1] == b"wal of generation 1" * 100
    pushed = spool_key(None, path, lambda kf: store.get(f"keys/{kf.key_id}"),
                       lambda: pytest.fail("wal-push must not open the repository"))
    assert pushed.generation == 1 and not pushed.older  # sealing needs only the newest


class _Killed(Exception):
    """Stands for SIGKILL: the rotate stops right after one put (nothing else runs)."""


class _DiesAfter(MemoryStore):
    def __init__(self, objects: dict[str, bytes], prefix: str, nth: int = 1) -> None:
        super().__init__("memory://tenant")
        self.objects = objects
        self.prefix, self.left = prefix, nth

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        super().put(key, data, if_absent=if_absent)
        if key.startswith(self.prefix):
            self.left -= 1
            if self.left == 0:
                raise _Killed(key)


def test_a_rotate_killed_before_any_wrapping_of_the_new_generation_is_run_again(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    snap = backup_bytes(Repository.open(store, Secret(key_file=agent)), b"before" * 9000)
    dying = _DiesAfter(store.objects, "generations/")
    with pytest.raises(_Killed):
        Repository.open(dying, Secret(key_file=agent)).rotate(Secret(key_file=agent),
                                                               key_files=(second,))
    assert "generations/1" in store.objects  # nobody holds that key now
    again = Repository.open(store, Secret(key_file=agent))
    done = again.rotate(Secret(key_file=agent), key_files=(second,))
    assert (done.old_generation, done.generation) == (0, 1)
    for kf in (agent, second):
        opened = Repository.open(store, Secret(key_file=kf))
        assert opened.key.generation == 1 and _read(opened, snap) == b"before" * 9000


def test_a_rotate_killed_between_two_key_files_finishes_from_the_rewrapped_one(
        tenant: tuple[MemoryStore, KeyFile, KeyFile]) -> None:
    store, agent, second = tenant
    snap = backup_bytes(Repository.open(store, Secret(key_file=agent)), b"before" * 9000)
    dying = _DiesAfter(store.objects, "keys/")
    with pytest.raises(_Killed):
        Repository.open(dying, Secret(key_file=agent)).rotate(Secret(key_file=agent),
                                                               key_files=(second,))
    gens = {w.key_id: w.generation for w in Repository.open(
        store, Secret(key_file=agent)).wrappings()}
    new, old = ((agent, second) if gens[agent.key_id] == 1 else (second, agent))
    assert gens[new.key_id] == 1 and gens[old.key_id] == 0  # both still open it
    # From the key still at the old generation: refused, naming the one that holds the new.
    with pytest.raises(UsageError, match=f"keyfile {new.key_id}"):
        Repository.open(store, Secret(key_file=old)).rotate(Secret(key_file=old),
                                                             key_files=(new,))
    # From the re-wrapped one, the other given along: finished (a new generation for both).
    done = Repository.open(store, Secret(key_file=new)).rotate(Secret(key_file=new),
                                                                key_files=(old,))
    assert done.generation == 2 and not done.removed
    for kf in (agent, second):
        opened = Repository.open(store, Secret(key_file=kf))
        assert opened.key.generation == 2 and _read(opened, snap) == b"before" * 9000
