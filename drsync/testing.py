"""Helpers for tests, shipped with the code: repositories with a fast KDF, made in-process.

``FAST_KDF`` makes scrypt cheap; it exists for test suites only and must never
protect a real repository. The product has no switch that weakens the KDF of
``drsync init``: a test that needs a repository (in memory, in a directory, in a
bucket) makes it here, through the same public ``Repository.init`` and
``add_key_file`` that ``init`` calls. Key files involve no KDF at all.
"""

from __future__ import annotations

import collections
import io
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

from drsync.repo import Entry, KdfParams, RepoConfig, Repository, Secret, Snapshot, SnapshotWriter
from drsync.store import MemoryStore, ObjectInfo, Store, StoreOptions, open_store

__all__ = ["FAST_KDF", "CountingStore", "backup_bytes", "drsync_processes", "make_repo",
           "make_repository", "resident_pushers", "stop_leftover_processes", "text_like"]

FAST_KDF = KdfParams(n=1 << 10)


def make_repo(store: Store | None = None, passphrase: str = "test passphrase", *,
              chunk_avg: int = 1 << 20, chunk_min: int = 256 << 10, chunk_max: int = 4 << 20,
              pack_size: int = 16 << 20) -> Repository:
    """Create a repository (in memory unless a store is given) and reopen it."""
    store = store if store is not None else MemoryStore()
    config = RepoConfig(chunk_avg=chunk_avg, chunk_min=chunk_min, chunk_max=chunk_max,
                        pack_size=pack_size)
    Repository.init(store, passphrase, config, kdf=FAST_KDF)
    return Repository.open(store, Secret(passphrase=passphrase))


def make_repository(url: str | Store, passphrase: str | None = None,
                    key_file_path: str | Path | None = None, *,
                    config: RepoConfig | None = None,
                    options: StoreOptions | None = None) -> Repository:
    """Create a repository at ``url`` (a path, file:// or s3:// URL, or a store) as
    ``drsync init [--new-key-file PATH]`` would, with the fast KDF for the passphrase.

    At least one of ``passphrase`` and ``key_file_path`` is needed; the key file is
    written with mode 0600 and never overwrites an existing one.
    """
    if passphrase is None and key_file_path is None:
        raise ValueError("make_repository needs a passphrase, a key file path, or both")
    store = url if isinstance(url, Store) else open_store(url, options)
    repo = Repository.init(store, passphrase, config or RepoConfig(), kdf=FAST_KDF)
    if key_file_path is not None:
        repo.add_key_file().write(key_file_path)
    return repo


def backup_bytes(repo: Repository, data: bytes, name: str = "stream") -> Snapshot:
    """Back up one stream without the service layer (no lock, no catalog)."""
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_stream(Entry(name, "stream"), io.BytesIO(data))
    return writer.commit(host="test", source_kind="stdin", source_spec={"name": name},
                         tags=[], summary={}, version="test")


_WORDS = ["tanaka", "suzuki", "sato", "takahashi", "watanabe", "miyazaki", "nobeoka", "saga",
    "kyushu", "tax", "resident", "insurance", "premium", "household", "address", "1-2-3",
    "chome", "banchi", "2011", "registry", "municipal", "office"]


def text_like(size: int, seed: int = 0) -> bytes:
    """Compressible but not trivially repetitive text, like a dump."""
    rng = random.Random(seed)
    out = io.BytesIO()
    while out.tell() < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        out.write(f"{rng.randint(0, 10**9)}\t{line}\t{os.urandom(4).hex()}\n".encode())
    return out.getvalue()[:size]


class CountingStore(Store):
    """A store that counts the reads it serves, per key (and how many bytes), around
    another store; ``corrupt_first`` flips a byte in the first ranged read of each
    of those keys, as a link might."""

    def __init__(self, inner: Store, *, connections: int = 4) -> None:
        self.inner = inner
        self.url = inner.url
        self.connections = connections
        self.gets: collections.Counter[str] = collections.Counter()
        self.bytes_read = 0
        self.corrupt_first: set[str] = set()
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(key, offset, length)
        with self._lock:
            self.gets[key] += 1
            self.bytes_read += len(data)
            if key in self.corrupt_first and data:
                self.corrupt_first.discard(key)
                data = bytes([data[0] ^ 1]) + data[1:]
        return data

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def data_gets(self) -> dict[str, int]:
        """GETs per pack (objects under data/)."""
        return {k: n for k, n in self.gets.items() if k.startswith("data/")}


def resident_pushers(marker: str) -> list[int]:
    """Pids of wal-push processes (resident pushers, drsync.wal.resident, among them) whose
    command line, environment or working directory mentions ``marker``, e.g. a test's
    directory (PostgreSQL runs archive_command and restore_command in its data directory)."""
    return drsync_processes(marker, (b"wal-push",))


def drsync_processes(marker: str, verbs: tuple[bytes, ...]) -> list[int]:
    """Pids of processes whose command line holds one of ``verbs`` and whose command line,
    environment or working directory mentions ``marker``."""
    found = []
    needle = marker.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not any(verb in cmdline for verb in verbs):
                continue
            if (needle in cmdline or needle in Path(f"/proc/{pid}/environ").read_bytes()
                    or os.readlink(f"/proc/{pid}/cwd").startswith(marker)):
                found.append(int(pid))
        except OSError:
            continue
    return found


def stop_leftover_processes(marker: str) -> list[int]:
    """SIGKILL what wal-push and wal-fetch left running for ``marker``: resident pushers
    (a killed pusher leaves the spool as a killed wal-push does) and wal-fetch's detached
    prefetchers (drsync.wal.prefetch; their queue is only a cache). Tests leave no process
    behind: a prefetcher would otherwise idle on for ``IDLE_S`` after its test. Returns
    the pids signalled."""
    import contextlib
    import signal

    left = drsync_processes(marker, (b"wal-push", b"wal-fetch"))
    for pid in left:
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)
    return left
