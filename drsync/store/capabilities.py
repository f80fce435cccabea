"""Optional capabilities a store may have beyond the five verbs.

The layers above never test for a backend class; they ask whether a store
(or the store inside its wrappers) offers a capability, and do without it
when it does not. The S3 store implements them all; a local directory reports its stale temporaries
as pending uploads.

A store can also find out only when it asks that it lacks an optional
feature (a minimal S3 server answers 501 to ListMultipartUploads): the
capability then raises ``CapabilityUnavailable``, the caller does without
it, and the store says so once per process with ``warn_once`` (a
``drsync.store`` log warning; the CLI prints it as ``drsync: warning: ...``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol, runtime_checkable

from drsync.errors import StoreError

__all__ = ["CapabilityUnavailable", "ContentDigests", "Paced", "Pacer", "PendingUpload",
           "PendingUploads", "ResumableUploads", "Staged", "StagedPuts", "capability", "stage",
           "warn_once"]

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class CapabilityUnavailable(StoreError):
    """This store does not offer the optional capability after all (it said so when asked)."""


def warn_once(url: str, feature: str, message: str) -> None:
    """Log ``message`` as a warning the first time this process meets ``feature`` missing
    on the store at ``url``; later calls are silent."""
    with _warned_lock:
        if (url, feature) in _warned:
            return
        _warned.add((url, feature))
    import logging  # here: wal-push imports this module and never warns

    logging.getLogger("drsync.store").warning("%s", message)

Pacer = Callable[[int], None]
"""Called with a byte count before those bytes go over the wire; blocks to pace them."""

@dataclass(frozen=True)
class PendingUpload:
    """An upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    started: float  # Unix time
    bytes_stored: int  # bytes of the parts already on the store

    def describe(self) -> str:
        import time

        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.started))
        return f"unfinished upload of {self.key} started {stamp} ({self.bytes_stored} bytes stored)"


@runtime_checkable
class PendingUploads(Protocol):
    """A store whose large puts go up in parts that can be left behind by a cut.

    ``pending_uploads`` raises CapabilityUnavailable on a store that cannot list them."""

    def pending_uploads(self) -> list[PendingUpload]: ...

    def abort_upload(self, upload: PendingUpload) -> None: ...


@runtime_checkable
class ResumableUploads(Protocol):
    """A store that can finish, in this process, an upload a dead process started."""

    def resume_data(self, upload: PendingUpload) -> bytes | None: ...

    def tidy_spool(self) -> None: ...


@runtime_checkable
class ContentDigests(Protocol):
    """A store that records each object's SHA-256 at upload and had the transfer verified
    against it, so a reader can trust the digest without reading the object back."""

    def content_sha256(self, key: str) -> str | None: ...


@runtime_checkable
class Paced(Protocol):
    """A store that can pace its transfers block by block (a throttle installs pacers)."""

    def set_pacing(self, upload: Pacer | None, download: Pacer | None) -> None: ...


class Staged:
    """An object written in pieces before its key is known (a pack is named by the hash
    of its bytes): ``write`` appends bytes, ``file`` reads them back (flushed first),
    ``commit`` stores them at a key, ``abort`` drops them. This one spools into an
    unlinked temporary file (``TMPDIR``) and ``put``s it whole: any store, through all
    its wrappers."""

    def __init__(self, store: Any) -> None:
        import tempfile

        self._store = store
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="drsync-pack-")  # noqa: SIM115

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as err:
            import tempfile

            from drsync.store.local import describe_os_error

            raise StoreError(f"{tempfile.gettempdir()}: writing a temporary file for a "
                             f"pack: {describe_os_error(err)}") from None

    def commit(self, key: str) -> None:
        if self._store is None:
            raise ValueError("this staged object has no store to be committed to")
        with self.file:
            self.file.seek(0)
            data = self.file.read()
        self._store.put(key, data)

    def abort(self) -> None:
        import contextlib

        with contextlib.suppress(OSError):  # a full disk: the buffer is not written
            self.file.close()


@runtime_checkable
class StagedPuts(Protocol):
    """A store that can take a staged object without copying it: a local directory
    writes it beside its place and links it there (``LocalStore.stage``)."""

    def stage(self, prefix: str, size_hint: int = 0) -> Staged: ...


def stage(store: object, prefix: str, size_hint: int = 0) -> Staged:
    """A staged object for ``store``, under ``prefix`` where it will be committed.

    Asked of the outermost store only, never of one inside a wrapper: a throttle or a
    counter around a local directory must see every byte go through its ``put``."""
    if isinstance(store, StagedPuts):
        return store.stage(prefix, size_hint)
    return Staged(store)


def capability(store: object, kind: type) -> Any:
    """The first store in the wrapper chain (``.inner``) that has ``kind``, or None."""
    seen = 0
    while store is not None and seen < 16:
        if isinstance(store, kind):
            return store
        store = getattr(store, "inner", None)
        seen += 1
    return None
