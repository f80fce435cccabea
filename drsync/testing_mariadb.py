"""Throwaway MariaDB servers for tests and benchmarks, shipped with the code.

Each :class:`MariadbServer` is its own ``mariadbd`` with its own data
directory, socket and TCP port (on 127.0.0.1 only), binary logging on in
ROW format, so a test never touches the machine's shared server. It is
created with ``mariadb-install-db --no-defaults`` (root authenticates with a
password, empty here) and stopped with ``SHUTDOWN`` (then SIGKILL if it
lingers). Nothing here is imported by drsync itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["MARIADB_PROGRAMS", "MariadbServer", "missing_mariadb_programs"]

MARIADB_PROGRAMS = ("mariadbd", "mariadb-install-db", "mariadb-dump", "mariadb-binlog",
                    "mariadb")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


def missing_mariadb_programs() -> list[str]:
    """The MariaDB programs the tests need that this machine lacks."""
    return [name for name in MARIADB_PROGRAMS if _which(name) is None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MariadbServer:
    """One throwaway server: data in ``base/data``, binlogs ``base/data/binlog.*``."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="drmdb-", dir="/tmp"))
        self.data = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "server.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"mariadb://root@127.0.0.1:{self.port}"

    def dsn_for(self, database: str) -> str:
        return f"{self.dsn}/{database}"

    @property
    def tmpdir(self) -> Path:
        """The server's own tmpdir: a starting mariadbd deletes the ``#sql*`` temporaries
        it finds there, so servers sharing /tmp break each other's work."""
        path = self.base / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def install(self) -> None:
        done = subprocess.run(
            [_which("mariadb-install-db") or "mariadb-install-db", "--no-defaults",
             "--auth-root-authentication-method=normal", f"--datadir={self.data}",
             "--skip-test-db", "--user=root", f"--tmpdir={self.tmpdir}"],
            capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr.strip()[-2000:]}")

    def start(self, *extra: str) -> None:
        for _attempt in range(3):
            if self._start_once(extra):
                return
            self.port = 0  # another server took the free port first: pick another
        raise RuntimeError("mariadbd found no free port: " + self._log_tail())

    def _start_once(self, extra: tuple[str, ...]) -> bool:
        self.port = self.port or _free_port()
        args = [_which("mariadbd") or "mariadbd", "--no-defaults", "--user=root",
                f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--log-bin={self.data / 'binlog'}",
                f"--tmpdir={self.tmpdir}",
                "--server-id=1", "--binlog-format=ROW", f"--pid-file={self.base / 'pid'}",
                "--innodb-buffer-pool-size=32M", "--skip-name-resolve",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                f"--log-error={self.log}", *extra]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                if "Address already in use" in self._log_tail():
                    return False
                raise RuntimeError("mariadbd exited: " + self._log_tail())
            if self.socket.exists() and self.sql("SELECT 1", check=False).returncode == 0:
                return True
            time.sleep(0.1)
        raise RuntimeError("mariadbd did not start: " + self._log_tail())

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def sql(self, sql: str, database: str = "", *, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        args = [_which("mariadb") or "mariadb", "--no-defaults", "-uroot",
                f"--socket={self.socket}", "--default-character-set=utf8mb4", "-N", "-B",
                "-e", sql]
        if database:
            args.append(database)
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"mariadb -e {sql[:80]!r} failed: {done.stderr.strip()}")
        return done

    def query(self, sql: str, database: str = "") -> str:
        return self.sql(sql, database).stdout.strip()

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self.sql("SHUTDOWN", check=False)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.send_signal(signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
