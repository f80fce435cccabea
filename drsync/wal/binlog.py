"""binlog-receive: MariaDB/MySQL binary logs copied into the spool as the server writes them.

``mariadb-binlog --read-from-remote-server --raw --stop-never`` connects as
a replica would and copies every binlog file, byte for byte, into a staging
directory (``<spool>/.binlog-receive``), going on to the next file when the
server rotates. A staged file is sealed into the spool, by the same
:func:`drsync.wal.push.push_file` wal-push uses (temporary file, fsync,
link, directory fsync), only when it is complete: a later file is staged
*and* it ends with the server's ROTATE or STOP event. The file still being
written is never sealed. After sealing, its name is recorded durably in
``<staging>/.last-sealed`` and the staged copy is deleted; a crash in
between seals it again on the next start (the same content again is a
success).

A restart resumes from the last complete file: from the oldest staged file
if any (mariadb-binlog rewrites it from its start), else the file after
``.last-sealed``, else (a new spool) ``start_file`` or the oldest binlog the
server still has. The server keeps binlogs for ``binlog_expire_logs_seconds``:
a receiver down longer than that loses the gap (``doctor --mariadb`` checks it),
and its restart is refused naming the purged binlog and what to do. A
``start_file`` given on a restart is honoured, the staging's files set aside.

``rotate_every_s`` runs ``FLUSH BINARY LOGS`` on that period, so the newest
changes are in a complete, sealed file within it (PostgreSQL's
``archive_timeout``); it needs the RELOAD privilege.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drsync.errors import SourceError
from drsync.repo.crypto import MasterKey
from drsync.repo.wal import is_binlog_name
from drsync.sources.mariadb.binlog import (
    next_binlog,
    receiver_args,
    server_binlogs,
    summarize_binlog,
)
from drsync.sources.mariadb.conninfo import MariadbConnection, parse_dsn
from drsync.sources.mariadb.tools import MariadbTools
from drsync.store.local import fsync_dir
from drsync.wal.push import PushResult, push_file
from drsync.wal.receive import prepare_staging, run_receiver, sweeper
from drsync.wal.spool import Spool

log = logging.getLogger(__name__)

__all__ = ["BinlogReceiveResult", "binlog_staging", "receive_binlogs", "spool_complete_binlogs"]

STAGING_NAME = ".binlog-receive"
LAST_SEALED = ".last-sealed"
RECEIVER_SERVER_ID = 4127  # a replica id for mariadb-binlog; --server-id picks another


@dataclass
class BinlogReceiveResult:
    spooled: list[str] = field(default_factory=list)
    bytes: int = 0
    staging: str = ""
    started_from: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"spooled": len(self.spooled), "bytes": self.bytes, "staging": self.staging,
                "started_from": self.started_from, "last": max(self.spooled, default=None)}


def binlog_staging(spool: Spool, given: str | None = None) -> Path:
    return Path(given).absolute() if given else spool.dir / STAGING_NAME


def _staged(staging: Path) -> list[str]:
    try:
        names = os.listdir(staging)
    except FileNotFoundError:
        return []
    return sorted((n for n in names if is_binlog_name(n)),
                  key=lambda n: (n.rsplit(".", 1)[0], int(n.rsplit(".", 1)[1])))


def _record_sealed(staging: Path, name: str) -> None:
    tmp = staging / (LAST_SEALED + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, staging / LAST_SEALED)
    fsync_dir(staging)


def last_sealed(staging: Path) -> str | None:
    try:
        name = (staging / LAST_SEALED).read_text().strip()
    except FileNotFoundError:
        return None
    return name if is_binlog_name(name) else None


def spool_complete_binlogs(staging: Path, spool: Spool, key: MasterKey) -> list[PushResult]:
    """Seal every complete staged binlog (not the newest; ending with ROTATE or STOP)."""
    done = []
    staged = _staged(staging)
    for name in staged[:-1]:
        path = staging / name
        with open(path, "rb") as fh:
            summary = summarize_binlog(fh.read())
        if not summary.complete:
            break  # its last event is not written yet: sealed on a later sweep, or refetched
        done.append(push_file(path, spool, key))
        _record_sealed(staging, name)
        path.unlink()
    return done


def _older(name: str, than: str) -> bool:
    """Whether binlog ``name`` comes before ``than`` in the same log."""
    base, _, number = name.rpartition(".")
    other, _, other_number = than.rpartition(".")
    return base == other and int(number) < int(other_number)


def _first_file(staging: Path, tools: MariadbTools, conn: MariadbConnection,
                start_file: str | None, warn: Callable[[str], None] = log.warning) -> str:
    """Where to start: the staged copy or the file after the last sealed (a restart),
    else ``start_file``, else the oldest binlog the server has. A ``start_file`` other
    than the restart's point is honoured, what the staging holds set aside; a restart
    point the server has purged is refused, naming it (mariadb-binlog only says "Could
    not find first log file name")."""
    staged = _staged(staging)
    sealed = last_sealed(staging)
    resume = staged[0] if staged else (next_binlog(sealed) if sealed else None)
    if resume is not None and start_file and start_file != resume:
        aside = staging / f"set-aside-{time.strftime('%Y%m%dT%H%M%S')}"
        aside.mkdir()
        for name in [*staged, LAST_SEALED]:
            if (staging / name).exists():
                os.replace(staging / name, aside / name)
        warn(f"--start-file {start_file}: starting there instead of {resume}, where the "
             f"last run stopped; what the staging held is set aside in {aside}")
        return start_file
    available = server_binlogs(tools, conn)
    if resume is not None:
        if available and _older(resume, available[0]):
            raise SourceError(
                f"MariaDB ({conn.dsn.shown}) no longer has binlog {resume}, where the last "
                f"run stopped (its oldest is {available[0]}): the changes in {resume} up to "
                f"{available[0]} were purged before they were archived, so point-in-time "
                "restores cannot cross them; take a new dump now (`drsync backup "
                f"--mariadb-dump ...`), then run binlog-receive with --start-file "
                f"{available[0]}")
        return resume
    if start_file:
        return start_file
    if not available:
        raise SourceError(f"MariaDB ({conn.dsn.shown}) has no binary logs (is log_bin on?)")
    return available[0]


def receive_binlogs(dsn: str, spool: Spool, key: MasterKey, *, stop: Callable[[], bool],
                    defaults_file: str | None = None, staging: Path | None = None,
                    start_file: str | None = None, rotate_every_s: float = 0,
                    server_id: int = RECEIVER_SERVER_ID,
                    on_spooled: Callable[[PushResult], None] | None = None,
                    poll_s: float = 0.5, tools: MariadbTools | None = None,
                    ) -> BinlogReceiveResult:
    """Run mariadb-binlog and seal what it completes, until ``stop()`` is true."""
    tools = tools or MariadbTools()
    staging = staging or binlog_staging(spool)
    result = BinlogReceiveResult(staging=str(staging))
    prepare_staging(spool, staging)

    sweep = sweeper(lambda: spool_complete_binlogs(staging, spool, key), result, on_spooled)
    sweep()  # what a previous run completed but did not seal
    with MariadbConnection(parse_dsn(dsn, defaults_file)) as conn:
        first = _first_file(staging, tools, conn, start_file)
        result.started_from = first
        rotated = time.monotonic()

        def rotate() -> None:
            nonlocal rotated
            if rotate_every_s and time.monotonic() - rotated >= rotate_every_s:
                tools.query(conn, "FLUSH BINARY LOGS")
                rotated = time.monotonic()

        run_receiver(receiver_args(tools, conn, first, str(staging), server_id),
                     program="mariadb-binlog", stop=stop, sweep=sweep, poll_s=poll_s,
                     interrupt=signal.SIGTERM, grace_s=30, tick=rotate)
        return result
