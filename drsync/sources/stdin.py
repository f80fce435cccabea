"""Standard input (or any byte stream) as one named stream."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import BinaryIO

from drsync.errors import UsageError
from drsync.sources.base import SourceBase, SourceItem
from drsync.tree import Entry

__all__ = ["StdinSource"]


class StdinSource(SourceBase):
    """One stream named ``name``, read from ``stream`` (default: standard input's bytes)."""

    kind = "stdin"

    def __init__(self, name: str, stream: BinaryIO | None = None) -> None:
        super().__init__()
        self._name = name
        self._stream = stream
        self._spec["name"] = name

    def describe(self) -> str:
        return f"stdin:{self._name}"

    def items(self) -> Iterator[SourceItem]:
        if "/" in self._name or self._name in (".", ".."):
            raise UsageError(f"--stdin-name {self._name!r} must be a plain file name")
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        yield SourceItem(Entry(self._name, "stream", 0o600), lambda: stream)
