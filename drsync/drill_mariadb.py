"""Drills of MariaDB dumps: the dump reloaded, every table counted and checksummed.

What ``drsync drill`` does with a ``mariadb_dump`` snapshot (drsync.drill
calls ``drill_mariadb_dump``). The dump is loaded with the public restore
(drsync.mariadbrestore: every blob verified) into one of:

* a **throwaway server**, by default, whatever the dump's scope (one
  database, a list, all): ``mariadb-install-db`` makes a fresh data
  directory in ``scratch/mariadb`` and ``mariadbd`` runs on it confined to
  the scratch. Its socket is there (when the scratch's path is too long for
  a unix socket, in a private 0700 directory of $TMPDIR or /tmp, removed
  with it) and
  it has no TCP at all (``--skip-networking``: no port to collide with, and
  its root, without a password, is reachable only through 0700
  directories). The grants an all-databases dump loads into ``mysql`` are
  not flushed, so they do not lock the drill out. The event scheduler is
  off (the dump's events are created, not run: none changes rows while they
  are counted), binary logging and durability too (the data is thrown
  away). It is killed whatever happens; drsync.drill removes the scratch;
* a scratch database ``drsync_drill_<hex>`` on the server ``--mariadb-dsn``
  names, for a dump of one database (as the operator asked), dropped after;
  when ``mariadbd`` or ``mariadb-install-db`` is not installed, on the dumped
  server (the recorded DSN, which holds no password: the option file it
  names). A dump of several databases cannot go there (it would collide
  with them): without the server's programs it is drilled as a file (every
  blob verified, sizes), said so.

Then every base table of every dumped database (not the system schemas) is
counted and checksummed (drsync.sources.mariadb.checksum) and compared with
the spec's ``tables``, taken in the dump's consistent snapshot: a table
whose rows differ is named. A snapshot older than checksums is compared on
its counts (the check says so); one written to during its dump recorded no
counts (said so too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from drsync.drill import Check, Measures, _compare_counts, _drill_files, one_line
from drsync.errors import DrsyncError, SourceError
from drsync.repo import Repository, Snapshot
from drsync.sources.mariadb import MariadbConnection, MariadbTools, parse_dsn
from drsync.sources.mariadb.checksum import table_counts
from drsync.sources.mariadb.conninfo import MariadbDsn
from drsync.sources.mariadb.dump import SYSTEM_SCHEMAS, single_database
from drsync.sources.mariadb.tools import quote_ident

__all__ = ["ThrowawayMariadb", "drill_mariadb_dump", "server_programs"]

_SOCKET_MAX = 107  # sun_path holds 108 bytes with its NUL
_START_TIMEOUT = 300.0


def _find(program: str) -> str | None:
    return shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}")
         if os.access(p, os.X_OK)), None)


def server_programs() -> tuple[str, str] | None:
    """(mariadb-install-db, mariadbd) when both are installed."""
    install, server = _find("mariadb-install-db"), _find("mariadbd")
    return (install, server) if install and server else None


class ThrowawayMariadb:
    """One mariadbd on a fresh data directory under ``base`` (see the module docstring)."""

    def __init__(self, base: Path, programs: tuple[str, str]) -> None:
        self.base = base
        self.data = base / "data"
        self.socket = base / "mysqld.sock"
        self._socket_dir: Path | None = None  # when the scratch's path is too long for one
        self.log = base / "server.log"
        self._install, self._server = programs
        self._proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def dsn(self) -> MariadbDsn:
        return MariadbDsn(user="root", host="localhost", socket=str(self.socket))

    def url(self, database: str = "") -> str:
        return f"mariadb://root@localhost/{quote(database)}?socket={quote(str(self.socket))}"

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise

    def start(self, tools: MariadbTools) -> None:
        """Install and start; SourceError with the server's own words when it cannot."""
        self.base.mkdir(mode=0o700)
        if len(str(self.socket)) > _SOCKET_MAX:
            # A unix socket's path is short: then it goes in a private temporary directory
            # ($TMPDIR's, else /tmp's).
            for parent in dict.fromkeys((tempfile.gettempdir(), "/tmp")):
                if os.path.isdir(parent) and len(parent) + 40 <= _SOCKET_MAX:
                    self._socket_dir = Path(tempfile.mkdtemp(prefix="drsync-mariadb-drill-",
                                                             dir=parent))
                    self.socket = self._socket_dir / "mysqld.sock"
                    break
            if len(str(self.socket)) > _SOCKET_MAX:
                raise SourceError(f"no socket path for the throwaway server shorter than "
                                  f"{_SOCKET_MAX} bytes ({self.socket})")
        tmp = self.base / "tmp"
        tmp.mkdir(mode=0o700)
        try:
            done = subprocess.run(
                [self._install, "--no-defaults", f"--datadir={self.data}", "--skip-test-db",
                 "--auth-root-authentication-method=normal", f"--tmpdir={tmp}", *self._user()],
                capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SourceError(f"mariadb-install-db: {err}") from None
        if done.returncode != 0:
            raise SourceError(f"mariadb-install-db failed (exit {done.returncode}): "
                              f"{_last(done.stderr or done.stdout)}")
        args = [self._server, "--no-defaults", *self._user(), f"--datadir={self.data}",
                f"--socket={self.socket}", "--skip-networking",
                f"--tmpdir={tmp}", f"--pid-file={self.base / 'mariadbd.pid'}",
                f"--log-error={self.log}", "--event-scheduler=OFF", "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"]
        # Its own session: a Ctrl-C of the drill reaches the drill, whose teardown kills it.
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT
        with MariadbConnection(self.dsn) as conn:
            while True:
                if self._proc.poll() is not None:
                    raise SourceError(f"the throwaway mariadbd exited (code "
                                      f"{self._proc.returncode}): {_last(self._log_text())}")
                if self.socket.exists():
                    try:
                        self.version = tools.query(conn, "SELECT VERSION()", timeout=30)[0][0]
                        return
                    except DrsyncError:
                        pass  # the socket is there before the server accepts connections
                if time.monotonic() > deadline:
                    raise SourceError(f"the throwaway mariadbd did not accept connections "
                                      f"within {_START_TIMEOUT:.0f} s: "
                                      f"{_last(self._log_text())}")
                time.sleep(0.2)

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> str | None:
        """Kill it (nothing of it is kept) and wait; the error when it would not die."""
        proc, self._proc = self._proc, None
        try:
            return self._kill(proc)
        finally:
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> str | None:
        if proc is None or proc.poll() is not None:
            return None
        with contextlib.suppress(ProcessLookupError):  # it died between poll and kill
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return f"throwaway mariadbd (pid {proc.pid}) did not exit after SIGKILL"
        return None


def _last(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[-300:] if lines else "(no message)"


def drill_mariadb_dump(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                       *, mariadb_dsn: str | None = None, measures: Measures,
                       **kw: Any) -> int:
    """Reload, count, checksum, compare, tear down; append checks; return the bytes loaded."""
    spec = snap.source_spec
    one = single_database(spec) is not None
    programs = server_programs()
    if one and mariadb_dsn:
        return _on_server(repo, snap, scratch, checks, mariadb_dsn, measures)
    if programs is not None:
        return _on_throwaway(repo, snap, scratch, checks, programs, measures)
    if one:
        return _on_server(repo, snap, scratch, checks, str(spec.get("dsn") or ""), measures)
    written = _drill_files(repo, snap, scratch, checks, measures=measures, **kw)
    checks.append(Check("tables", True, f"a dump of {spec.get('scope')} databases is drilled "
                                        "as a file here: mariadbd and mariadb-install-db are "
                                        "not installed to load it on a throwaway server"))
    return written


def _compare(checks: list[Check], spec: dict[str, Any], found: dict[str, dict[str, int]]) -> None:
    recorded = spec.get("tables")
    if recorded == {}:  # written to during the dump: no counts of the dump's moment
        checks.append(Check("table counts", True, f"{len(found)} tables read; the server was "
                                                  "written to during the dump, so no counts "
                                                  "were recorded to compare"))
    else:
        _compare_counts(checks, recorded, found, "tables")


def _on_throwaway(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
                  programs: tuple[str, str], measures: Measures) -> int:
    from drsync.mariadbrestore import restore_mariadb

    spec = snap.source_spec
    tools = MariadbTools()
    server = ThrowawayMariadb(scratch / "mariadb", programs)
    try:
        try:
            server.start(tools)
        except DrsyncError as err:
            checks.append(Check("restore", False, one_line(err)))
            return 0
        into = single_database(spec) or ""
        result = restore_mariadb(repo, snap.id, server.url(into), work_dir=str(scratch))
        dumped = str(spec.get("server_version") or "an unrecorded version")
        checks.append(Check("restore", True, f"into a throwaway MariaDB {server.version} "
                                             f"(dumped from {dumped}): "
                                             f"{result.bytes_written} bytes, every blob "
                                             "verified"))
        try:
            with MariadbConnection(server.dsn) as conn:
                schemas = [r[0] for r in tools.query(
                    conn, "SELECT schema_name FROM information_schema.schemata ORDER BY 1")
                    if r[0] not in SYSTEM_SCHEMAS]
                found = table_counts(tools, conn, schemas)
        except DrsyncError as err:
            checks.append(Check("table counts", False, one_line(err)))
            return result.bytes_written
        _compare(checks, spec, found)
        measures.validated = time.monotonic()
        return result.bytes_written
    finally:
        error = server.stop()
        if error:
            checks.append(Check("teardown", False, error))


def _on_server(repo: Repository, snap: Snapshot, scratch: Path, checks: list[Check],
               dsn: str, measures: Measures) -> int:
    """A one-database dump into a scratch database ``drsync_drill_<hex>`` on ``dsn``'s
    server (shown as recorded: ``URL (options FILE)``), dropped after."""
    from drsync.mariadbrestore import restore_mariadb

    spec = snap.source_spec
    shown, _, options = dsn.partition(" (options ")
    try:
        server = parse_dsn(shown, options.rstrip(")") or None).with_database("")
    except DrsyncError as err:
        checks.append(Check("restore", False, f"{one_line(err)} (give --mariadb-dsn)"))
        return 0
    name = f"drsync_drill_{secrets.token_hex(6)}"
    where = server.host + (f":{server.port}" if server.port else "")
    url = (f"mariadb://{quote(server.user)}@{where}/{name}"
           + (f"?socket={quote(server.socket)}" if server.socket else ""))
    tools = MariadbTools()
    try:
        result = restore_mariadb(repo, snap.id, url, defaults_file=server.defaults_file or None,
                                 work_dir=str(scratch))
        checks.append(Check("restore", True, f"into scratch database {name}: "
                                             f"{result.bytes_written} bytes, every blob "
                                             "verified"))
        try:
            with MariadbConnection(server) as conn:
                found = table_counts(tools, conn, [name],
                                     rename={name: str(spec["databases"][0])})
        except DrsyncError as err:
            checks.append(Check("table counts", False, one_line(err)))
            return result.bytes_written
        _compare(checks, spec, found)
        measures.validated = time.monotonic()
        return result.bytes_written
    finally:
        try:
            with MariadbConnection(server) as conn:
                tools.query(conn, f"DROP DATABASE IF EXISTS {quote_ident(name)}")
        except DrsyncError as err:
            checks.append(Check("teardown", False, f"scratch database {name} not dropped: "
                                                   f"{one_line(err)}"))
