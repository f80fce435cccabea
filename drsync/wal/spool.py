"""The spool: sealed WAL objects in one local directory, written durably.

A file appears under its final name only complete and fsynced (temporary
file, fsync, hard link to the final name, which fails if the name is taken,
then a directory fsync), so a process killed at any point leaves either
nothing or the whole object. Names starting with a dot are temporaries and
the cached key wrapping; ``names()`` skips them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from drsync.errors import StoreError

__all__ = ["Spool", "default_spool_dir"]

TMP_PREFIX = ".tmp-"


def default_spool_dir(repo_tag: str) -> Path:
    """Under the running user's state directory, one spool per repository."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "drsync" / "wal-spool" / repo_tag


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on device"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or str(err)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).absolute()

    def _error(self, err: OSError, what: str) -> StoreError:
        return StoreError(f"spool {self.dir}: {what}: {_reason(err)}")

    def ensure(self) -> None:
        if self.dir.is_dir():
            return
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _fsync_dir(self.dir.parent)
        except OSError as err:
            raise self._error(err, "creating it") from None

    def path(self, name: str) -> Path:
        return self.dir / name

    def exists(self, name: str) -> bool:
        return (self.dir / name).exists()

    def read(self, name: str, length: int | None = None) -> bytes:
        try:
            with open(self.dir / name, "rb") as fh:
                return fh.read() if length is None else fh.read(length)
        except FileNotFoundError:
            raise
        except OSError as err:
            raise self._error(err, f"reading {name}") from None

    def write_new(self, name: str, data: bytes) -> bool:
        """Store ``data`` as ``name`` durably; False (nothing written) if the name exists."""
        self.ensure()
        final = self.dir / name
        tmp = self.dir / (TMP_PREFIX + os.urandom(8).hex())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if len(data) >= 65536:
                    os.posix_fallocate(fd, 0, len(data))  # a full disk fails here, at once
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(self.dir)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise self._error(err, f"writing {name}") from None
        return True

    def names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self._error(err, "listing") from None

    def remove(self, name: str) -> None:
        try:
            (self.dir / name).unlink(missing_ok=True)
            _fsync_dir(self.dir)
        except OSError as err:
            raise self._error(err, f"removing {name}") from None

    def remove_temporaries(self) -> int:
        removed = 0
        for name in os.listdir(self.dir) if self.dir.is_dir() else []:
            if name.startswith(TMP_PREFIX):
                (self.dir / name).unlink(missing_ok=True)
                removed += 1
        return removed
