"""A MariaDB tenant for the tests: a throwaway server, a repository with a key file, a
spool, and the drsync commands an agent host would run against them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer


def poll(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class MariadbTenant:
    def __init__(self, server: MariadbServer, exe: str, base: Path) -> None:
        self.server = server
        self.exe = exe
        self.base = base
        self.repo = base / "repo"
        self.key = base / "tenant.key"
        self.spool = base / "spool"
        self.repository = make_repository(str(self.repo), key_file_path=self.key)
        self.env = {**os.environ, "DRSYNC_REPO": str(self.repo), "DRSYNC_KEY_FILE": str(self.key),
                    "DRSYNC_SPOOL": str(self.spool),
                    "DRSYNC_CATALOG": str(base / "catalog.sqlite")}
        self._receiver: subprocess.Popen[str] | None = None

    def drsync(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True,
                              timeout=600)
        if check:
            assert done.returncode == 0, f"drsync {' '.join(args)}: {done.stderr}"
        return done

    def drsync_json(self, *args: str) -> Any:
        return json.loads(self.drsync(*args, "--json").stdout)

    def spooled(self) -> list[str]:
        if not self.spool.is_dir():
            return []
        return sorted(n for n in os.listdir(self.spool) if not n.startswith("."))

    def start_receiver(self, *extra: str) -> None:
        self._receiver = subprocess.Popen(
            [self.exe, "binlog-receive", self.server.dsn, "--json", *extra], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop_receiver(self) -> Any:
        assert self._receiver is not None
        self._receiver.send_signal(signal.SIGTERM)
        out, err = self._receiver.communicate(timeout=60)
        code = self._receiver.returncode
        self._receiver = None
        assert code == 0, err
        return json.loads(out)

    def kill_receiver(self) -> None:
        if self._receiver is not None and self._receiver.poll() is None:
            self._receiver.kill()
            self._receiver.communicate()
        self._receiver = None

    def current_binlog(self) -> str:
        return self.server.query("SHOW MASTER STATUS").split("\t")[0]
