"""A child process's standard output as a stream that fails loudly if the child fails."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, BinaryIO

from drsync.errors import SourceError
from drsync.sources.base import last_line

__all__ = ["ProcessReader", "spawn"]


def spawn(args: Sequence[str], *, stdin: int | IO[bytes] | None = subprocess.DEVNULL,
          env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``args`` with stdout piped and stderr in a temporary file (no pipe deadlock).
    ``env`` is how a password reaches the child (PgConnection.env), never ``args``."""
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
    try:
        proc = subprocess.Popen(list(args), stdin=stdin, stdout=subprocess.PIPE, stderr=err,
                                env=env)
    except OSError as exc:
        err.close()
        raise SourceError(f"cannot run {args[0]}: {exc.strerror}") from None
    return proc, err


def stderr_text(err: IO[bytes]) -> str:
    err.seek(0)
    return err.read().decode(errors="replace")


class ProcessReader:
    """``read`` from the child's stdout; at EOF, a non-zero exit raises SourceError."""

    def __init__(self, args: Sequence[str], what: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.what = what
        self.proc, self._err = spawn(args, env=env)
        assert self.proc.stdout is not None
        self._out: BinaryIO = self.proc.stdout  # type: ignore[assignment]
        self.stderr = ""

    def read(self, size: int = -1) -> bytes:
        data = self._out.read(size)
        if not data:
            self._finish()
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        n = self._out.readinto(buffer)  # type: ignore[attr-defined]
        if not n:
            self._finish()
        return int(n)

    def _finish(self) -> None:
        code = self.proc.wait()
        self.stderr = stderr_text(self._err)
        if code != 0:
            raise SourceError(f"{self.what} failed (exit {code}): {last_line(self.stderr)}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()

    def __enter__(self) -> ProcessReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
