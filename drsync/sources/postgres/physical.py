"""Physical base backups: the data directory, file by file; and a data directory back.

When the data directory is on this machine, it is read directly
(``drsync.sources.postgres.direct``; ``method`` chooses); otherwise
``pg_basebackup -D - -Ft -X none`` streams the cluster as one tar archive
and each member becomes a snapshot item under ``pgdata/``. Data files are
stored in chunks cut at fixed, offset-aligned boundaries (``FIXED_CHUNK``,
four 8 KiB pages; ``LARGE_CHUNK``, eight, in files of ``LARGE_FILE`` or more),
so a second base backup after a workload that touched 1%
of pages stores only the chunks holding those pages: unchanged chunks have
the same keyed id and deduplicate. WAL is not included (``-X none``): the
archive (``wal-push``) holds it, and the snapshot records the range needed.

Restoring writes the files into an empty directory, then
``configure_recovery`` appends the restore_command, the target and
``archive_mode = off`` (a restored copy must not archive into the original
tenant's spool) to ``postgresql.auto.conf`` and creates ``recovery.signal``.
``check_restore_command`` then runs that command once, as the server will
(through the shell, in the data directory, as its user), for the first WAL
file the backup needs, so that a command that cannot work is one line from
drsync rather than a FATAL in the server's log. Once the server is up,
``recovery_outcome`` asks it where replay stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drsync.errors import ConfigError, SourceError, UnsafePath, UsageError
from drsync.sources.base import SourceItem, last_line
from drsync.sources.blocks import ChunkMap, chunk_for_size
from drsync.sources.postgres.direct import (
    BackupSession,
    Reuse,
    direct_items,
    label_item,
    local_data_dir,
)
from drsync.sources.postgres.process import ProcessReader
from drsync.sources.postgres.tools import (
    PgConnection,
    PgTools,
    RecoveryTarget,
    lsn_to_int,
    segment_name,
)
from drsync.tree import Entry

__all__ = ["BASE_METHODS", "CHUNK_MAP", "FIXED_CHUNK", "LARGE_CHUNK", "LARGE_FILE", "PGDATA_PREFIX",
           "base_backup_source",
           "check_restore_command", "configure_recovery", "recovery_outcome", "start_cluster"]

PGDATA_PREFIX = "pgdata"
BASE_METHODS = ("auto", "direct", "stream")
FIXED_CHUNK = 32768  # 4 pages: 1% of pages touched at random changes ~4% of chunks
# Files of at least LARGE_FILE bytes are cut every LARGE_CHUNK (8 pages) instead. Each
# chunk costs about 100 bytes of metadata whatever its size (its id in the pack header,
# the index and the tree) and a hash, a lookup and a tree entry of CPU; in a large
# relation that is where nearly all the chunks are. Measured (bench/pg_bench.py's
# cluster at scale 20, 4 alternating runs): 64 KiB chunks there store 1.8% fewer bytes
# and take about a fifth less CPU on the first backup; the second, after 1.4% of the
# pages changed, stores 1.7x the bytes (twice the changed chunks' size), at scale 50
# still 0.42x pgBackRest's incremental. pgBackRest's block incremental grows its blocks with the
# file's size too. A file that grows past LARGE_FILE is stored in its new chunks once.
LARGE_FILE = 16 << 20
LARGE_CHUNK = 65536
CHUNK_MAP: ChunkMap = ((0, FIXED_CHUNK), (LARGE_FILE, LARGE_CHUNK))
_CAPTURE = ("backup_label", "backup_manifest")
_BLOCK = 512  # tar's block: headers, and content padded to a multiple of it


class _Capture:
    """Pass a member's bytes through, keeping a copy (backup_label, backup_manifest)."""

    def __init__(self, inner: _Member, sink: list[bytes]) -> None:
        self._inner = inner
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._sink.append(data)
        return data

    def __enter__(self) -> _Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


@contextmanager
def base_backup_source(dsn: str, spec: dict[str, Any], *, tools: PgTools | None = None,
                       chunk_map: ChunkMap = CHUNK_MAP, method: str = "auto",
                       previous: Callable[[dict[str, Any]], Reuse | None] | None = None,
                       ) -> Iterator[Iterator[SourceItem]]:
    """Items of a base backup; ``spec`` gets start/stop LSN, timeline and WAL range
    once the items have been read to their end.

    ``method``: "direct" reads the data directory (drsync.sources.postgres.direct),
    "stream" pg_basebackup's tar stream, "auto" the first when the data directory is
    readable here, else the second (the spec's ``method_fallback`` says why).
    ``previous`` (direct only), given the spec once the backup has started, answers
    which unchanged files may keep their previous chunks (or None: read them all)."""
    if method not in BASE_METHODS:
        raise UsageError(f"pg_base_method must be one of {', '.join(BASE_METHODS)}, "
                         f"not {method!r}")
    tools = tools or PgTools()
    spec.update(tools.server_info(dsn))
    conn = PgConnection.of(dsn)
    spec["dsn"] = conn.shown
    spec["fixed_chunk"] = chunk_map[0][1]
    if len(chunk_map) > 1:
        spec["fixed_chunk_map"] = [list(pair) for pair in chunk_map]
    session, data_dir = None, None
    why = "asked for the stream method"
    if method != "stream":
        data_dir, why = local_data_dir(tools, dsn, str(spec["system_identifier"]))
    if data_dir is not None:
        session = BackupSession(tools, dsn)
        try:
            spec["read_started_ns"] = time.time_ns()
            session.ask("SELECT pg_backup_start('drsync base backup', true)")
        except SourceError as err:
            session.close()
            session, why = None, str(err)
    if session is None and method == "direct":
        raise SourceError(f"cannot read the data directory directly: {why}")
    if session is not None:
        assert data_dir is not None
        spec["method"] = "direct"
        spec["data_directory"] = str(data_dir)
        try:
            reuse = previous(spec) if previous is not None else None
            yield _direct_items(session, data_dir, spec, chunk_map, reuse)
        finally:
            session.close()
        return
    spec.pop("read_started_ns", None)
    spec["method"] = "stream"
    if method == "auto":
        spec["method_fallback"] = why
    args = [tools.path("pg_basebackup"), "-d", conn.dsn, "-D", "-", "-Ft", "-X", "none",
            "-c", "fast", "-v", "--label", "drsync base backup"]
    reader = ProcessReader(args, "pg_basebackup", conn.env())
    try:
        yield _tar_items(reader, spec, chunk_map)
    finally:
        reader.close()


def _direct_items(session: BackupSession, data_dir: Path, spec: dict[str, Any],
                  chunk_map: ChunkMap, reuse: Reuse | None) -> Iterator[SourceItem]:
    """The files between pg_backup_start and pg_backup_stop, then the label file. Like
    ``pg_basebackup -X none``, the stop waits until the last WAL segment is archived."""
    counts = {"read": 0, "reused": 0, "vanished": 0}
    yield from direct_items(data_dir, PGDATA_PREFIX, chunk_map, counts, reuse)
    stop_lsn, label_hex = session.ask(
        "SELECT lsn, encode(convert_to(labelfile, 'UTF8'), 'hex') FROM pg_backup_stop(true)")
    label = bytes.fromhex(label_hex).decode()
    yield label_item(PGDATA_PREFIX, label)
    spec.update(_backup_positions(label, stop_lsn, int(spec.get("wal_segment_size", 16 << 20))))
    spec.update({"files_read": counts["read"],
                 "files_reused": counts["reused"], "files_vanished": counts["vanished"]})


class _Member:
    """One tar member's content, read straight from the stream: tarfile's stream mode
    copies every byte through its 10 KiB record buffer, twice the CPU of this."""

    def __init__(self, stream: ProcessReader, size: int) -> None:
        self._stream = stream
        self._left = size
        self._pad = -size % _BLOCK

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(size)
        if len(data) < size:
            data += _read_exact(self._stream, size - len(data))
        self._left -= len(data)
        return data

    def skip(self) -> None:
        """To the next header: what the consumer left unread, then the padding."""
        while self._left > 0:
            self.read(1 << 16)
        _read_exact(self._stream, self._pad)
        self._pad = 0

    def close(self) -> None:
        pass  # the stream stays open for the next member

    def __enter__(self) -> _Member:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _read_exact(stream: ProcessReader, size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        data = stream.read(left)
        if not data:
            raise SourceError("pg_basebackup: tar stream truncated")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _headers(reader: ProcessReader) -> Iterator[tuple[tarfile.TarInfo, _Member]]:
    """The members of a ustar stream as pg_basebackup writes it (no pax or GNU
    extension headers: it writes none), each with its content reader."""
    while True:
        block = reader.read(_BLOCK)
        if block and len(block) < _BLOCK:
            block += _read_exact(reader, _BLOCK - len(block))
        if not block.strip(b"\0"):
            return  # the end-of-archive blocks (or the stream's end)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as err:
            reader.read()  # surfaces pg_basebackup's own error first
            raise SourceError(f"pg_basebackup: unreadable tar stream: {err}") from None
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE):
            raise SourceError(f"pg_basebackup: unexpected tar member type {info.type!r} "
                              f"({info.name!r})")
        member = _Member(reader, info.size if info.isfile() else 0)
        yield info, member
        member.skip()


def _tar_items(reader: ProcessReader, spec: dict[str, Any],
               chunk_map: ChunkMap) -> Iterator[SourceItem]:
    captured: dict[str, list[bytes]] = {name: [] for name in _CAPTURE}
    for info, member in _headers(reader):
        name = info.name.removeprefix("./").rstrip("/")
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise SourceError(f"pg_basebackup: unexpected member {info.name!r}")
        path = f"{PGDATA_PREFIX}/{name}"
        mtime = int(info.mtime) * 1_000_000_000
        if info.isdir():
            yield SourceItem(Entry(path, "dir", info.mode, mtime))
        elif info.issym():
            yield SourceItem(Entry(path, "symlink", info.mode, mtime, 0, info.linkname))
        else:
            opener: Any = (lambda f=member: f) if name not in captured else (
                lambda f=member, n=name: _Capture(f, captured[n]))
            yield SourceItem(Entry(path, "file", info.mode, mtime, info.size), opener,
                             f"pg_basebackup:{name}",
                             fixed_chunk=chunk_for_size(chunk_map, info.size))
    while reader.read(1 << 16):
        pass  # to the end: a failed pg_basebackup raises here
    spec.update(_backup_positions(b"".join(captured["backup_label"]).decode(),
                                  _stop_lsn(b"".join(captured["backup_manifest"]),
                                            reader.stderr),
                                  int(spec.get("wal_segment_size", 16 << 20))))


def _stop_lsn(manifest: bytes, stderr: str) -> str | None:
    """Where pg_basebackup's backup ended: its manifest's last WAL range, or its log."""
    if manifest:
        ranges = json.loads(manifest).get("WAL-Ranges") or []
        if ranges:
            return str(ranges[-1]["End-LSN"])
    found = re.search(r"write-ahead log end point: (\S+)", stderr)
    return found.group(1) if found else None


def _backup_positions(label: str, stop_lsn: str | None, segment_size: int) -> dict[str, Any]:
    start = re.search(r"START WAL LOCATION: (\S+)", label)
    timeline = re.search(r"START TIMELINE: (\d+)", label)
    started = re.search(r"START TIME: (.+)", label)
    if not (start and timeline and stop_lsn):
        raise SourceError("pg_basebackup: backup_label or end position missing from the stream")
    tli = int(timeline.group(1))
    return {
        "start_lsn": start.group(1), "stop_lsn": stop_lsn, "timeline": tli,
        "start_wal": segment_name(tli, lsn_to_int(start.group(1)), segment_size),
        "stop_wal": segment_name(tli, lsn_to_int(stop_lsn), segment_size),
        "backup_started": started.group(1).strip() if started else None,
        "consistent_at": datetime.now(UTC).isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
    }


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def configure_recovery(pgdata: str | Path, restore_command: str, target: RecoveryTarget, *,
                       options: dict[str, str] | None = None,
                       keep_archiving: bool = False) -> Path:
    """Make ``pgdata`` replay archived WAL to ``target`` when started; return the conf file.

    Written through the directory's descriptor, never following a symlink: a
    restored ``postgresql.auto.conf`` that is a link must not carry the settings
    (as root) into a file outside the data directory.
    """
    pgdata = Path(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        raise UsageError(f"{pgdata} does not hold a restored data directory")
    settings = {"restore_command": restore_command, **target.settings()}
    if not keep_archiving:
        settings["archive_mode"] = "off"
    settings.update(options or {})
    conf = pgdata / "postgresql.auto.conf"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [f"\n# drsync restore, {stamp}: replay archived WAL to {target.describe()}\n"]
    lines += [f"{key} = {_quote(value)}\n" for key, value in settings.items()]
    root = os.open(pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        wal = _inside(pgdata, root, "pg_wal", os.O_RDONLY | os.O_DIRECTORY, mkdir=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir("archive_status", 0o700, dir_fd=wal)
        os.close(wal)
        with os.fdopen(_inside(pgdata, root, "postgresql.auto.conf",
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as fh:
            fh.writelines(lines)
        os.close(_inside(pgdata, root, "recovery.signal", os.O_WRONLY | os.O_CREAT))
        os.fchmod(root, 0o700)
    finally:
        os.close(root)
    return conf


def _inside(pgdata: Path, dir_fd: int, name: str, flags: int, *, mkdir: bool = False) -> int:
    """Open ``name`` in the data directory, refusing a symlink there."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        if not mkdir:
            raise
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"refusing to write {pgdata / name}: the restored data directory "
                             f"holds a symlink or a file there") from None
        raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    return _inside(pgdata, dir_fd, name, flags)


def start_cluster(pgdata: str | Path, *, run_as: list[str] | None = None,
                  tools: PgTools | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Start the restored cluster; wait until recovery ended and it accepts connections."""
    from drsync.repo.lock import pid_alive

    tools = tools or PgTools()
    pgdata = Path(pgdata)
    prefix = run_as or []
    log = pgdata / "drsync-restore.log"
    done = subprocess.run([*prefix, tools.path("pg_ctl"), "-D", str(pgdata), "-l", str(log),
                           "-w", "-t", str(int(timeout)), "start"],
                          capture_output=True, text=True, timeout=timeout + 30)
    if done.returncode != 0:
        tail = log.read_text(errors="replace") if log.exists() else done.stderr
        fatal = [ln for ln in tail.splitlines() if "FATAL" in ln or "PANIC" in ln]
        raise SourceError(f"PostgreSQL did not start in {pgdata}: "
                          f"{(fatal or [last_line(tail)])[-1]} (log: {log})")
    pid_lines = (pgdata / "postmaster.pid").read_text().splitlines()
    postmaster, port, socket_dir = int(pid_lines[0]), pid_lines[3], pid_lines[4] or "/tmp"
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        probe = subprocess.run([*prefix, tools.path("psql"), "-X", "-At", "-h", socket_dir, "-p",
                                port, "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip() == "f":
            break
        # With hot_standby on, pg_ctl -w returns once the server takes read-only
        # connections; a recovery that then fails (a target time past the archived WAL)
        # shuts the server down, so a dead postmaster ends the wait with its FATAL line.
        if not pid_alive(postmaster):
            tail = log.read_text(errors="replace") if log.exists() else ""
            fatal = [ln for ln in tail.splitlines() if "FATAL" in ln or "PANIC" in ln]
            raise SourceError(f"PostgreSQL did not start in {pgdata} (it stopped in recovery): "
                              f"{(fatal or [last_line(tail) or 'no log'])[-1]} (log: {log})")
        if time.monotonic() > deadline:
            raise SourceError(f"PostgreSQL in {pgdata} is still recovering after {timeout:.0f} s")
        time.sleep(pause)
        pause = min(2.0, pause * 1.5)  # a long replay is probed every 2 s, not 5 times a second
    return {"port": int(port), "socket_dir": socket_dir, "log": str(log)}


def _substitute(command: str, wal: str, dest: str) -> str:
    """restore_command's placeholders as PostgreSQL fills them (%f, %p, %r, %%)."""
    out, i = [], 0
    while i < len(command):
        if command[i] == "%" and i + 1 < len(command):
            out.append({"f": wal, "p": dest, "r": wal, "%": "%"}.get(command[i + 1],
                                                                   command[i:i + 2]))
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def check_restore_command(pgdata: str | Path, command: str, wal: str, *,
                          run_as: list[str] | None = None, timeout: float = 600,
                          prefetch: bool = True) -> dict[str, Any]:
    """Run ``command`` for WAL file ``wal`` as the server would; ConfigError (one line)
    when it fails or writes nothing. The fetched copy is removed again. Fetched into
    pg_wal, as the server fetches, a drsync wal-fetch starts its prefetcher for the
    server about to start; ``prefetch`` False (no server follows) fetches beside pg_wal
    instead, where none starts."""
    pgdata = Path(pgdata)
    dest = ("pg_wal/" if prefetch else "") + f"drsync-check-{os.getpid()}-{time.monotonic_ns()}"
    user = run_as[2] if run_as and len(run_as) > 2 else _me()
    started = time.monotonic()
    try:
        done = subprocess.run([*(run_as or []), "sh", "-c", _substitute(command, wal, dest)],
                              cwd=pgdata, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"restore_command did not fetch WAL file {wal} (the first one the "
                          f"backup needs) as user {user} in {timeout:.0f} s; fix it before "
                          f"starting the server (it is in {pgdata}/postgresql.auto.conf)"
                          ) from None
    fetched = pgdata / dest
    try:
        size = fetched.stat().st_size if done.returncode == 0 else 0
    except FileNotFoundError:
        size = -1
    finally:
        with contextlib.suppress(OSError):
            fetched.unlink()
    if done.returncode == 0 and size > 0:
        return {"wal": wal, "user": user, "bytes": size,
                "duration_s": round(time.monotonic() - started, 3)}
    if done.returncode == 0:
        why = "exited 0 but wrote no file"
    elif done.returncode == 1 and not done.stderr.strip():
        why = "found no such file (exit 1): the archive lacks it"
    else:
        why = f"failed (exit {done.returncode}): {last_line(done.stderr)}"
    raise ConfigError(f"restore_command run as user {user} for WAL file {wal} (the first one "
                      f"the backup needs) {why}; fix it before starting the server (it is in "
                      f"{pgdata}/postgresql.auto.conf)")


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


_RESTORED = re.compile(r'restored log file "([0-9A-F]{24}|[0-9A-F]{8}\.history)" from archive')
_STOPPED = re.compile(r"(recovery stopping .*|redo done at .*|archive recovery complete.*)$")
_NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")


def recovery_outcome(pgdata: str | Path, server: dict[str, Any], *,
                     run_as: list[str] | None = None,
                     tools: PgTools | None = None) -> dict[str, Any]:
    """Where recovery stopped, as the running server and its log say: the last
    transaction replayed (its commit time, UTC) and the last LSN replayed, the timeline
    it now writes, and the WAL files it fetched from the archive."""
    tools = tools or PgTools()
    sql = ("SELECT to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
           "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), pg_last_wal_replay_lsn(), "
           "pg_walfile_name(pg_current_wal_lsn()), pg_is_in_recovery()")
    done = subprocess.run([*(run_as or []), tools.path("psql"), "-X", "-At", "-F", "|", "-h",
                           str(server["socket_dir"]), "-p", str(server["port"]), "-d",
                           "postgres", "-c", sql], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SourceError(f"PostgreSQL in {pgdata} is up but cannot be asked where recovery "
                          f"stopped: {last_line(done.stderr)}")
    replayed_at, replay_lsn, walfile, in_recovery = done.stdout.strip().split("|")
    fetched: list[str] = []
    stopped = None
    new_timeline = None
    log = Path(server["log"])
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if (found := _RESTORED.search(line)) is not None:
            fetched.append(found.group(1))
        elif (found := _STOPPED.search(line)) is not None and stopped is None:
            stopped = found.group(1).strip()
        elif (found := _NEW_TIMELINE.search(line)) is not None:
            new_timeline = int(found.group(1))
    segments = [name for name in fetched if len(name) == 24]
    return {
        "last_replayed_xact_at": replayed_at or None,
        "last_replay_lsn": replay_lsn or None,
        "timeline": int(walfile[:8], 16),
        "new_timeline_in_log": new_timeline,
        "in_recovery": in_recovery == "t",
        "wal_files_fetched": len(segments),
        "first_wal_fetched": segments[0] if segments else None,
        "last_wal_fetched": segments[-1] if segments else None,
        "stopped": stopped,
        "log": str(log),
    }
