"""wal-push: one WAL file into the spool, durably, fast (PostgreSQL waits on it).

The master key comes from the key file and a cached copy of its wrapping
(``<spool>/.key-<key id>``, the same bytes as the store's ``keys/<key id>``,
useless without the key file), so a push reads no store and works while the
WAN is down; only the very first push of a spool fetches the wrapping, from
the store the settings name with every store option they carry. A rotation
re-wraps the key file in the store; the next ``wal-ship`` (which opens the
repository anyway) replaces the stale copy (``refresh_cached_wrapping``), so
pushes from then on seal with the new generation, and ``wal-fetch`` meeting WAL
sealed by a generation the cached copy does not know opens the repository whole.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drsync.atomic import write_atomic
from drsync.errors import ConfigError, IntegrityError, SourceError, WalConflict, WrongKey
from drsync.repo.crypto import MasterKey
from drsync.repo.keys import KeyFile, Secret, unwrap
from drsync.repo.objects import FormatError
from drsync.repo.wal import HEADER_MAX, is_wal_name, parse_wal_header, seal_wal
from drsync.wal.spool import Spool

if TYPE_CHECKING:
    from drsync.settings import Settings
    from drsync.store.base import Store
    from drsync.wal.headstart import HeadStart

__all__ = ["PushResult", "push_file", "push_segment", "refresh_cached_wrapping",
           "resolve_spool", "spool_key", "wrapping_from_store"]

# zstd level for WAL: 3, as pgBackRest's compress-type=zst default, about 17% fewer bytes
# than level 1 on pgbench WAL; its extra time is hidden behind wal-push's own start-up
# (drsync.wal.headstart). The level is not recorded: every level reads the same.
WAL_LEVEL = 3


@dataclass(frozen=True)
class PushResult:
    name: str
    size: int
    stored: int  # bytes of the sealed object
    duplicate: bool  # the same content was already spooled


def resolve_spool(settings: Settings) -> Spool:
    """The configured spool, or the default one per repository (see Settings.wal_spool)."""
    return Spool(settings.wal_spool())


def spool_key(spool: Spool | None, key_file: str | None,
              fetch_wrapping: Callable[[KeyFile], bytes] | None,
              open_repo: Callable[[], MasterKey], *, cache: bool = True) -> MasterKey:
    """The master key, without touching the store when the spool caches the wrapping.

    Without a cached copy the wrapping is fetched (``fetch_wrapping``) and, when
    ``cache``, kept in the spool for the next push; ``cache=False`` (wal-fetch on a
    restore host) never creates or writes the spool.
    """
    if not key_file:
        return open_repo()  # a passphrase: the KDF runs (slow); agents should use a key file
    kf = KeyFile.load(key_file)
    cached = spool.path(f".key-{kf.key_id}") if spool is not None else None
    wrapping = None
    where = f"key wrapping keys/{kf.key_id}"
    if cached is not None:
        try:
            wrapping = cached.read_bytes()
            where = f"key wrapping cached in {cached}"
        except FileNotFoundError:
            pass
        except OSError as err:
            raise ConfigError(f"cannot read {cached}: {err.strerror}") from None
    if wrapping is None:
        if fetch_wrapping is None:
            raise ConfigError(f"no key wrapping for key file {key_file} cached in the spool")
        wrapping = fetch_wrapping(kf)
        if cache and spool is not None and cached is not None:
            spool.ensure()
            # 0644 as before: useless without the key file, and read by wal-ship and
            # wal-fetch, which may run as another user than PostgreSQL's wal-push
            write_atomic(cached, wrapping, mode=0o644)
    try:
        key = unwrap(wrapping, kf.key_id, Secret(key_file=kf))
    except (FormatError, KeyError, ValueError) as err:
        raise IntegrityError(f"{where}: {err}") from None
    if key is None:
        raise WrongKey(f"wrong key file ({key_file}) for the {where}")
    if key.generation and not cache:
        # Reading (wal-fetch) may meet WAL sealed by older generations: their keys are in
        # the repository's generations document, which a full open reads.
        return open_repo()
    return key


def refresh_cached_wrapping(spool: Spool, key_file: str | None, store: Store) -> bool:
    """Replace the spool's cached wrapping of ``key_file`` when the store's differs (a
    ``key rotate`` re-wrapped it since); True when it did. Without it, every push after
    a rotation went on sealing with the generation the rotation retired."""
    if not key_file:
        return False
    kf = KeyFile.load(key_file)
    cached = spool.path(f".key-{kf.key_id}")
    try:
        old = cached.read_bytes()
        st = cached.stat()
    except OSError:  # none, or not ours to read: wal-push keeps what it has
        return False
    current = bytes(store.get(f"keys/{kf.key_id}"))
    if current == old:
        return False
    try:  # as it was: wal-push (PostgreSQL's user) reads it, wal-ship may run as another
        write_atomic(cached, current, mode=stat.S_IMODE(st.st_mode),
                     owner=(st.st_uid, st.st_gid))
    except OSError as err:
        raise ConfigError(f"cannot replace the key wrapping cached in {cached} (it predates "
                          f"a key rotation): {err.strerror}; remove it, and the next wal-push "
                          "fetches the current one") from None
    return True


def fetch_wrapping(store: Store, kf: KeyFile, source: str | None) -> bytes:
    """The store's wrapping of key file ``kf`` (named ``source``). None there: another
    repository's key file (WrongKey, exit 11, as Repository.open says it), or no
    repository at all (RepositoryNotFound, exit 10)."""
    from drsync.errors import ObjectNotFound, RepositoryNotFound
    from drsync.repo.keys import no_key_error

    try:
        return bytes(store.get(f"keys/{kf.key_id}"))
    except ObjectNotFound:
        pass
    if not store.exists("config"):
        raise RepositoryNotFound(f"no repository at {store.url}") from None
    raise no_key_error(store.url, Secret(key_file=kf, source=source or ""))


def wrapping_from_store(settings: Settings) -> Callable[[KeyFile], bytes]:
    """Fetch a key file's wrapping from the store the settings name, with all their
    store options (endpoint, credentials, CA bundle, limits)."""

    def fetch(kf: KeyFile) -> bytes:
        from drsync.settings import store_for

        if not settings.repo:
            raise ConfigError("no repository: the first wal-push of a spool needs --repo, "
                              "DRSYNC_REPO or `repo` in the config to fetch the key wrapping")
        return fetch_wrapping(store_for(settings), kf, settings.key_file)

    return fetch


def push_segment(path: str | Path, settings: Settings, open_repo: Callable[[], MasterKey],
                 head_start: HeadStart | None = None) -> tuple[PushResult, Spool]:
    """wal-push as a whole: find the spool and the key, then seal ``path`` into it.

    The one service both front doors call (the click command and the
    click-free fast path in ``drsync.entry``), with settings from the same
    ``drsync.settings.resolve``, so they cannot drift apart. ``head_start`` is
    the fast path's read and compression of ``path``, already under way.
    """
    spool = resolve_spool(settings)
    key = spool_key(spool, settings.key_file, wrapping_from_store(settings), open_repo)
    return push_file(path, spool, key, head_start), spool


def push_file(path: str | Path, spool: Spool, key: MasterKey,
              head_start: HeadStart | None = None) -> PushResult:
    """Seal ``path`` into the spool; return only once it is durable.

    The same name with the same content again is a success (PostgreSQL
    retries after a crash); with different content it is a WalConflict and
    nothing is overwritten. ``head_start`` (of this ``path``) supplies the bytes
    and, when it used WAL_LEVEL, their compression.
    """
    path = Path(path)
    name = path.name
    if not is_wal_name(name):
        raise SourceError(f"{path}: not a WAL segment, timeline history or backup label name")
    if head_start is not None and head_start.path != str(path):
        raise ValueError(f"head_start is of {head_start.path}, not {path}")
    data: bytes | bytearray
    try:
        if head_start is not None:
            data = head_start.data()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError as err:
        raise SourceError(f"cannot read WAL file {path}: {err.strerror}") from None
    if head_start is None:
        if spool.exists(name):
            return _compare(spool, name, key.chunk_id(data), len(data))
        sealed = seal_wal(key, name, data, WAL_LEVEL)  # hashes while it compresses
    else:
        content_id = key.chunk_id(data)  # while the head start is still compressing
        if spool.exists(name):
            return _compare(spool, name, content_id, len(data))
        packed = head_start.compressed() if head_start.level == WAL_LEVEL else None
        sealed = seal_wal(key, name, data, WAL_LEVEL, content_id=content_id,
                          compressed=packed)
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
