"""Physical base backups read from the data directory itself, as pgBackRest reads them.

When the server's data directory is on this machine and readable by drsync
(``local_data_dir``: same system identifier in ``global/pg_control``, no
tablespaces, ``full_page_writes`` on), the files are read straight from
disk instead of through pg_basebackup's tar stream: no walsender, no tar
framing, one copy less. The backup protocol is PostgreSQL's non-exclusive
one, in one session held open for the whole walk (``BackupSession``):
``pg_backup_start(label, fast)``, read the files, ``pg_backup_stop(true)``,
which waits for the last WAL segment to be archived as ``pg_basebackup -X
none`` does. Its label file becomes the snapshot's ``backup_label``.

The walk skips what pg_basebackup skips (basebackup.c's excludeDirContents
and excludeFiles): the contents of pg_wal (the directory and its
archive_status are kept), pg_dynshmem, pg_notify, pg_replslot, pg_serial,
pg_snapshots, pg_stat_tmp, pg_subtrans; postmaster.pid, postmaster.opts,
pg_internal.init, an old backup_label or tablespace_map, pgsql_tmp*,
unlogged relations' forks other than _init, temporary relations (t*_*).
A file that vanishes during the walk (a dropped relation) is left out; one
that is read short or torn is repaired by replaying WAL from the backup's
start, which is why full_page_writes must be on. Items and chunks are the
same as the stream path's, so restore, drills and dedup against
stream-made snapshots are unchanged (the stream path's ``backup_manifest``
item is not produced: nothing reads it back).

Incremental by timestamps (``reuse``): a file whose size and mtime equal
the previous direct snapshot's entry and whose mtime is older than that
backup's start by more than ``REUSE_MARGIN_NS`` keeps the previous chunk
list without being read. It is safe because every write to a file moves
its mtime to the time of the write: a file with the same mtime, older than
the start of the backup that read it, has not been written since before
that read, so it holds the bytes that were read. Anything PostgreSQL had
dirty in memory before this backup's checkpoint is written by that
checkpoint (``pg_backup_start`` returns after it), which moves the mtime;
anything after it is replayed from this backup's WAL. The margin covers
coarse file-system timestamps; a clock set backwards defeats it, which is
what ``pg_base_reread`` (``--pg-base-reread``) is for.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from drsync.errors import SourceError
from drsync.sources.base import SourceItem, last_line
from drsync.sources.blocks import ChunkMap, chunk_for_size
from drsync.sources.postgres.process import spawn, stderr_text
from drsync.sources.postgres.tools import PgConnection, PgTools
from drsync.tree import Entry

__all__ = ["REUSE_MARGIN_NS", "BackupSession", "Reuse", "direct_items", "label_item",
           "local_data_dir"]

REUSE_MARGIN_NS = 2_000_000_000
# chunks of the previous snapshot's entry, if path/size/mtime_ns may keep them
Reuse = Callable[[str, int, int], list[str] | None]

_EXCLUDE_CONTENTS = frozenset({"pg_wal", "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial",
                               "pg_snapshots", "pg_stat_tmp", "pg_subtrans"})
_EXCLUDE_FILES = frozenset({"postmaster.pid", "postmaster.opts", "backup_label",
                            "tablespace_map", "postgresql.auto.conf.tmp",
                            "current_logfiles.tmp"})
_RELATION = re.compile(r"(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?")
_TEMP_RELATION = re.compile(r"t\d+_\d+(?:_(?:fsm|vm|init))?(?:\.\d+)?")


def local_data_dir(tools: PgTools, dsn: str, system_identifier: str) -> tuple[Path | None, str]:
    """The server's data directory if it can be read here directly, else None and why not."""
    try:
        row = tools.query(dsn, "SELECT current_setting('data_directory'), "
                               "current_setting('full_page_writes'), (SELECT count(*) FROM "
                               "pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global'))")
    except SourceError as err:
        return None, f"the server does not say where its data directory is ({err})"
    data_dir, full_page_writes, tablespaces = Path(row[0][0]), row[0][1], int(row[0][2])
    try:
        with open(data_dir / "global" / "pg_control", "rb") as fh:
            control = fh.read(8)
        tblspc = os.listdir(data_dir / "pg_tblspc")
    except OSError as err:
        return None, f"{data_dir} is not readable here ({err.strerror})"
    if len(control) < 8 or str(int.from_bytes(control, "little")) != system_identifier:
        return None, f"{data_dir} on this machine is another cluster (system identifier)"
    if tablespaces or tblspc:
        return None, "the cluster has tablespaces"
    if full_page_writes != "on":
        return None, "full_page_writes is off (torn pages could not be repaired)"
    return data_dir, ""


class BackupSession:
    """One psql session held open from ``pg_backup_start`` to ``pg_backup_stop``: a
    non-exclusive backup ends when its session does."""

    def __init__(self, tools: PgTools, dsn: str) -> None:
        conn = PgConnection.of(dsn)
        self._shown = conn.shown
        self._proc, self._err = spawn([*tools.psql_args(conn), "-F", "\x1f"],
                                      stdin=subprocess.PIPE, env=conn.env())

    def ask(self, sql: str) -> list[str]:
        """The one row ``sql`` returns, its fields as text."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(sql.encode() + b";\n")
            stdin.flush()
            line = stdout.readline()
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            self._proc.wait()
            raise SourceError(f"PostgreSQL ({self._shown}): the backup session ended: "
                              f"{last_line(stderr_text(self._err))}")
        return line[:-1].decode().split("\x1f")

    def close(self) -> None:
        stdin: IO[bytes] | None = self._proc.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._err.close()


def direct_items(root: Path, prefix: str, chunk_map: ChunkMap, counts: dict[str, int],
                 reuse: Reuse | None = None) -> Iterator[SourceItem]:
    """The data directory's items under ``prefix``, without what pg_basebackup leaves out.
    ``counts`` gets files read, reused, and vanished during the walk."""
    def walk(rel: str) -> Iterator[SourceItem]:
        try:
            names = sorted(os.listdir(root / rel if rel else root))
        except FileNotFoundError:
            return  # dropped (a database) during the walk
        in_db = rel == "global" or (rel.startswith("base/") and rel.count("/") == 1)
        present = frozenset(names) if in_db else frozenset()
        for name in names:
            sub = f"{rel}/{name}" if rel else name
            if name in _EXCLUDE_FILES or name.startswith(("pgsql_tmp", "pg_internal.init")):
                continue
            if in_db and _skipped_relation(name, present):
                continue
            try:
                # pg_wal may be a link to another disk: a directory in the backup
                st = os.stat(root / sub) if sub == "pg_wal" else os.lstat(root / sub)
            except FileNotFoundError:
                counts["vanished"] += 1
                continue
            path = f"{prefix}/{sub}"
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode) or sub == "pg_wal":
                yield SourceItem(Entry(path, "dir", mode, st.st_mtime_ns))
                if sub == "pg_wal":  # empty but for archive_status, as pg_basebackup sends it
                    yield SourceItem(Entry(f"{path}/archive_status", "dir", mode,
                                           st.st_mtime_ns))
                elif sub not in _EXCLUDE_CONTENTS:
                    yield from walk(sub)
            elif stat.S_ISLNK(st.st_mode):
                yield SourceItem(Entry(path, "symlink", 0o777, st.st_mtime_ns, 0,
                                       os.readlink(root / sub)))
            elif stat.S_ISREG(st.st_mode):
                item = _file_item(root / sub, path, chunk_map, counts, reuse)
                if item is not None:
                    yield item

    yield from walk("")


def _skipped_relation(name: str, names: frozenset[str]) -> bool:
    """A temporary relation, or an unlogged one's fork other than _init (the server
    rebuilds it from the _init fork at the end of recovery)."""
    if _TEMP_RELATION.fullmatch(name):
        return True
    found = _RELATION.fullmatch(name)
    return bool(found and found.group(2) != "init" and f"{found.group(1)}_init" in names)


def _file_item(full: Path, path: str, chunk_map: ChunkMap, counts: dict[str, int],
               reuse: Reuse | None) -> SourceItem | None:
    try:
        fh = open(full, "rb", buffering=0)  # noqa: SIM115 - closed by the writer
    except FileNotFoundError:
        counts["vanished"] += 1
        return None
    st = os.fstat(fh.fileno())
    mode = stat.S_IMODE(st.st_mode)
    chunks = reuse(path, st.st_size, st.st_mtime_ns) if reuse is not None else None
    if chunks is not None:
        fh.close()
        counts["reused"] += 1
        return SourceItem(Entry(path, "file", mode, st.st_mtime_ns, st.st_size, chunks=chunks))
    os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    counts["read"] += 1
    return SourceItem(Entry(path, "file", mode, st.st_mtime_ns, st.st_size),
                      lambda: fh, str(full),
                      fixed_chunk=chunk_for_size(chunk_map, st.st_size))


def label_item(prefix: str, label: str) -> SourceItem:
    """``backup_label`` from ``pg_backup_stop``'s label file, as pg_basebackup sends it."""
    import io

    data = label.encode()
    return SourceItem(Entry(f"{prefix}/backup_label", "file", 0o600, time.time_ns(), len(data)),
                      lambda: io.BytesIO(data), "pg_backup_stop:backup_label")
