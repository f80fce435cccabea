"""Master key wrappings: passphrases, key files, wrong keys, other tenants' keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from drsync.errors import ConfigError, RepositoryExists, RepositoryNotFound, WrongKey
from drsync.repo import KeyFile, RepoConfig, Repository, Secret
from drsync.store import LocalStore, MemoryStore
from drsync.testing import FAST_KDF, backup_bytes, make_repo


def test_passphrase_opens_and_wrong_one_is_refused_naming_the_repository() -> None:
    store = MemoryStore("memory://tenant-a")
    make_repo(store, "right")
    before = dict(store.objects)
    with pytest.raises(WrongKey, match="memory://tenant-a") as info:
        Repository.open(store, Secret(passphrase="wrong", source="from test"))
    assert "wrong passphrase" in str(info.value)
    assert store.objects == before  # a failed open writes nothing


def test_key_file_opens_without_kdf_and_is_mode_0600(tmp_path: Path) -> None:
    repo = make_repo(LocalStore(tmp_path / "repo"))
    key_file = repo.add_key_file()
    path = tmp_path / "agent.key"
    key_file.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = KeyFile.load(path)
    opened = Repository.open(LocalStore(tmp_path / "repo"), Secret(key_file=loaded))
    assert opened.key == repo.key
    with pytest.raises(ConfigError, match="already exists"):
        key_file.write(path)


def test_one_tenants_key_opens_nothing_of_another(tmp_path: Path) -> None:
    store_a, store_b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    repo_a, repo_b = make_repo(store_a, "same words"), make_repo(store_b, "other words")
    backup_bytes(repo_a, b"tenant A resident data" * 1000)
    key_b = repo_b.add_key_file()
    # B's key file names a wrapping A does not have; B's passphrase unwraps nothing in A.
    with pytest.raises(WrongKey):
        Repository.open(store_a, Secret(key_file=key_b))
    with pytest.raises(WrongKey):
        Repository.open(store_a, Secret(passphrase="other words"))
    # Even copying B's wrapping into A gives B's master key, which cannot read A's config.
    name = f"keys/{key_b.key_id}"
    store_a.put(name, store_b.get(name))
    with pytest.raises(Exception, match="config"):
        Repository.open(store_a, Secret(key_file=key_b))
    assert repo_a.key != repo_b.key


def test_forged_key_file_secret_is_wrong_key(tmp_path: Path) -> None:
    repo = make_repo(LocalStore(tmp_path / "r"))
    real = repo.add_key_file()
    forged = KeyFile(real.repo_id, real.key_id, bytes(32))
    with pytest.raises(WrongKey, match="key file"):
        Repository.open(LocalStore(tmp_path / "r"), Secret(key_file=forged))


def test_missing_repository_and_double_init(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match=str(tmp_path / "none")):
        Repository.open(LocalStore(tmp_path / "none"), Secret(passphrase="x"))
    store = LocalStore(tmp_path / "r")
    Repository.init(store, "x", RepoConfig(), kdf=FAST_KDF)
    with pytest.raises(RepositoryExists):
        Repository.init(store, "x", RepoConfig(), kdf=FAST_KDF)


def test_malformed_key_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a drsync key file"):
        KeyFile.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        KeyFile.load(tmp_path / "absent.key")
