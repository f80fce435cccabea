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
from typing import Any, Protocol, runtime_checkable

from drsync.errors import StoreError

__all__ = ["CapabilityUnavailable", "ContentDigests", "Paced", "Pacer", "PendingUpload",
           "PendingUploads", "ResumableUploads", "capability", "warn_once"]

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


def capability(store: object, kind: type) -> Any:
    """The first store in the wrapper chain (``.inner``) that has ``kind``, or None."""
    seen = 0
    while store is not None and seen < 16:
        if isinstance(store, kind):
            return store
        store = getattr(store, "inner", None)
        seen += 1
    return None
