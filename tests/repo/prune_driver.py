"""Run ``prune`` on a directory repository and SIGKILL itself at a chosen store call.

Test machinery, not product: ``python -m tests.repo.prune_driver REPO PASSPHRASE OP
PREFIX N`` wraps the store so that right after the N-th ``OP`` (put or delete) of a
key starting with PREFIX has reached the store, the process kills itself with
SIGKILL: no cleanup, no lock release, exactly what a power cut or kill -9 leaves.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

from drsync.repo import Repository, Secret
from drsync.repo.prune import prune
from drsync.store import open_store
from drsync.store.base import ObjectInfo, Store


class KillAt(Store):
    def __init__(self, inner: Store, op: str, prefix: str, nth: int) -> None:
        self.inner, self.url, self.connections = inner, inner.url, inner.connections
        self._op, self._prefix, self._left = op, prefix, nth

    def _after(self, op: str, key: str) -> None:
        if op == self._op and key.startswith(self._prefix):
            self._left -= 1
            if self._left == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.put(key, data, if_absent=if_absent)
        self._after("put", key)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(key, offset, length)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self._after("delete", key)


def main(argv: list[str]) -> int:
    path, passphrase, op, prefix, nth = argv
    store = KillAt(open_store(path), op, prefix, int(nth))
    repo = Repository.open(store, Secret(passphrase=passphrase))
    prune(repo, max_unused=0.0)
    return 0  # the kill point was never reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
