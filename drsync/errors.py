"""Every error drsync expects, and the exit code each one maps to.

The tree::

    DrsyncError (1)                  anything drsync anticipated; one line, no traceback
    ├── UsageError (2)               a command line that cannot be carried out
    ├── ConfigError (4)              a config or fleet file that is missing, unreadable or invalid
    ├── RepositoryNotFound (10)      no repository at the URL
    ├── RepositoryExists (10)        `init` over an existing repository
    ├── WrongKey (11)                the passphrase, key file or escrow key opens no wrapping of
    │                                the master key
    ├── RepositoryLocked (12)        another writer holds the repository lock
    ├── IntegrityError (13)          a stored byte is not what was written (object, offset), or
    │                                an object the repository needs (named by an index, a
    │                                listing) is missing from the store
    │   └── UnsafePath (13)          a snapshot entry that would be written outside the restore
    │                                target (absolute, `..`, through a symlink); names entry and
    │                                snapshot
    ├── StoreError (14)              the store failed: I/O, full disk, permission, network
    │   └── ObjectNotFound (14)      the store holds no such key; store level only: where the
    │                                repository needs the object it raises IntegrityError (13)
    │                                naming it, wal-fetch raises WalNotFound (1)
    │   └── ObjectExists (14)        a put-if-absent found the key taken
    │   └── ObjectLocked (14)        the store refuses to delete or replace a retained object
    │   └── StoreUnavailable (14)    a transient failure (reset, timeout, 5xx, throttling, a bad
    │                                transfer); the retry wrapper retries these, and only these
    ├── SourceError (15)             a source cannot be read at all (missing database, bad path)
    ├── SnapshotNotFound (16)        no snapshot matches the id or prefix given
    ├── RestoreTargetError (17)      the restore target cannot be written (full disk, permission)
    ├── WalNotFound (1)              wal-fetch: no such WAL file in the spool or the store
    ├── WalConflict (20)             a WAL file pushed again with other content (never overwritten)
    └── RunInterrupted (21)          a backup stopped between packs (the agent's deadline,
                                     SIGTERM) before writing its snapshot; its packs are reused

A backup that finished but skipped unreadable files exits with PARTIAL (3);
that is an outcome, not an exception.

Exit codes are stable: scripts, systemd units and PostgreSQL's
archive_command read them. Add new codes; never renumber.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_PARTIAL",
    "ConfigError",
    "DrsyncError",
    "IntegrityError",
    "ObjectExists",
    "ObjectLocked",
    "ObjectNotFound",
    "RepositoryExists",
    "RepositoryLocked",
    "RepositoryNotFound",
    "RestoreTargetError",
    "RunInterrupted",
    "SnapshotNotFound",
    "SourceError",
    "StoreError",
    "StoreUnavailable",
    "UnsafePath",
    "UsageError",
    "WalConflict",
    "WalNotFound",
    "WrongKey",
]

EXIT_OK = 0
EXIT_PARTIAL = 3


class DrsyncError(Exception):
    """Base of every anticipated failure; ``str(err)`` is the one line a user sees."""

    exit_code = 1

    def __str__(self) -> str:
        # Messages quote names and values from files and flags; a newline or other control
        # character in those must not break the one line (nor forge a second one in a log).
        text = super().__str__()
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UsageError(DrsyncError):
    exit_code = 2


class ConfigError(DrsyncError):
    exit_code = 4


class RepositoryNotFound(DrsyncError):
    exit_code = 10


class RepositoryExists(DrsyncError):
    exit_code = 10


class WrongKey(DrsyncError):
    exit_code = 11


class RepositoryLocked(DrsyncError):
    exit_code = 12


class IntegrityError(DrsyncError):
    exit_code = 13


class UnsafePath(IntegrityError):
    exit_code = 13


class StaleKey(IntegrityError):
    """An object sealed by a master-key generation the key at hand does not hold: opened
    from a wrapping cached before a rotation, say; a full open of the repository reads it."""
    exit_code = 13


class StoreError(DrsyncError):
    exit_code = 14


class ObjectNotFound(StoreError):
    exit_code = 14


class ObjectExists(StoreError):
    exit_code = 14


class ObjectLocked(StoreError):
    exit_code = 14


class StoreUnavailable(StoreError):
    exit_code = 14


class SourceError(DrsyncError):
    exit_code = 15


class SnapshotNotFound(DrsyncError):
    exit_code = 16


class RestoreTargetError(DrsyncError):
    exit_code = 17


class WalNotFound(DrsyncError):
    """Exit 1 is what PostgreSQL's restore_command contract expects for a missing file."""

    exit_code = 1


class WalConflict(DrsyncError):
    exit_code = 20


class RunInterrupted(DrsyncError):
    """Asked to stop (``reason``: "deadline" or "stop"); no snapshot was written."""

    exit_code = 21

    def __init__(self, message: str, reason: str = "stop") -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def run_status(self) -> str:
        """How the run is recorded: ``overrun`` at the deadline, ``failed`` otherwise."""
        return "overrun" if self.reason == "deadline" else "failed"
