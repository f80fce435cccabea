"""The spool: sealed WAL objects in one local directory, written durably.

A file appears under its final name only complete and fsynced (temporary
file, fsync, hard link to the final name, which fails if the name is taken,
then a directory fsync), so a process killed at any point leaves either
nothing or the whole object. Names starting with a dot are temporaries and
the cached key wrapping; ``names()`` skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

from drsync.errors import ObjectExists, StoreError
from drsync.store.local import LocalStore, describe_os_error, fsync_dir

__all__ = ["Spool"]


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).absolute()
        self._store = LocalStore(self.dir)

    def _error(self, err: OSError, what: str) -> StoreError:
        return StoreError(f"spool {self.dir}: {what}: {describe_os_error(err)}")

    @classmethod
    def if_present(cls, directory: str | Path) -> Spool | None:
        """The spool at ``directory`` if that is a directory we can see, else None: for
        readers (wal-fetch, pitr-range) that must never create one."""
        return cls(directory) if os.path.isdir(directory) else None

    def ensure(self) -> None:
        if self.dir.is_dir():
            return
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fsync_dir(self.dir.parent)
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
        """Store ``data`` as ``name`` durably; False (nothing written) if the name exists.

        The local store's put-if-absent is exactly the durable write the spool needs.
        """
        self.ensure()
        try:
            self._store.put(name, data, if_absent=True)
        except ObjectExists:
            return False
        except StoreError as err:
            raise StoreError(f"spool {err}") from None
        return True

    def names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self._error(err, "listing") from None

    def usage(self) -> tuple[int, int, float | None]:
        """(files, bytes, oldest mtime) of what waits in the spool; a file shipped while
        this looks is left out of the bytes and the age."""
        names = self.names()
        total, oldest = 0, None
        for name in names:
            try:
                st = os.stat(self.dir / name)
            except FileNotFoundError:
                continue
            total += st.st_size
            oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
        return len(names), total, oldest

    def remove(self, name: str) -> None:
        try:
            (self.dir / name).unlink(missing_ok=True)
            fsync_dir(self.dir)
        except OSError as err:
            raise self._error(err, f"removing {name}") from None
