"""wal-push: one WAL file into the spool, durably, fast (PostgreSQL waits on it).

The master key comes from the key file and a cached copy of its wrapping
(``<spool>/.key-<key id>``, the same bytes as the store's ``keys/<key id>``,
useless without the key file), so a push reads no store and works while the
WAN is down; only the very first push of a spool fetches the wrapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drsync.errors import ConfigError, IntegrityError, SourceError, WalConflict, WrongKey
from drsync.repo.crypto import MasterKey
from drsync.repo.keys import KeyFile, Secret, unwrap
from drsync.repo.objects import FormatError
from drsync.repo.wal import HEADER_MAX, is_wal_name, parse_wal_header, seal_wal
from drsync.wal.spool import Spool, default_spool_dir

__all__ = ["PushResult", "push_file", "push_segment", "resolve_spool", "spool_key"]

WAL_LEVEL = 1  # zstd level for WAL: level 1 already takes most of the gain, and is fastest


@dataclass(frozen=True)
class PushResult:
    name: str
    size: int
    stored: int  # bytes of the sealed object
    duplicate: bool  # the same content was already spooled


def resolve_spool(spool: str | None, key_file: str | None, repo_url: str | None) -> Spool:
    """The spool given, or a default per repository under the user's state directory."""
    if spool:
        return Spool(spool)
    if key_file:
        return Spool(default_spool_dir(KeyFile.load(key_file).repo_id))
    if repo_url:
        import hashlib

        return Spool(default_spool_dir("url-" + hashlib.sha256(repo_url.encode()).hexdigest()[:16]))
    raise ConfigError("no spool: use --spool, DRSYNC_SPOOL, [wal] spool in the config, "
                      "or --key-file/--repo for the default one")


def spool_key(spool: Spool, key_file: str | None, repo_url: str | None,
              open_repo: Callable[[], MasterKey]) -> MasterKey:
    """The master key, without touching the store when the wrapping is cached."""
    if not key_file:
        return open_repo()  # a passphrase: the KDF runs (slow); agents should use a key file
    kf = KeyFile.load(key_file)
    cache = spool.path(f".key-{kf.key_id}")
    try:
        wrapping = cache.read_bytes()
    except FileNotFoundError:
        wrapping = _fetch_wrapping(kf, repo_url)
        spool.ensure()
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_bytes(wrapping)
        os.replace(tmp, cache)
    except OSError as err:
        raise ConfigError(f"cannot read {cache}: {err.strerror}") from None
    try:
        key = unwrap(wrapping, kf.key_id, Secret(key_file=kf))
    except (FormatError, KeyError, ValueError) as err:
        raise IntegrityError(f"{cache}: {err}") from None
    if key is None:
        raise WrongKey(f"wrong key file ({key_file}) for the key wrapping cached in {cache}")
    return key


def _fetch_wrapping(kf: KeyFile, repo_url: str | None) -> bytes:
    from drsync.errors import ObjectNotFound, RepositoryNotFound
    from drsync.store import open_store

    if not repo_url:
        raise ConfigError("no repository: the first wal-push of a spool needs --repo or "
                          "DRSYNC_REPO to fetch the key wrapping")
    try:
        return open_store(repo_url).get(f"keys/{kf.key_id}")
    except ObjectNotFound:
        raise RepositoryNotFound(f"no key {kf.key_id} in repository {repo_url}") from None


def push_segment(path: str | Path, spool_dir: str | None, key_file: str | None,
                 repo_url: str | None, open_repo: Callable[[], MasterKey]
                 ) -> tuple[PushResult, Spool]:
    """wal-push as a whole: find the spool and the key, then seal ``path`` into it.

    The one service both front doors call (the click command and the
    click-free fast path in ``drsync.entry``), so they cannot drift apart.
    """
    spool = resolve_spool(spool_dir, key_file, repo_url)
    key = spool_key(spool, key_file, repo_url, open_repo)
    return push_file(path, spool, key), spool


def push_file(path: str | Path, spool: Spool, key: MasterKey) -> PushResult:
    """Seal ``path`` into the spool; return only once it is durable.

    The same name with the same content again is a success (PostgreSQL
    retries after a crash); with different content it is a WalConflict and
    nothing is overwritten.
    """
    path = Path(path)
    name = path.name
    if not is_wal_name(name):
        raise SourceError(f"{path}: not a WAL segment, timeline history or backup label name")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise SourceError(f"cannot read WAL file {path}: {err.strerror}") from None
    if spool.exists(name):
        return _compare(spool, name, key.chunk_id(data), len(data))
    sealed = seal_wal(key, name, data, WAL_LEVEL)
    if not spool.write_new(name, sealed):  # a concurrent push won the race
        return _compare(spool, name, parse_wal_header(sealed).content_id, len(data))
    return PushResult(name, len(data), len(sealed), False)


def _compare(spool: Spool, name: str, content_id: bytes, size: int) -> PushResult:
    try:
        head = parse_wal_header(spool.read(name, HEADER_MAX))
    except FormatError as err:
        raise IntegrityError(f"spool {spool.dir}: {name}: {err}") from None
    if head.content_id != content_id or head.size != size:
        raise WalConflict(
            f"{name} was already archived with different content ({head.size} bytes, "
            f"now {size}); refusing to overwrite it: check for two clusters archiving "
            f"into spool {spool.dir}"
        )
    return PushResult(name, size, spool.path(name).stat().st_size, True)
