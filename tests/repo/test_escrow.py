"""Operator key escrow: only the escrow private key opens its wrapping, bound to its header."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from drsync.errors import ConfigError, UsageError, WrongKey
from drsync.repo import KeyFile, Repository, Secret
from drsync.repo.escrow import EscrowKeyPair, EscrowPublicKey
from drsync.repo.objects import HEADER_SIZE
from drsync.store import MemoryStore
from drsync.testing import backup_bytes, make_repo


def _escrowed(store: MemoryStore) -> tuple[Repository, EscrowKeyPair, str]:
    repo = make_repo(store, "tenant words")
    pair = EscrowKeyPair.generate()
    return repo, pair, repo.add_escrow(pair.public)


def test_escrow_key_opens_and_nothing_else_opens_its_wrapping() -> None:
    store = MemoryStore("memory://tenant")
    repo, pair, escrow_id = _escrowed(store)
    opened = Repository.open(store, Secret(escrow_key=pair))
    assert opened.key == repo.key and opened.key_id == escrow_id
    # A key file naming the escrow wrapping (any secret) cannot open it, nor the passphrase
    # reach it: the tenant's passphrase opens only its own wrapping.
    forged = KeyFile(repo.config.id, escrow_id, bytes(32))
    with pytest.raises(WrongKey, match="wrong key file"):
        Repository.open(store, Secret(key_file=forged))
    with pytest.raises(WrongKey, match="wrong passphrase"):
        Repository.open(store, Secret(passphrase="not the tenant's"))
    with pytest.raises(WrongKey, match=r"escrow key .* opens no wrapping"):
        Repository.open(store, Secret(escrow_key=EscrowKeyPair.generate()))


def test_escrow_header_is_authenticated() -> None:
    store = MemoryStore("memory://tenant")
    _repo, pair, escrow_id = _escrowed(store)
    name = f"keys/{escrow_id}"
    data = store.objects[name]
    doc = json.loads(data[HEADER_SIZE:])
    doc["repository"] = "0" * 32  # the header names the repository: changing it breaks the tag
    store.objects[name] = data[:HEADER_SIZE] + json.dumps(doc).encode()
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(escrow_key=pair))


def test_escrow_files_round_trip_private_half_0600_never_overwritten(tmp_path: Path) -> None:
    pair = EscrowKeyPair.generate()
    priv, pub = pair.write(tmp_path)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert EscrowKeyPair.load(priv) == pair
    assert EscrowPublicKey.load(pub) == pair.public
    assert pub.read_text().split()[1] == pair.public.key_id
    with pytest.raises(ConfigError, match="already exists"):
        EscrowKeyPair.generate().write(tmp_path)
    assert EscrowKeyPair.load(priv) == pair  # untouched
    with pytest.raises(ConfigError, match="not a drsync escrow private key"):
        EscrowKeyPair.load(pub)


def test_wrappings_listed_with_kind_created_host_and_old_ones_still_parse() -> None:
    store = MemoryStore("memory://tenant")
    repo, pair, escrow_id = _escrowed(store)
    key_file = repo.add_key_file()
    # A wrapping as written before `created`/`host` existed still opens and is listed.
    name = f"keys/{key_file.key_id}"
    doc = json.loads(store.objects[name][HEADER_SIZE:])
    del doc["created"], doc["host"]
    store.objects[name] = store.objects[name][:HEADER_SIZE] + json.dumps(doc).encode()
    opened = Repository.open(store, Secret(key_file=key_file))
    kinds = {w.key_id: w for w in opened.wrappings()}
    assert kinds[escrow_id].kind == "escrow" and kinds[escrow_id].escrow_key == pair.public.key_id
    assert kinds[key_file.key_id].kind == "keyfile" and kinds[key_file.key_id].created == ""
    assert kinds[repo.key_id].kind == "passphrase" and kinds[repo.key_id].created


def test_remove_refuses_the_last_tenant_key_and_the_one_in_use() -> None:
    store = MemoryStore("memory://tenant")
    repo, pair, escrow_id = _escrowed(store)
    backup_bytes(repo, b"resident registry" * 500)
    key_file = repo.add_key_file()
    with pytest.raises(UsageError, match="in use"):
        repo.remove_wrapping(repo.key_id or "")
    by_file = Repository.open(store, Secret(key_file=key_file))
    by_file.remove_wrapping(repo.key_id or "")  # the passphrase: takes effect at once
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(passphrase="tenant words"))
    # The escrow wrapping does not count as the tenant's: the key file is the last one.
    with pytest.raises(UsageError, match="last passphrase or key file"):
        by_file.remove_wrapping(key_file.key_id, force=True)
    assert store.exists(f"keys/{key_file.key_id}")
    by_file.remove_wrapping(escrow_id[:8])  # a unique prefix
    with pytest.raises(WrongKey):
        Repository.open(store, Secret(escrow_key=pair))


def test_escrow_files_go_into_a_new_private_directory(tmp_path: Path) -> None:
    # `key gen-escrow --out /srv/operator/escrow` on a fresh operator host.
    out = tmp_path / "srv" / "operator" / "escrow"
    priv, pub = EscrowKeyPair.generate().write(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert EscrowKeyPair.load(priv).public == EscrowPublicKey.load(pub)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"cannot create .*a-file/escrow"):
        EscrowKeyPair.generate().write(tmp_path / "a-file" / "escrow")
