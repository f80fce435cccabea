"""wal-receive: WAL streamed by pg_receivewal into the spool, for servers whose
archive_command cannot be changed.

``pg_receivewal`` streams over a replication connection into a staging
directory, through a replication slot (created if missing) so that the
server keeps every WAL file drsync has not received yet, even while drsync
is down. pg_receivewal writes a segment as ``NAME.partial`` and renames it
to ``NAME`` only once it is complete and fsynced; every such completed file
(segments and timeline histories, never a ``.partial``) is then sealed into
the spool by the same :func:`drsync.wal.push.push_file` that ``wal-push``
uses, and deleted from staging only after that returned (the sealed copy is
durable). A crash in between leaves the staged file, pushed again on the
next start: the same content again is a success. From the spool,
``wal-ship`` moves it to the store as usual.

Stopping (SIGTERM, SIGINT) stops pg_receivewal, spools what it completed
and returns; the ``.partial`` segment stays in staging, where the next
pg_receivewal resumes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from drsync.errors import SourceError
from drsync.repo.crypto import MasterKey
from drsync.repo.wal import is_wal_name
from drsync.sources.base import last_line
from drsync.sources.postgres.tools import PgConnection, PgTools
from drsync.wal.push import PushResult, push_file
from drsync.wal.spool import Spool

__all__ = ["DEFAULT_SLOT", "ReceiveResult", "prepare_staging", "receive_wal", "run_receiver",
           "spool_completed", "staging_dir", "sweeper"]

DEFAULT_SLOT = "drsync"
STAGING_NAME = ".receive"  # inside the spool: a dot name is never taken for WAL


@dataclass
class ReceiveResult:
    spooled: list[str] = field(default_factory=list)
    bytes: int = 0
    slot: str = DEFAULT_SLOT
    staging: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"spooled": len(self.spooled), "bytes": self.bytes, "slot": self.slot,
                "staging": self.staging, "last": max(self.spooled, default=None)}


def staging_dir(spool: Spool, given: str | None = None) -> Path:
    """Where pg_receivewal writes: given, or ``<spool>/.receive`` (same file system)."""
    return Path(given).absolute() if given else spool.dir / STAGING_NAME


def spool_completed(staging: Path, spool: Spool, key: MasterKey) -> list[PushResult]:
    """Seal every completed file in ``staging`` into the spool, then delete it there."""
    done = []
    try:
        names = sorted(os.listdir(staging))
    except FileNotFoundError:
        return []
    # Timeline histories first: a segment of a new timeline is useless without its history.
    for name in sorted(names, key=lambda n: (not n.endswith(".history"), n)):
        if name.endswith(".partial") or not is_wal_name(name):
            continue
        done.append(push_file(staging / name, spool, key))
        (staging / name).unlink()
    return done


def _slot_args(tools: PgTools, conn: PgConnection, slot: str) -> list[str]:
    return [tools.path("pg_receivewal"), "-d", conn.dsn, "--slot", slot]


def ensure_slot(dsn: str, slot: str, tools: PgTools) -> None:
    """Create the physical replication slot unless it exists (it then keeps WAL for us)."""
    conn = PgConnection.of(dsn)
    done = subprocess.run([*_slot_args(tools, conn, slot), "--create-slot", "--if-not-exists"],
                          capture_output=True, text=True, timeout=120, env=conn.env())
    if done.returncode != 0:
        raise SourceError(f"cannot create replication slot {slot!r} on {conn.shown}: "
                          f"{last_line(done.stderr)}")


def prepare_staging(spool: Spool, staging: Path) -> None:
    """The spool and the staging directory a receiver writes into (0700)."""
    spool.ensure()
    try:
        staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise SourceError(f"cannot create staging directory {staging}: {err.strerror}") from None


class _Received(Protocol):
    spooled: list[str]
    bytes: int


def sweeper(completed: Callable[[], Iterable[PushResult]], result: _Received,
            on_spooled: Callable[[PushResult], None] | None) -> Callable[[], None]:
    """A receiver's ``sweep``: seal what the program completed, counting it in ``result``."""
    def sweep() -> None:
        for pushed in completed():
            result.spooled.append(pushed.name)
            result.bytes += pushed.stored
            if on_spooled is not None:
                on_spooled(pushed)
    return sweep


def run_receiver(argv: list[str], *, program: str, stop: Callable[[], bool],
                 sweep: Callable[[], None], poll_s: float, interrupt: int, grace_s: float,
                 env: dict[str, str] | None = None,
                 tick: Callable[[], None] | None = None) -> None:
    """Run a receiving program (pg_receivewal, mariadb-binlog) until ``stop()``: every
    ``poll_s`` seal what it completed (``sweep``) and call ``tick``. Its death is a
    SourceError with its last stderr line; stopping sends ``interrupt`` and gives it
    ``grace_s`` to flush, then seals what it finished. It never outlives this call."""
    log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, env=env)
    except OSError as exc:
        log.close()
        raise SourceError(f"cannot run {program}: {exc.strerror}") from None
    try:
        while not stop():
            sweep()
            if proc.poll() is not None:
                sweep()
                log.seek(0)
                message = last_line(log.read().decode(errors="replace"))
                raise SourceError(f"{program} stopped (exit {proc.returncode}): {message}")
            if tick is not None:
                tick()
            time.sleep(poll_s)
        proc.send_signal(interrupt)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sweep()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def receive_wal(dsn: str, spool: Spool, key: MasterKey, *, slot: str = DEFAULT_SLOT,
                staging: Path | None = None, stop: Callable[[], bool],
                on_spooled: Callable[[PushResult], None] | None = None,
                poll_s: float = 0.5, tools: PgTools | None = None) -> ReceiveResult:
    """Run pg_receivewal and spool what it completes, until ``stop()`` is true."""
    tools = tools or PgTools()
    staging = staging or staging_dir(spool)
    result = ReceiveResult(slot=slot, staging=str(staging))
    prepare_staging(spool, staging)

    sweep = sweeper(lambda: spool_completed(staging, spool, key), result, on_spooled)
    sweep()  # what a previous run completed but did not spool
    ensure_slot(dsn, slot, tools)
    conn = PgConnection.of(dsn)
    # pg_receivewal flushes and exits cleanly on SIGINT.
    run_receiver([*_slot_args(tools, conn, slot), "-D", str(staging), "--no-loop"],
                 program="pg_receivewal", env=conn.env(), stop=stop, sweep=sweep,
                 poll_s=poll_s, interrupt=signal.SIGINT, grace_s=60)
    return result
