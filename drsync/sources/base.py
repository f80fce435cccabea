"""What every source is and yields, in its own terms (sources never import the repository).

A :class:`Source` is one thing to back up: a file tree, a SQLite database,
standard input, a PostgreSQL or MariaDB server. Every source is used the
same way by the backup service::

    with source:
        for item in source.items():
            ...                      # store item.meta, read item.open() if any
        spec = source.spec()         # complete only once items() is exhausted
        source.problems              # what was not backed up, and why

Building a source does no I/O; entering it may (a consistent copy, a
database session), and leaving it releases what it holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, Self

from drsync.tree import Entry

__all__ = ["Source", "SourceBase", "SourceItem", "SourceProblem", "last_line"]


@dataclass
class SourceItem:
    meta: Entry  # without chunks: the writer adds them
    open: Callable[[], BinaryIO] | None = None  # content, for files and streams
    origin: str = ""  # where it was read from, for messages
    # > 0: store the content in chunks cut at every multiple of this many bytes
    # (block-structured files: a changed page changes one chunk); 0: content-defined.
    fixed_chunk: int = 0


@dataclass(frozen=True)
class SourceProblem:
    """Something not backed up: the path and why."""

    path: str
    reason: str
    partial: bool = True  # False: skipped by design (special files), reported only


class Source(Protocol):
    """One thing to back up (see the module docstring for how it is used)."""

    kind: str  # the snapshot's source kind: "files", "pg_dump", "mariadb_dump", ...
    # True: an item that cannot be read is a problem (the run ends partial) rather
    # than an error (the run fails): a file tree, where one unreadable file is no
    # reason to lose the others; a database dump is all or nothing.
    skips_unreadable: bool
    problems: list[SourceProblem]

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def describe(self) -> str:
        """What is backed up, for the run record (no password)."""
        ...

    def items(self) -> Iterator[SourceItem]: ...

    def spec(self) -> dict[str, Any]:
        """What the snapshot records about the source (positions, versions, counts)."""
        ...


class SourceBase:
    """What most sources share: a problems list, a spec dict filled as items flow, and an
    exit stack for what entering or reading holds (a copy, a session, a process)."""

    kind = ""
    skips_unreadable = False

    def __init__(self) -> None:
        self.problems: list[SourceProblem] = []
        self._spec: dict[str, Any] = {}
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        self._stack.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)


_ERROR_LINE = re.compile(r"\b(error|fatal)\b\s*:", re.IGNORECASE)


def last_line(text: str) -> str:
    """What a tool's stderr says went wrong: its last line that says "error:" or "FATAL:",
    else its last non-blank line. The very last line is often context, not the cause
    (pg_restore's "Command was: ALTER TABLE ... OWNER TO app;" after "role app does not
    exist"; psql's "Is the server running locally...?" after what failed)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln)]
    return errors[-1] if errors else lines[-1] if lines else "failed without a message"
