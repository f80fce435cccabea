"""One contract, every backend: the layers above rely on exactly this."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drsync.errors import ObjectExists, ObjectNotFound, StoreError, UsageError
from drsync.store import LocalStore, MemoryStore, S3Options, Store, StoreOptions, open_store
from tests.helpers import mounted
from tests.store.conftest import new_bucket

PART = 64 * 1024  # small multipart parts, so the contract covers multipart too


def s3_options(endpoint: str | None, **s3: object) -> StoreOptions:
    return StoreOptions(s3=S3Options(endpoint_url=endpoint, part_size=PART, **s3),  # type: ignore[arg-type]
                        retry_deadline=5)


@pytest.fixture(params=["local", "memory", "s3-mock", "s3-http", "s3-http-claims", "s3-minimal"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    elif request.param == "memory":
        yield MemoryStore()
    elif request.param == "s3-mock":
        # moto in process: boto3's requests never leave the process.
        request.getfixturevalue("in_process_s3")
        bucket = new_bucket(None)
        yield open_store(f"s3://{bucket}/tenant-a", s3_options(None))
    elif request.param == "s3-minimal":
        # s3rver: a second implementation, without If-None-Match (conditional writes are
        # probed and found missing), ListMultipartUploads, versioning or Object Lock.
        bucket = request.getfixturevalue("minimal_bucket")
        endpoint = request.getfixturevalue("minimal_endpoint")
        store = open_store(f"s3://{bucket}/tenant-a", s3_options(endpoint))
        yield store
        store.close()
    else:
        # moto's threaded server: boto3 speaks real HTTP on loopback. The claims
        # variant switches conditional writes off, so put-if-absent uses the
        # fallback protocol.
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = new_bucket(endpoint)
        mode = "off" if request.param == "s3-http-claims" else "auto"
        store = open_store(f"s3://{bucket}/tenant-a",
                           s3_options(endpoint, conditional_writes=mode))
        yield store
        store.close()


def test_put_get_roundtrip(store: Store) -> None:
    store.put("data/ab/abc", b"hello world")
    assert store.get("data/ab/abc") == b"hello world"
    assert store.stat("data/ab/abc").size == 11


def test_ranged_get(store: Store) -> None:
    store.put("k", bytes(range(100)))
    assert store.get("k", 10, 5) == bytes(range(10, 15))
    assert store.get("k", 95) == bytes(range(95, 100))
    assert store.get("k", 98, 10) == bytes([98, 99])


def test_put_replaces_unless_if_absent(store: Store) -> None:
    store.put("lock", b"one")
    store.put("lock", b"two")
    assert store.get("lock") == b"two"
    with pytest.raises(ObjectExists, match="lock"):
        store.put("lock", b"three", if_absent=True)
    assert store.get("lock") == b"two"
    store.put("fresh", b"x", if_absent=True)
    assert store.get("fresh") == b"x"


def test_missing_objects(store: Store) -> None:
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get("nope")
    with pytest.raises(ObjectNotFound):
        store.stat("nope")
    assert not store.exists("nope")
    store.delete("nope")  # deleting an absent key is fine


def test_list_by_prefix(store: Store) -> None:
    for key in ("data/aa/1", "data/ab/2", "index/3", "snapshots/4", "config"):
        store.put(key, key.encode())
    assert sorted(i.key for i in store.list("data/")) == ["data/aa/1", "data/ab/2"]
    assert sorted(i.key for i in store.list("index/")) == ["index/3"]
    assert len(list(store.list(""))) == 5
    assert list(store.list("keys/")) == []
    assert {i.key: i.size for i in store.list("snapshots/")} == {"snapshots/4": 11}


def test_large_objects_and_ranges_across_parts(store: Store) -> None:
    data = os.urandom(3 * PART + 1234)
    store.put("data/big", data)
    assert store.get("data/big") == data
    assert store.stat("data/big").size == len(data)
    assert store.get("data/big", PART - 10, 20) == data[PART - 10 : PART + 10]
    assert store.get("data/big", len(data) - 5) == data[-5:]
    assert store.get("data/big", len(data)) == b""
    with pytest.raises(ObjectExists):
        store.put("data/big", data[:10] * 100_000, if_absent=True)
    assert store.get("data/big") == data
    store.put("data/big2", data, if_absent=True)
    assert store.get("data/big2") == data


def test_keys_with_a_shared_prefix_stay_apart(store: Store) -> None:
    store.put("index/ab", b"1")
    store.put("index/abc", b"22")
    assert sorted((i.key, i.size) for i in store.list("index/ab")) == [
        ("index/ab", 1), ("index/abc", 2)]
    assert store.get("index/ab") == b"1"


def test_delete(store: Store) -> None:
    store.put("a/b", b"1")
    store.delete("a/b")
    assert not store.exists("a/b")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../x", "a/../b", "a/./b", ".hidden",
                                 "a/.tmp-x", "a b", "a\\b", "x" * 600])
def test_invalid_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(StoreError, match="invalid object key"):
        store.put(key, b"x")
    with pytest.raises(StoreError, match="invalid object key"):
        store.get(key)


def test_local_put_leaves_no_temporaries(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("data/aa/x", b"1" * 1000)
    store.put("data/aa/x", b"2" * 10, if_absent=False)
    with pytest.raises(ObjectExists):
        store.put("data/aa/x", b"3", if_absent=True)
    assert sorted(os.listdir(tmp_path / "data" / "aa")) == ["x"]


def test_local_list_ignores_interrupted_temporaries_and_reports_stale_ones(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("data/aa/x", b"1")
    stale = tmp_path / "data" / "aa" / ".tmp-deadbeef"
    stale.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    fresh = tmp_path / "data" / "aa" / ".tmp-inflight"  # maybe a concurrent put: left alone
    fresh.write_bytes(b"writing")
    assert [i.key for i in store.list("data/")] == ["data/aa/x"]
    (pending,) = store.pending_uploads()
    assert pending.key == "data/aa/.tmp-deadbeef" and pending.bytes_stored == 4
    store.abort_upload(pending)
    assert not stale.exists() and fresh.exists()
    assert store.pending_uploads() == []


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs, so 'disk full' is the kernel's ENOSPC, not a fake."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=256k", "tmpfs"], mount_point, "a 256 KiB tmpfs"):
        yield mount_point


def test_local_full_disk_is_one_clear_error_and_leaves_nothing(tiny_fs: Path) -> None:
    store = LocalStore(tiny_fs / "repo")
    store.put("config", b"small")
    with pytest.raises(StoreError) as info:
        store.put("data/aa/big", os.urandom(1 << 20))
    assert "no space left on device" in str(info.value)
    assert "data/aa/big" in str(info.value)
    assert not store.exists("data/aa/big")
    assert [p.name for p in (tiny_fs / "repo" / "data" / "aa").iterdir()] == []
    assert store.get("config") == b"small"


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    store = open_store(f"file://{tmp_path}/repo")
    assert isinstance(store, LocalStore)
    assert store.url == f"{tmp_path}/repo"
    with pytest.raises(UsageError, match="scheme"):
        open_store("ftp://host/x")
    with pytest.raises(UsageError, match="host"):
        open_store("file://otherhost/x")


@pytest.mark.parametrize(("code", "words"), [
    (errno.ESTALE, "stale file handle (network filesystem remounted?)"),
    (errno.ENOSPC, "no space left on device"),
    (errno.EDQUOT, "disk quota exceeded"),
    (errno.EROFS, "read-only filesystem"),
    (errno.EACCES, "permission denied"),
])
def test_local_errors_of_a_mounted_directory_are_named(code: int, words: str) -> None:
    """What an NFS mount of the secondary data center fails with, as one clear line."""
    from drsync.store.local import _describe

    assert _describe(OSError(code, os.strerror(code)), "/mnt/dc2: writing data/aa/x") == (
        f"/mnt/dc2: writing data/aa/x: {words}")


def test_local_put_never_renames_across_directories(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """NFS makes a rename atomic only within one directory: temporaries live beside
    their target."""
    seen: list[tuple[str, str]] = []
    real_replace, real_link = os.replace, os.link

    def replace(src: str, dst: str) -> None:
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    def link(src: str, dst: str) -> None:
        seen.append((str(src), str(dst)))
        real_link(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    store = LocalStore(tmp_path)
    store.put("data/ab/pack", b"1")
    store.put("lock", b"2", if_absent=True)
    assert len(seen) == 2
    assert all(os.path.dirname(a) == os.path.dirname(b) for a, b in seen)


# -- staged objects (drsync.store.capabilities.stage): a pack written before its name --


def _every_name(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_staged_object_is_committed_whole_or_not_at_all(store: Store) -> None:
    from drsync.store.capabilities import stage

    body = os.urandom(300_000)
    staged = stage(store, "data/", 1 << 20)
    staged.write(body[:1000])
    staged.write(body[1000:])
    assert not store.exists("data/ab/staged")  # nothing under the name before commit
    staged.commit("data/ab/staged")
    assert store.get("data/ab/staged") == body
    assert store.stat("data/ab/staged").size == len(body)  # the preallocation given back
    dropped = stage(store, "data/", 1 << 20)
    dropped.write(b"never stored")
    dropped.abort()
    assert [o.key for o in store.list("data/")] == ["data/ab/staged"]


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_local_staged_object_is_linked_into_place_not_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anonymous: bool) -> None:
    """The bytes are written once: the stored object is the staged file itself (its
    inode), renamed only within its own directory, and no temporary is left anywhere."""
    import drsync.store.local as local
    from drsync.store.capabilities import stage

    if not anonymous:  # a filesystem without O_TMPFILE (NFS): a hidden named temporary
        monkeypatch.setattr(local, "_ANONYMOUS_FLAGS", os.O_RDWR | os.O_CLOEXEC)
    store = LocalStore(tmp_path / "repo")
    store.put("config", b"c")
    replaced: list[tuple[object, object, object, object]] = []
    real_replace = os.replace

    def replace(src: str, dst: str, *, src_dir_fd: int | None = None,
                dst_dir_fd: int | None = None) -> None:
        replaced.append((os.path.dirname(src), os.path.dirname(dst), src_dir_fd, dst_dir_fd))
        real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store, "put", lambda *a, **k: pytest.fail("the object was copied"))
    staged = stage(store, "data/", 16 << 20)
    staged.write(b"pack bytes" * 1000)
    inode = os.fstat(staged.file.fileno()).st_ino
    hidden = [n for n in _every_name(tmp_path / "repo") if n.startswith("data/")]
    assert hidden == ([] if anonymous else [hidden[0]])  # only a .tmp- one, if named
    staged.commit("data/cd/pack")
    assert (tmp_path / "repo" / "data" / "cd" / "pack").stat().st_ino == inode
    assert replaced == [("", "", replaced[0][2], replaced[0][2])]  # one directory, by fd
    assert _every_name(tmp_path / "repo") == ["config", "data/cd/pack"]


def test_a_committed_pack_leaves_the_page_cache(tmp_path: Path) -> None:
    """Once fsynced, a staged pack's pages are dropped (a backup writes its packs once
    and does not read them back): the next packs reuse those pages, and a backup does not
    fill the host's page cache with its output. Its bytes are all there."""
    from drsync.store.capabilities import stage
    from tests.helpers import can_drop_cached_pages, resident_bytes

    if not can_drop_cached_pages(tmp_path):
        pytest.skip(f"{tmp_path} keeps every page in memory (tmpfs): nothing to drop")
    store = LocalStore(tmp_path / "repo")
    payload = os.urandom(8 << 20)
    staged = stage(store, "data/", 16 << 20)
    staged.write(payload)
    staged.commit("data/cd/pack")
    stored = tmp_path / "repo" / "data" / "cd" / "pack"
    assert resident_bytes(stored) < 1 << 20
    assert store.get("data/cd/pack") == payload


def test_local_staging_on_a_full_disk_is_one_clear_error_and_leaves_nothing(
        tiny_fs: Path) -> None:
    from drsync.store.capabilities import stage

    store = LocalStore(tiny_fs / "repo")
    store.put("config", b"small")
    with pytest.raises(StoreError) as info:  # the preallocation fails at once
        stage(store, "data/", 1 << 20)
    assert str(info.value) == (f"{tiny_fs / 'repo'}: writing an object in data/: "
                               "no space left on device")
    staged = stage(store, "data/")  # no preallocation: the write fails instead
    with pytest.raises(StoreError, match="writing an object in data/: no space left"):
        for _ in range(64):
            staged.write(os.urandom(64 << 10))
    staged.abort()
    assert _every_name(tiny_fs / "repo") == ["config"]
    assert store.get("config") == b"small"


def test_a_wrapped_local_store_stages_through_its_wrapper(tmp_path: Path) -> None:
    """A throttle around a local directory must see every byte: its put is used."""
    from drsync.store.capabilities import Staged, stage
    from drsync.store.throttle import ThrottledStore, TokenBucket

    throttled = ThrottledStore(LocalStore(tmp_path / "repo"), TokenBucket(1e9), None)
    staged = stage(throttled, "data/", 1 << 20)
    assert type(staged) is Staged  # the temporary file put whole, through the throttle
    staged.write(b"x" * 5000)
    staged.commit("data/ef/pack")
    assert throttled.get("data/ef/pack") == b"x" * 5000


def test_local_named_staging_removed_meanwhile_is_still_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a pack is staged under a hidden name (no O_TMPFILE), a cleanup that removes
    it as a stale temporary does not lose it: the descriptor still holds the bytes."""
    import drsync.store.local as local
    from drsync.store.capabilities import stage

    monkeypatch.setattr(local, "_ANONYMOUS_FLAGS", os.O_RDWR | os.O_CLOEXEC)
    store = LocalStore(tmp_path / "repo")
    staged = stage(store, "data/", 1 << 20)
    staged.write(b"slow pack" * 5000)
    old = time.time() - 7200
    for name in _every_name(tmp_path / "repo"):
        os.utime(tmp_path / "repo" / name, (old, old))
    for upload in store.pending_uploads():  # what check --cleanup-uploads does
        store.abort_upload(upload)
    assert _every_name(tmp_path / "repo") == []
    staged.commit("data/aa/slow")
    assert store.get("data/aa/slow") == b"slow pack" * 5000
    assert _every_name(tmp_path / "repo") == ["data/aa/slow"]
