"""A repository: its config, keys, index and snapshots on one store.

Object names (all under the store's root; see docs/FORMAT.md):

    config                      sealed document: id, chunker, pack size, compression
    keys/<key id>               wrappings of the master key (plaintext JSON): passphrase,
                                key file, operator escrow
    generations/<g>             sealed by generation g: the AES keys of generations < g
    data/<xx>/<sha256>          pack files
    index/<sha256>              sealed index documents
    snapshots/<sha256>          sealed snapshot manifests
    lock                        the writer lock

What a reader trusts: an index entry only while its pack is seen present
(one listing of ``data/`` per index load, taken after the index files are
listed, so every pack an index we read names was stored before the listing);
an object the repository needs and the store does not hold is an
IntegrityError naming it. One unreadable index file, snapshot or key wrapping
is skipped with a warning (``warn``) rather than blocking every command;
``check`` reports each as an error.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drsync.errors import (
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
    StoreError,
    UsageError,
    WrongKey,
)
from drsync.repo.crypto import MasterKey, SealError
from drsync.repo.group import open_group, open_group_views
from drsync.repo.index import BlobLocation, Index, pack_key
from drsync.repo.keys import (
    DEFAULT_KDF,
    KdfParams,
    KeyFile,
    Secret,
    WrappingInfo,
    describe_wrapping,
    new_key_id,
    no_key_error,
    unwrap,
    wrap,
)
from drsync.repo.objects import (
    TYPE_CONFIG,
    TYPE_GENERATIONS,
    TYPE_INDEX,
    TYPE_SNAPSHOT,
    FormatError,
    object_id,
    open_document,
    seal_document,
)
from drsync.repo.snapshot import Snapshot
from drsync.store.base import Store

if TYPE_CHECKING:
    from drsync.repo.escrow import EscrowPublicKey

__all__ = ["RepoConfig", "Repository", "Warn"]

Warn = Callable[[str], None]


_OBJECT_ID = re.compile(r"[0-9a-f]{64}")  # what a stored document is named (its SHA-256)


class Vanished(FormatError):
    """A listed object gone when read: removed meanwhile (a forget, a prune), not damaged."""

CONFIG_KEY = "config"
GENERATIONS_PREFIX = "generations/"
MiB = 1 << 20


@dataclass(frozen=True)
class Rotation:
    """What ``rotate`` did: generations, the wrappings written, the ones removed (dropped
    for want of their secrets; those replaced by a new wrapping are not listed)."""

    old_generation: int
    generation: int
    wrapped: list[str]
    removed: list[WrappingInfo]


@dataclass(frozen=True)
class RepoConfig:
    """Settings fixed at ``init`` (chunking must stay stable for dedup to work)."""

    id: str = ""
    chunk_avg: int = 1 * MiB
    chunk_min: int = 256 * 1024
    chunk_max: int = 4 * MiB
    pack_size: int = 16 * MiB
    compression_level: int = 3

    def validate(self) -> RepoConfig:
        if not 64 <= self.chunk_min <= self.chunk_avg <= self.chunk_max <= 16 * MiB:
            raise UsageError(
                "chunk sizes must satisfy 64 B <= min <= average <= max <= 16 MiB "
                f"(got min {self.chunk_min}, average {self.chunk_avg}, max {self.chunk_max})"
            )
        if not 256 <= self.chunk_avg <= 4 * MiB or self.chunk_min > MiB:
            raise UsageError("chunk average must be 256 B..4 MiB and minimum at most 1 MiB")
        if not MiB <= self.pack_size <= 1024 * MiB:
            raise UsageError(f"pack size must be 1 MiB..1 GiB (got {self.pack_size})")
        if not 0 <= self.compression_level <= 22:
            raise UsageError(f"compression level must be 0..22 (got {self.compression_level})")
        return self

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": 1,
            "id": self.id,
            "chunker": {"algorithm": "fastcdc2020", "avg": self.chunk_avg,
                        "min": self.chunk_min, "max": self.chunk_max},
            "pack_size": self.pack_size,
            "compression_level": self.compression_level,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RepoConfig:
        """ValueError when the document is the wrong shape (it may still authenticate)."""
        chunker = doc.get("chunker")
        sizes = [chunker.get(k) for k in ("avg", "min", "max")] if isinstance(chunker, dict) \
            else [None]
        sizes += [doc.get("pack_size"), doc.get("compression_level")]
        if not isinstance(doc.get("id"), str) or not all(type(v) is int for v in sizes):
            raise ValueError("config document is not {id, chunker {avg, min, max}, "
                             "pack_size, compression_level}")
        return cls(doc["id"], *sizes)


class Repository:
    def __init__(self, store: Store, key: MasterKey, config: RepoConfig, *,
                 warn: Warn | None = None, key_id: str | None = None) -> None:
        self.store = store
        self.key = key
        self.config = config
        self.key_id = key_id  # the wrapping that opened it (None: just created)
        self.url = store.url
        self._on_warning = warn
        self._warned: set[str] = set()

    def warn(self, message: str) -> None:
        """Tell the user once about an object skipped (the CLI prints it to stderr)."""
        if message not in self._warned:
            self._warned.add(message)
            if self._on_warning is not None:
                self._on_warning(message)

    # -- creation and opening -------------------------------------------------

    @classmethod
    def init(
        cls,
        store: Store,
        passphrase: str | None,
        config: RepoConfig,
        *,
        kdf: KdfParams = DEFAULT_KDF,
        escrow: EscrowPublicKey | None = None,
    ) -> Repository:
        """Create a repository; the first wrapping is by passphrase when one is given, then
        one by the operator's escrow key when one is given."""
        config.validate()
        if store.exists(CONFIG_KEY):
            raise RepositoryExists(f"a repository already exists at {store.url}")
        config = RepoConfig(secrets.token_hex(16), config.chunk_avg, config.chunk_min,
                            config.chunk_max, config.pack_size, config.compression_level)
        repo = cls(store, MasterKey.generate(), config)
        if passphrase is not None:
            repo.key_id = repo.add_passphrase(passphrase, kdf=kdf)
        if escrow is not None:
            repo.add_escrow(escrow)
        # The config is written last: until it exists, there is no repository.
        store.put(CONFIG_KEY, seal_document(repo.key, TYPE_CONFIG, config.to_doc()),
                  if_absent=True)
        return repo

    @classmethod
    def open(cls, store: Store, secret: Secret, *, warn: Warn | None = None) -> Repository:
        try:
            sealed_config = store.get(CONFIG_KEY)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no repository at {store.url}") from None
        repo_warn = warn or (lambda _message: None)
        key_id, key = cls._unwrap_master(store, secret, repo_warn)
        key = cls._load_generations(store, key)
        try:
            config = RepoConfig.from_doc(open_document(key, TYPE_CONFIG, sealed_config))
        except (FormatError, KeyError, ValueError) as err:
            raise IntegrityError(f"{store.url}: object config: {err}") from None
        return cls(store, key, config, warn=warn, key_id=key_id)

    @staticmethod
    def _unwrap_master(store: Store, secret: Secret, warn: Warn) -> tuple[str, MasterKey]:
        """The master key from the first wrapping the secret opens. A malformed wrapping
        is skipped (one damaged or foreign file must not lock a tenant out while another
        wrapping opens); it is an error only when nothing else opens."""
        if secret.key_file is not None:
            names = [f"keys/{secret.key_file.key_id}"]
        else:
            names = sorted(info.key for info in store.list("keys/"))
        malformed: list[str] = []
        for name in names:
            try:
                data = store.get(name)
            except ObjectNotFound:
                continue
            try:
                key = unwrap(data, name.removeprefix("keys/"), secret)
            except (FormatError, KeyError, ValueError, TypeError) as err:
                malformed.append(f"object {name}: {err}")
                continue
            if key is not None:
                for problem in malformed:
                    warn(f"{problem}: skipped")
                return name.removeprefix("keys/"), key
        if malformed and len(malformed) == len(names):
            raise IntegrityError(f"{store.url}: {malformed[0]}")
        error = no_key_error(store.url, secret)
        if malformed:
            error.args = (f"{error}; {len(malformed)} wrapping(s) could not be read, first "
                          f"{malformed[0]}",)
        raise error

    @staticmethod
    def _load_generations(store: Store, key: MasterKey) -> MasterKey:
        """``key`` with the AES keys of every older generation, from ``generations/<g>``."""
        if key.generation == 0:
            return key
        name = f"{GENERATIONS_PREFIX}{key.generation}"
        try:
            doc = open_document(key, TYPE_GENERATIONS, store.get(name))
        except ObjectNotFound:
            raise IntegrityError(f"{store.url}: object {name}: missing (the key wraps "
                                 f"generation {key.generation})") from None
        except FormatError as err:
            raise IntegrityError(f"{store.url}: object {name}: {err}") from None
        older = doc.get("older")
        try:
            keys = {int(g): base64.b64decode(v, validate=True)
                    for g, v in (older.items() if isinstance(older, dict) else ())}
        except (ValueError, TypeError):
            keys = {}
        if doc.get("generation") != key.generation or sorted(keys) != \
                list(range(key.generation)) or any(len(v) != 32 for v in keys.values()):
            raise IntegrityError(f"{store.url}: object {name}: malformed generations document")
        return key.with_older(keys)

    def generations(self) -> list[int]:
        """The generations the store holds a ``generations/<g>`` document for (and 0)."""
        found = [0]
        for info in self.store.list(GENERATIONS_PREFIX):
            tail = info.key.removeprefix(GENERATIONS_PREFIX)
            if tail.isdigit():
                found.append(int(tail))
        return sorted(set(found))

    def add_passphrase(self, passphrase: str, *, kdf: KdfParams = DEFAULT_KDF) -> str:
        key_id = new_key_id()
        self.store.put(f"keys/{key_id}",
                       wrap(self.key, self.config.id, key_id, passphrase=passphrase, kdf=kdf),
                       if_absent=True)
        return key_id

    def add_key_file(self) -> KeyFile:
        key_id = new_key_id()
        key_file = KeyFile(self.config.id, key_id, secrets.token_bytes(32))
        self.store.put(f"keys/{key_id}",
                       wrap(self.key, self.config.id, key_id, key_file=key_file),
                       if_absent=True)
        return key_file

    def add_escrow(self, public: EscrowPublicKey) -> str:
        """Wrap the master key for the fleet operator's escrow key; one wrapping per escrow
        key (adding the same escrow key again returns the existing one)."""
        for info in self.wrappings():
            if info.kind == "escrow" and info.escrow_key == public.key_id \
                    and info.generation == self.key.generation:
                return info.key_id
        key_id = new_key_id()
        self.store.put(f"keys/{key_id}",
                       wrap(self.key, self.config.id, key_id, escrow=public), if_absent=True)
        return key_id

    def wrappings(self) -> list[WrappingInfo]:
        """Every readable wrapping, by key id; a malformed one is skipped with a warning."""
        found = []
        for info in sorted(self.store.list("keys/"), key=lambda i: i.key):
            key_id = info.key.removeprefix("keys/")
            try:
                found.append(describe_wrapping(key_id, self.store.get(info.key)))
            except ObjectNotFound:
                continue
            except (FormatError, KeyError, ValueError, TypeError) as err:
                self.warn(f"object {info.key}: {err}: skipped")
        return found

    def find_wrapping(self, ref: str) -> WrappingInfo:
        """A wrapping by key id or unique prefix (at least 4 hex digits)."""
        matches = [w for w in self.wrappings() if w.key_id.startswith(ref.lower())]
        if len(ref) < 4 or not matches:
            raise UsageError(f"no key {ref!r} in {self.url}")
        if len(matches) > 1:
            raise UsageError(f"key prefix {ref!r} is ambiguous in {self.url}")
        return matches[0]

    def remove_wrapping(self, ref: str, *, force: bool = False) -> WrappingInfo:
        """Delete one wrapping. Refused when no passphrase or key file wrapping would be left
        (an escrow wrapping alone is the operator's, not the tenant's), and for the wrapping
        in use unless ``force``."""
        target = self.find_wrapping(ref)
        if target.key_id == self.key_id and not force:
            raise UsageError(f"key {target.key_id} is the one in use; open with another key, "
                             "use `key passwd` to change a passphrase, or pass --force")
        tenant_held = [w for w in self.wrappings() if w.kind != "escrow"
                       and w.generation == self.key.generation and w.key_id != target.key_id]
        if target.kind != "escrow" and not tenant_held:
            raise UsageError(f"key {target.key_id} is the last passphrase or key file of "
                             f"{self.url}; add another first (`drsync key add`)")
        self.store.delete(f"keys/{target.key_id}")
        return target

    def rotate(self, secret: Secret, *, key_files: tuple[KeyFile, ...] = (),
               remove_others: bool = False, kdf: KdfParams = DEFAULT_KDF) -> Rotation:
        """Start a new master-key generation without rewriting data.

        The new generation's document (the AES keys of every older one, sealed under the
        new key) is written first; then the new wrappings: the secret in use (a key file
        keeps its key id: its wrapping is replaced), each key file of ``key_files``, and
        every escrow key; last the superseded wrappings are removed. A wrapping whose
        secret is not at hand cannot be re-wrapped: rotation refuses while there is one,
        unless ``remove_others``. A crash part-way leaves wrappings of both generations,
        each opening everything its generation can read. Run again: a new generation no
        wrapping holds yet (the crash came right after its document) is removed and
        rotated anew; else the rotate goes from a key of the new generation, which may
        re-wrap key files of an older generation of this key (``_check_key_file``).
        """
        newest = self.generations()[-1]
        current = self.wrappings()
        if newest > self.key.generation:
            holders = [f"{w.kind} {w.key_id}" for w in current if w.generation >= newest]
            if holders or newest != self.key.generation + 1:
                raise UsageError(
                    f"the repository is at generation {newest} and this key wraps generation "
                    f"{self.key.generation}: rotate again with a key of generation {newest} "
                    f"({', '.join(holders) or 'none left'}); --key-file-also takes key files "
                    "of the older one")
            # A rotate killed after writing the next generation's document and before any
            # wrapping of it: nobody ever held that key, so nothing was sealed with it.
            try:
                self.store.delete(f"{GENERATIONS_PREFIX}{newest}")
            except StoreError as err:
                raise UsageError(f"generation {newest} was left by an interrupted rotate and "
                                 f"no key wraps it, but it cannot be removed: {err}") from None
            self.warn(f"generation {newest}, left by an interrupted rotate with no key "
                      "wrapping it, removed; rotating again")
        files = {kf.key_id: kf for kf in key_files}
        if secret.key_file is not None:
            files[secret.key_file.key_id] = secret.key_file
        for kf in files.values():
            self._check_key_file(kf)
        keep_passphrase = self.key_id if secret.passphrase is not None else None
        others = [w for w in current if w.kind != "escrow" and w.key_id not in files
                  and w.key_id != keep_passphrase]
        if others and not remove_others:
            names = ", ".join(f"{w.kind} {w.key_id}" for w in others)
            raise UsageError(f"key rotate cannot re-wrap {names} (their secrets are not "
                             "given): pass their key files with --key-file-also, remove "
                             "them, or pass --remove-others")
        new = self.key.rotated()
        doc = {"generation": new.generation,
               "older": {str(g): base64.b64encode(k).decode() for g, k in new.older}}
        self.store.put(f"{GENERATIONS_PREFIX}{new.generation}",
                       seal_document(new, TYPE_GENERATIONS, doc), if_absent=True)
        rewrapped: list[str] = []
        for kf in files.values():
            self.store.put(f"keys/{kf.key_id}", wrap(new, self.config.id, kf.key_id,
                                                     key_file=kf))
            rewrapped.append(kf.key_id)
        old_key, self.key = self.key, new
        if secret.passphrase is not None:
            new_id = self.add_passphrase(secret.passphrase, kdf=kdf)
            rewrapped.append(new_id)
            self.key_id = new_id
        publics = {w.escrow_key: w.escrow_public for w in current if w.kind == "escrow"}
        for escrow_id, public in sorted(publics.items()):
            from drsync.repo.escrow import EscrowPublicKey

            assert public is not None
            escrow = EscrowPublicKey(public)
            if escrow.key_id != escrow_id:
                self.warn(f"escrow wrapping for {escrow_id} names another public key: skipped")
                continue
            rewrapped.append(self.add_escrow(escrow))
        removed = []  # the wrappings dropped, not those replaced by a new one
        for w in current:
            if w.key_id not in rewrapped:
                with contextlib.suppress(ObjectNotFound):
                    self.store.delete(f"keys/{w.key_id}")
                if w in others:
                    removed.append(w)
        return Rotation(old_key.generation, new.generation, rewrapped, removed)

    def _check_key_file(self, kf: KeyFile) -> None:
        """A key file given to ``rotate`` must open this generation now: rotation must not
        hand the new generation to a secret that never held the old one."""
        name = f"keys/{kf.key_id}"
        try:
            opened = unwrap(self.store.get(name), kf.key_id, Secret(key_file=kf))
        except ObjectNotFound:
            opened = None
        older = dict(self.key.older)
        held_older = (opened is not None and opened.generation < self.key.generation
                      and older.get(opened.generation) == opened.raw[:32]
                      and opened.raw[32:] == self.key.raw[32:])
        # A key file of an older generation of this key (an interrupted rotate re-wrapped
        # others before it) held the old one: it may be given the new generation.
        if opened is None or kf.repo_id != self.config.id or (
                opened.raw != self.key.raw and not held_older):
            raise WrongKey(f"key file for key {kf.key_id} does not open generation "
                           f"{self.key.generation} of {self.url}")

    # -- sealed documents ------------------------------------------------------

    def save_document(self, kind: bytes, prefix: str, doc: dict[str, Any], *,
                      if_absent: bool = False) -> tuple[str, int]:
        """Store a sealed document under its SHA-256. With ``if_absent`` the store never
        replaces an existing object; one already there has the same name, so the same
        bytes, and that is success."""
        data = seal_document(self.key, kind, doc, self.config.compression_level)
        oid = object_id(data)
        with contextlib.suppress(ObjectExists):
            self.store.put(f"{prefix}/{oid}", data, if_absent=if_absent)
        return oid, len(data)

    def load_document(self, kind: bytes, name: str) -> dict[str, Any]:
        try:
            return self._read_document(kind, name)
        except FormatError as err:
            raise self._unreadable(name, err) from None

    def _unreadable(self, name: str, err: FormatError) -> IntegrityError:
        return IntegrityError(f"{self.url}: object {name}: {err}")

    def _read_document(self, kind: bytes, name: str) -> dict[str, Any]:
        """The opened document; FormatError saying what is wrong with it."""
        try:
            data = self.store.get(name)
        except ObjectNotFound:
            raise Vanished("missing (listed, then gone)") from None
        if object_id(data) != name.rsplit("/", 1)[-1]:
            raise FormatError("content does not match its name")
        return open_document(self.key, kind, data)

    def _read_documents(self, kind: bytes, names: Sequence[str]
                        ) -> Iterator[tuple[str, dict[str, Any] | FormatError]]:
        """Each of ``names`` opened (``_read_document``; a FormatError is given, not
        raised), in order, fetched ``store.connections`` at a time: a year of nightly
        snapshots or index files is hundreds of requests, which over a WAN were waited
        for one round trip at a time. At most that many documents are held ahead."""
        def read(name: str) -> dict[str, Any] | FormatError:
            try:
                return self._read_document(kind, name)
            except FormatError as err:
                return err

        workers = min(len(names), max(1, self.store.connections))
        if workers <= 1:
            for name in names:
                yield name, read(name)
            return
        pool = ThreadPoolExecutor(workers, thread_name_prefix="repo-read")
        try:
            ahead: collections.deque[tuple[str, Future[dict[str, Any] | FormatError]]] = (
                collections.deque())
            pending = iter(names)
            for name in pending:
                ahead.append((name, pool.submit(read, name)))
                if len(ahead) >= workers:
                    break
            while ahead:
                name, future = ahead.popleft()
                following = next(pending, None)
                if following is not None:
                    ahead.append((following, pool.submit(read, following)))
                yield name, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def missing(self, name: str, named_by: str, why: str = "missing") -> IntegrityError:
        """The error for an object the repository needs and the store does not hold (or
        holds with another size)."""
        return IntegrityError(f"{self.url}: object {name}: {why} (named by {named_by})")

    # -- index ----------------------------------------------------------------

    def index_names(self) -> list[str]:
        return sorted(info.key for info in self.store.list("index/"))

    def stored_packs(self) -> dict[str, int]:
        """Pack id -> size, of every pack the store holds now (one listing of data/)."""
        return {info.key.rsplit("/", 1)[-1]: info.size for info in self.store.list("data/")}

    def load_index(self, warn: Warn | None = None) -> Index:
        """The union of the readable index files, trusting only packs seen present.

        An index file that cannot be read is skipped (``warn`` is told, and
        ``index.skipped`` names it); then the packs no readable index names are
        adopted from their authenticated headers, so their blobs stay reachable.
        """
        warn = warn or self.warn
        index = Index()
        names = index.names = self.index_names()
        # Listed after the index names: every pack a listed index names was stored first.
        index.present = self.stored_packs()
        for name, doc in self._read_documents(TYPE_INDEX, names):
            try:
                if isinstance(doc, FormatError):
                    raise doc
                index.merge_document(doc, index.present)
            except FormatError as err:
                index.skipped[name] = str(err)
            except (KeyError, ValueError, TypeError) as err:
                index.skipped[name] = f"malformed index: {err}"
            else:
                continue
            warn(f"object {name}: skipped: {index.skipped[name]}")
        if index.skipped:
            from drsync.repo.resume import adopt_unindexed

            adopt_unindexed(self.store, self.key, index, index.present)
        return index

    # -- blobs ----------------------------------------------------------------

    def read_blob(self, blob_id: bytes, loc: BlobLocation) -> bytes:
        """Fetch, decrypt, decompress and verify one blob (its whole group, if grouped)."""
        return dict(self.read_range(blob_id, loc))[blob_id]

    def read_range(self, blob_id: bytes, loc: BlobLocation) -> list[tuple[bytes, bytes]]:
        """Fetch and open the stored range of ``blob_id`` at ``loc``: every blob in it,
        verified (``unseal_range``); IntegrityError naming the object and offset."""
        name = pack_key(loc.pack_id)
        try:
            sealed = self.store.get(name, loc.offset, loc.length)
        except ObjectNotFound:
            raise self.missing(name, "the index") from None
        try:
            return self.open_range(blob_id, loc, sealed)
        except IntegrityError:
            # A byte flipped in transit fails authentication like one flipped at rest:
            # read once more before calling it damage.
            return self.open_range(blob_id, loc, self.store.get(name, loc.offset, loc.length))

    def open_range(self, blob_id: bytes, loc: BlobLocation,
                   sealed: bytes) -> list[tuple[bytes, bytes]]:
        """``unseal_range``, its SealError as an IntegrityError naming where."""
        try:
            return self.unseal_range(loc, sealed, blob_id)
        except SealError as err:
            what = (f"blob {blob_id.hex()[:16]}" if loc.group is None else
                    f"group of {len(loc.group)} blobs with {blob_id.hex()[:16]}")
            raise IntegrityError(
                f"{self.url}: object {pack_key(loc.pack_id)} offset {loc.offset}: "
                f"{what}: {err}") from None

    def unseal_located(self, blob_id: bytes, loc: BlobLocation,
                       sealed: bytes | memoryview) -> bytes:
        """The verified plaintext of a blob read from ``loc``; SealError when it is not."""
        if loc.group is None:
            if len(sealed) != loc.length:
                raise SealError(f"truncated: {len(sealed)} of {loc.length} bytes")
            return self.key.unseal_chunk(sealed, blob_id, loc.raw_length)
        member_id, plain = self.unseal_range(loc, sealed, blob_id)[loc.member]
        if member_id != blob_id:
            raise SealError(f"the group holds {member_id.hex()[:16]} there")
        return plain

    def unseal_range(self, loc: BlobLocation, sealed: bytes | memoryview,
                     blob_id: bytes) -> list[tuple[bytes, bytes]]:
        """Every blob of the stored range at ``loc`` (whose bytes are ``sealed``), as
        verified ``(id, plaintext)`` pairs in order: one for a single blob (``blob_id``),
        each member for a group, opened once. SealError when any does not verify."""
        if len(sealed) != loc.length:
            raise SealError(f"truncated: {len(sealed)} of {loc.length} bytes")
        if loc.group is None:
            return [(blob_id, self.key.unseal_chunk(sealed, blob_id, loc.raw_length))]
        return open_group(self.key, loc.group, sealed)

    def unseal_views(self, loc: BlobLocation, sealed: bytes | memoryview,
                     blob_id: bytes) -> list[tuple[bytes, bytes | memoryview]]:
        """``unseal_range``, a group's members as views of its plaintext, not copies
        (a restore's writes: each member is written and dropped)."""
        if len(sealed) != loc.length:
            raise SealError(f"truncated: {len(sealed)} of {loc.length} bytes")
        if loc.group is None:
            return [(blob_id, self.key.unseal_chunk(sealed, blob_id, loc.raw_length))]
        return list(open_group_views(self.key, loc.group, sealed))

    # -- snapshots ------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        return [info.key.removeprefix("snapshots/") for info in self.store.list("snapshots/")]

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        name = f"snapshots/{snapshot_id}"
        return self._snapshot(name, self.load_document(TYPE_SNAPSHOT, name))

    def _snapshot(self, name: str, doc: dict[str, Any]) -> Snapshot:
        try:
            return Snapshot.from_doc(doc, name.removeprefix("snapshots/"))
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise IntegrityError(f"{self.url}: object {name}: malformed snapshot: {err}") from None

    def snapshots(self, warn: Warn | None = None, *,
                  unreadable: list[str] | None = None) -> list[Snapshot]:
        """Every readable snapshot, oldest first; an unreadable one is skipped (``warn``
        is told: ``check`` reports it; ``unreadable`` gets what is wrong with each one
        that is there but cannot be read, not with one a forget removed meanwhile). Read
        ``store.connections`` at a time."""
        return self.listed_snapshots(warn, unreadable=unreadable)[0]

    def listed_snapshots(self, warn: Warn | None = None, *, unreadable: list[str] | None = None
                         ) -> tuple[list[Snapshot], list[str]]:
        """``snapshots()`` and the id of every snapshot listed, readable or not, from one
        listing (a round trip less over a WAN than listing again)."""
        warn = warn or self.warn
        snaps = []
        ids = self.snapshot_ids()
        names = [f"snapshots/{snapshot_id}" for snapshot_id in ids]
        for name, doc in self._read_documents(TYPE_SNAPSHOT, names):
            try:
                if isinstance(doc, FormatError):
                    raise self._unreadable(name, doc)
                snaps.append(self._snapshot(name, doc))
            except IntegrityError as err:
                message = str(err).removeprefix(self.url + ": ")
                warn(f"{message}: skipped")
                if (unreadable is not None and not isinstance(doc, Vanished)
                        and _OBJECT_ID.fullmatch(name.removeprefix("snapshots/"))):
                    unreadable.append(message)  # a stray file there was never a snapshot
        return sorted(snaps, key=lambda s: (s.time, s.id)), ids

    def latest(self, kinds: Iterable[str] | None = None, *,
               seen: list[Snapshot] | None = None) -> Snapshot:
        """The newest snapshot (of one of ``kinds``). IntegrityError when a snapshot is
        there but cannot be read: it may be the newest (its time is inside it), and
        restoring an older point with exit 0 would hide the loss of the newer one.
        ``seen`` gets every snapshot read, oldest first (a caller choosing among them
        reads them once)."""
        unreadable: list[str] = []
        wanted = None if kinds is None else set(kinds)
        every = self.snapshots(lambda _message: None, unreadable=unreadable)
        if seen is not None:
            seen.extend(every)
        snaps = [s for s in every if wanted is None or s.source_kind in wanted]
        if unreadable:
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise IntegrityError(
                f"{self.url}: cannot tell the latest snapshot: {unreadable[0]}{more}, and it may "
                "be the newest; `drsync check` names the damage, and a snapshot id "
                "(`drsync snapshots`) restores a readable one")
        if not snaps:
            what = "" if wanted is None else f" of kind {'/'.join(sorted(wanted))}"
            raise SnapshotNotFound(f"repository {self.url} has no snapshot{what} yet")
        return snaps[-1]

    def find_snapshot(self, ref: str) -> Snapshot:
        """``latest`` (see ``latest``), a full id, or a unique id prefix (at least 4
        characters)."""
        if ref == "latest":
            return self.latest()
        matches = [s for s in self.snapshot_ids() if s.startswith(ref.lower())]
        if len(ref) < 4 or not matches:
            raise SnapshotNotFound(f"no snapshot {ref!r} in {self.url}")
        if len(matches) > 1:
            raise SnapshotNotFound(f"snapshot prefix {ref!r} is ambiguous in {self.url}")
        return self.load_snapshot(matches[0])

    def save_snapshot(self, snap: Snapshot) -> tuple[str, int]:
        # Conditional: a snapshot is never silently replaced by a concurrent writer.
        oid, size = self.save_document(TYPE_SNAPSHOT, "snapshots", snap.to_doc(), if_absent=True)
        snap.id = oid
        return oid, size


def utc_now() -> str:
    """ISO 8601 UTC with microseconds: snapshots sort by it."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
