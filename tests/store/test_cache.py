"""The local cache of a remote repository's documents (drsync.store.cache): read once,
then served from disk, verified by name, pruned by listings, never in check's way."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drsync.repo import Repository, Secret
from drsync.store import MemoryStore, S3Options, StoreOptions, open_store
from drsync.store.cache import CachedStore, cache_directory
from drsync.store.capabilities import capability
from drsync.store.local import LocalStore
from drsync.testing import CountingStore, make_repo, make_repository
from tests.repo.test_parallel_documents import small_nights
from tests.store.test_s3_cli import S3Cli

PASSPHRASE = "test passphrase"
DOCUMENTS = ("snapshots/", "index/")


def _open(store: MemoryStore, cache: Path) -> tuple[Repository, CountingStore, CachedStore]:
    """A new process's view: the store counted, inside a cache at ``cache``."""
    counting = CountingStore(store)
    cached = CachedStore(counting, cache)
    return Repository.open(cached, Secret(passphrase=PASSPHRASE)), counting, cached


def _document_gets(counting: CountingStore) -> int:
    return sum(n for key, n in counting.gets.items() if key.startswith(DOCUMENTS))


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    small_nights(make_repo(store), 3)
    return store


def test_documents_read_once_are_served_from_the_cache_by_the_next_process(
        store: MemoryStore, tmp_path: Path) -> None:
    repo, counting, cached = _open(store, tmp_path / "cache")
    first = [s.id for s in repo.snapshots()]
    repo.load_index()
    assert len(first) == 3 and _document_gets(counting) == 6  # 3 snapshots, 3 index files
    repo, counting, cached = _open(store, tmp_path / "cache")
    assert [s.id for s in repo.snapshots()] == first
    index = repo.load_index()
    assert _document_gets(counting) == 0 and cached.hits == 6 and cached.misses == 0
    for chunk in repo.find_snapshot("latest").tree:  # the cached index locates its blobs
        blob = bytes.fromhex(chunk)
        location = index.get(blob)
        assert location is not None and repo.read_blob(blob, location)
    assert all(oct(p.stat().st_mode & 0o777) == "0o600"
               for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"


def test_a_damaged_cached_copy_is_read_from_the_store_again_and_replaced(
        store: MemoryStore, tmp_path: Path) -> None:
    repo, _, _ = _open(store, tmp_path / "cache")
    ids = [s.id for s in repo.snapshots()]
    copy = tmp_path / "cache" / "snapshots" / ids[0]
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    warnings: list[str] = []
    repo, counting, cached = _open(store, tmp_path / "cache")
    assert [s.id for s in repo.snapshots(warnings.append)] == ids
    assert warnings == []  # the repository is sound: nothing to report
    assert counting.gets[f"snapshots/{ids[0]}"] == 1 and cached.hits == 2
    assert copy.read_bytes() == store.get(f"snapshots/{ids[0]}")


def test_a_document_damaged_in_the_store_is_reported_and_never_cached(
        store: MemoryStore, tmp_path: Path) -> None:
    name = sorted(info.key for info in store.list("snapshots/"))[0]
    data = bytearray(store.get(name))
    data[-3] ^= 1
    store.put(name, bytes(data))
    warnings: list[str] = []
    repo, _, _ = _open(store, tmp_path / "cache")
    assert len(repo.snapshots(warnings.append)) == 2
    assert len(warnings) == 1 and name in warnings[0] and "skipped" in warnings[0]
    assert not (tmp_path / "cache" / name).exists()


def test_a_listing_drops_the_copies_of_documents_the_store_no_longer_holds(
        store: MemoryStore, tmp_path: Path) -> None:
    repo, _, _ = _open(store, tmp_path / "cache")
    ids = [s.id for s in repo.snapshots()]
    store.delete(f"snapshots/{ids[0]}")  # forgotten by another host
    (tmp_path / "cache" / "snapshots" / ".left-by-a-kill.tmp").write_bytes(b"x")
    os.utime(tmp_path / "cache" / "snapshots" / ".left-by-a-kill.tmp", (0, 0))
    repo, _, _ = _open(store, tmp_path / "cache")
    assert [s.id for s in repo.snapshots()] == ids[1:]
    assert sorted(p.name for p in (tmp_path / "cache" / "snapshots").iterdir()) == sorted(ids[1:])


def test_what_this_process_writes_is_kept_and_what_it_deletes_is_dropped(
        tmp_path: Path) -> None:
    store = MemoryStore()
    make_repo(store)
    repo, counting, _ = _open(store, tmp_path / "cache")
    small_nights(repo, 1)
    (snap,) = repo.snapshots()
    assert (tmp_path / "cache" / "snapshots" / snap.id).exists()
    assert _document_gets(counting) == 0  # its own snapshot and index were kept on writing
    repo.store.delete(f"snapshots/{snap.id}")
    assert not (tmp_path / "cache" / "snapshots" / snap.id).exists()


def test_a_cache_that_cannot_be_written_is_one_warning_and_the_reads_go_on(
        store: MemoryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache should be")
    with caplog.at_level(logging.WARNING, logger="drsync.store"):
        repo, counting, _ = _open(store, blocked)
        assert len(repo.snapshots()) == 3
        repo.load_index()
    messages = [r.getMessage() for r in caplog.records if "local cache" in r.getMessage()]
    assert len(messages) == 1 and str(blocked) in messages[0]
    assert _document_gets(counting) == 6


def test_open_store_caches_remote_stores_only_and_only_when_asked(
        tmp_path: Path, moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    url = f"s3://{bucket_on()}/registry"
    options = StoreOptions(s3=S3Options(endpoint_url=moto_endpoint),
                           cache_dir=str(tmp_path / "cache"))
    store = open_store(url, options)
    assert isinstance(store, CachedStore)
    assert store.directory == cache_directory(tmp_path / "cache", url)
    assert capability(store, LocalStore) is None
    assert capability(open_store(url, dataclasses.replace(options, cache_dir="")),
                      CachedStore) is None
    local = open_store(str(tmp_path / "repo"), StoreOptions(cache_dir=str(tmp_path / "cache")))
    assert capability(local, CachedStore) is None
    assert cache_directory("/c", "s3://a/b") != cache_directory("/c", "s3://a/c")


def _backed_up(drsync_bin: str, tmp_path: Path, endpoint: str,
               bucket_on: Callable[..., str]) -> tuple[S3Cli, str]:
    """The CLI on a new S3 repository (moto's server, no proxy) holding one backup of
    ``dump.sql``, and the repository's bucket."""
    bucket = bucket_on()
    cli = S3Cli(drsync_bin, tmp_path, endpoint, bucket)
    make_repository(f"s3://{bucket}/registry", "correct horse",
                    options=StoreOptions(s3=S3Options(endpoint_url=endpoint)))
    (tmp_path / "dump.sql").write_bytes(b"registry rows\n" * 5000)
    cli("backup", str(tmp_path / "dump.sql"))
    return cli, bucket


def test_the_cli_reads_documents_from_the_cache_and_check_reads_the_store(
        drsync_bin: str, tmp_path: Path, moto_endpoint: str,
        bucket_on: Callable[..., str]) -> None:
    import boto3

    cli, bucket = _backed_up(drsync_bin, tmp_path, moto_endpoint, bucket_on)
    (snap,) = json.loads(cli("snapshots", "--json").stdout)
    cache = Path(os.environ["XDG_STATE_HOME"]) / "drsync" / "cache"
    assert [p.name for p in cache.glob("*/snapshots/*")] == [snap["id"]]
    # The bucket's copy is damaged after it was cached here.
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    key = f"registry/snapshots/{snap['id']}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"DRSY" + b"\0" * 200)
    restored = tmp_path / "restored"
    cli("restore", "latest", "--target", str(restored))
    assert (restored / "dump.sql").read_bytes() == b"registry rows\n" * 5000
    checked = cli("check", ok=False)
    assert checked.returncode == 13, checked.stderr.decode()
    assert f"snapshots/{snap['id']}" in checked.stdout.decode() + checked.stderr.decode()
    with_cache_off = tmp_path / "off.toml"
    with_cache_off.write_text(cli.config.read_text().replace("[store]\n",
                                                             "[store]\ncache = false\n"))
    done = subprocess.run([drsync_bin, "snapshots", "--json"], capture_output=True,
                          env={**cli.env, "DRSYNC_CONFIG": str(with_cache_off)}, timeout=120)
    assert snap["id"] in done.stderr.decode() and json.loads(done.stdout) == []


def test_settings_cache_by_default_in_the_state_directory_and_off_by_key(
        tmp_path: Path) -> None:
    from drsync.settings import resolve, store_options

    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    default = store_options(resolve(None, {}, environ))
    assert default.cache_dir == str(tmp_path / "state" / "drsync" / "cache")
    config = tmp_path / "etc" / "drsync.toml"
    config.parent.mkdir()
    config.write_text('[store]\ncache_dir = "cache"\n')
    assert store_options(resolve(str(config), {}, environ)).cache_dir == str(
        tmp_path / "etc" / "cache")  # relative to the file, as every path in it
    config.write_text("[store]\ncache = false\n")
    assert store_options(resolve(str(config), {}, environ)).cache_dir == ""
    config.write_text('[store]\ncache = "no"\n')
    with pytest.raises(Exception, match=r"store\.cache.* must be true or false"):
        resolve(str(config), {}, environ)


def test_a_drill_reads_the_store_not_the_cache(
        drsync_bin: str, tmp_path: Path, moto_endpoint: str,
        bucket_on: Callable[..., str]) -> None:
    import boto3

    cli, bucket = _backed_up(drsync_bin, tmp_path, moto_endpoint, bucket_on)
    passed = json.loads(cli("drill", "--json").stdout)
    assert passed["status"] == "ok", passed
    (snap,) = json.loads(cli("snapshots", "--json").stdout)  # now cached here
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    index = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket,
                                                  Prefix="registry/index/")["Contents"]]
    for key in [f"registry/snapshots/{snap['id']}", *index]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"DRSY" + b"\0" * 200)
    failed = cli("drill", "--json", ok=False)
    assert failed.returncode != 0, failed.stdout.decode()
    assert snap["id"] in failed.stdout.decode() + failed.stderr.decode()
