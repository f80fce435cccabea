"""Standard input (or any byte stream) as one named stream."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from drsync.errors import SourceError, UsageError
from drsync.sources.base import SourceBase, SourceItem
from drsync.tree import Entry

__all__ = ["StdinSource"]


class StdinSource(SourceBase):
    """One stream named ``name``, read from ``stream`` (default: standard input's bytes)."""

    kind = "stdin"

    def __init__(self, name: str, stream: BinaryIO | None = None, *,
                 allow_empty: bool = False) -> None:
        super().__init__()
        self._name = name
        self._stream = stream
        self._allow_empty = allow_empty
        self._spec["name"] = name

    def describe(self) -> str:
        return f"stdin:{self._name}"

    def items(self) -> Iterator[SourceItem]:
        if "/" in self._name or self._name in (".", ".."):
            raise UsageError(f"--stdin-name {self._name!r} must be a plain file name")
        if self._stream is None and sys.stdin is None:
            raise SourceError(f"standard input is closed: nothing to back up as "
                              f"{self._name!r} (pipe the dump into drsync)")
        stream: BinaryIO = self._stream if self._stream is not None else sys.stdin.buffer
        if not self._allow_empty:
            # `pg_dump nosuchdb | drsync backup --stdin-name x` gives no byte: an empty
            # snapshot would become the newest, and retention would keep it before good ones.
            peek = getattr(stream, "peek", None)  # a buffered pipe: nothing is consumed
            first = peek(1)[:1] if peek is not None else stream.read(1)
            if not first:
                raise SourceError(f"standard input ({self._name}) gave no bytes: did the "
                                  "program writing it fail? No snapshot written "
                                  "(--allow-empty backs up an empty stream)")
            if peek is None:
                stream = io.BufferedReader(_Prefixed(first, stream))
        yield SourceItem(Entry(self._name, "stream", 0o600), lambda: stream)


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read) then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return int(readinto(view) or 0)
        data = self._stream.read(len(view))
        view[:len(data)] = data
        return len(data)
