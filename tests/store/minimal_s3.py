"""A second, minimal S3 implementation for the store tests: s3rver (npm), run with node.

moto implements nearly all of S3. s3rver implements the core only, and so
stands for the small S3-compatible stores drsync must also work on:

- ``PUT`` ignores ``If-None-Match`` (the object is replaced);
- ``ListMultipartUploads`` (``GET ?uploads``), ``ListParts`` and
  ``AbortMultipartUpload`` are not implemented (501 / 405);
- no versioning and no Object Lock (501).

``make test`` installs it from ``tools/s3rver/package-lock.json``;
``tools/s3rver/serve.js`` starts it on a free loopback port with a data
directory of its own, accepting the fake credentials of the other S3 tests
(see serve.js). It is stopped when the test session ends.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["MinimalS3"]

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "s3rver"
S3RVER_PACKAGE = TOOLS / "node_modules" / "s3rver" / "package.json"
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


class MinimalS3:
    """One s3rver process on 127.0.0.1; ``url`` once started."""

    def __init__(self) -> None:
        self.url = ""
        self._dir = Path(tempfile.mkdtemp(prefix="drsync-s3rver-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    @staticmethod
    def missing() -> str | None:
        """Why it cannot run here, or None."""
        if shutil.which("node") is None:
            return "node is not installed (the s3rver tests need node 18+)"
        if not S3RVER_PACKAGE.exists():
            return f"s3rver is not installed ({S3RVER_PACKAGE.parent}): run `make test` or " \
                   "`npm ci --prefix tools/s3rver`"
        return None

    def start(self, timeout: float = 30.0) -> str:
        node = shutil.which("node")
        assert node is not None
        self._proc = subprocess.Popen(
            [node, str(TOOLS / "serve.js"), str(self._dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        port: list[int] = []
        seen: list[bytes] = []
        ready = threading.Event()

        def drain() -> None:  # to the end, so that the pipe never fills
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                seen[:] = [*seen[-20:], line]
                found = _LISTENING.search(line)
                if found and not port:
                    port.append(int(found.group(1)))
                    ready.set()
            ready.set()

        self._drain = threading.Thread(target=drain, name="s3rver-output", daemon=True)
        self._drain.start()
        ready.wait(timeout)
        if not port:
            output = b"".join(seen).decode(errors="replace").strip()
            self.stop()
            raise RuntimeError(f"s3rver did not start within {timeout:.0f} s: {output!r}")
        self.url = f"http://127.0.0.1:{port[0]}"
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._drain is not None:
                self._drain.join(5)  # it reads to the end of the output, now reached
            if self._proc.stdout is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdout.close()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
