"""Is PostgreSQL's archiver actually getting WAL to drsync? doctor's two checks of it.

``archive_command`` naming ``drsync wal-push`` says nothing about whether it
works: when it fails (drsync not executable by the server's user, a missing
config file, a full spool disk), PostgreSQL keeps the WAL in pg_wal, retries
forever and counts the failures in ``pg_stat_archiver``. So doctor judges:

- ``archiver``: failing when the last failure is more recent than the last
  success (or nothing ever succeeded), naming the failed WAL and its time;
- ``archive_command executable``: when the server runs on this host (doctor
  reached it over a unix socket and sees its data directory), whether the
  drsync that archive_command names by absolute path is executable by the
  data directory's owner, the server's OS user. A bare ``drsync`` is looked up
  in the server's PATH, which only the server knows: not judged.

The judging is pure (``judge_archiver``, ``judge_executable``); ``check_archiver``
reads the server.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from drsync.sources.postgres.doctor import Finding
from drsync.sources.postgres.tools import PgTools

__all__ = ["ArchiverStats", "check_archiver", "drsync_executable", "executable_by",
           "judge_archiver", "judge_executable"]


@dataclass(frozen=True)
class ArchiverStats:
    """One row of pg_stat_archiver; times as the server prints them, "" for none."""

    archived_count: int
    last_archived_wal: str
    last_archived_time: str
    failed_count: int
    last_failed_wal: str
    last_failed_time: str
    failing: bool  # the last failure is later than the last success (the server compared)


def judge_archiver(stats: ArchiverStats) -> Finding:
    """Pure: the archiver's counters in, one finding out."""
    archived = (f"last archived {stats.last_archived_wal} at {stats.last_archived_time}"
                if stats.last_archived_wal else "nothing archived yet")
    if stats.failing:
        return Finding(
            "archiver",
            f"last failed {stats.last_failed_wal} at {stats.last_failed_time} "
            f"({stats.failed_count} failed attempt(s)); {archived}", False,
            "archive_command is failing: WAL piles up in pg_wal and nothing new is "
            "restorable; the server log has its error (run the command as the server's "
            "OS user to see it)")
    if stats.failed_count:
        return Finding("archiver", f"{archived}; last failure {stats.last_failed_wal} at "
                       f"{stats.last_failed_time} was followed by successes", True,
                       "archive_command works")
    return Finding("archiver", archived, True,
                   "archive_command works" if stats.archived_count
                   else "no archive attempt has failed")


def drsync_executable(archive_command: str) -> str | None:
    """The absolute path of the drsync that ``archive_command`` runs, if it names one:
    the first word that is no ``NAME=value`` assignment (nor ``env``), when its base
    name is drsync."""
    try:
        words = shlex.split(archive_command)
    except ValueError:
        return None
    for word in words:
        if word == "env" or ("=" in word and not word.startswith(("/", "."))):
            continue
        if os.path.isabs(word) and os.path.basename(word).startswith("drsync"):
            return word
        return None
    return None


def executable_by(path: str, uid: int, _depth: int = 0) -> str | None:
    """Why the user ``uid`` cannot execute ``path`` (a missing file, a directory on the way
    it may not search, no execute bit for it), or None when it can. Judged from the mode
    bits of the file and of every directory above it, as the kernel does (ACLs aside),
    then the same for where its symlinks lead and for a script's ``#!`` interpreter (a
    venv's python is a symlink into its base Python's home: under /root, the server's
    user cannot run the script whatever its own mode bits say)."""
    why = _mode_problem(Path(path), uid)
    if why is not None:
        return why
    real = Path(os.path.realpath(path))
    if real != Path(path):
        why = _mode_problem(real, uid)
        if why is not None:
            return f"{path} leads to {real}: {why}"
    interpreter = _shebang(real) if _depth < 3 else None
    if interpreter is not None:
        why = executable_by(interpreter, uid, _depth + 1)
        if why is not None:
            return f"{path} runs {interpreter} (its #! line): {why}"
    return None


def _shebang(path: Path) -> str | None:
    """The absolute interpreter a script's ``#!`` line names (None: no script, or
    ``/usr/bin/env NAME``, found on a PATH this does not know)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or words[0].endswith(b"/env"):
        return None
    first = words[0].decode(errors="replace")
    return first if first.startswith("/") else None


def _mode_problem(target: Path, uid: int) -> str | None:
    try:
        user = pwd.getpwuid(uid)
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    except KeyError:
        groups = set()
    for place, bit in [*((d, "search") for d in reversed(target.parents)),
                       (target, "execute")]:
        try:
            st = os.stat(place)
        except FileNotFoundError:
            return f"{place} does not exist"
        except OSError as err:
            return f"{place}: {err.strerror}"
        if uid == 0:
            allowed = bool(st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)) \
                or stat.S_ISDIR(st.st_mode)
        elif st.st_uid == uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            return f"no {bit} permission on {place} ({stat.filemode(st.st_mode)})"
    return None


def judge_executable(archive_command: str, server_uid: int | None) -> Finding | None:
    """The ``archive_command executable`` finding, or None when there is nothing to judge
    (another host, or no absolute drsync path in the command)."""
    exe = drsync_executable(archive_command)
    if exe is None or server_uid is None:
        return None
    try:
        who = pwd.getpwuid(server_uid).pw_name
    except KeyError:
        who = f"uid {server_uid}"
    why = executable_by(exe, server_uid)
    if why is None:
        return Finding("archive_command executable", exe, True,
                       f"the server's user {who} can run it")
    return Finding("archive_command executable", exe, False,
                   f"the server's user {who} cannot run it ({why}): every archive attempt "
                   f"fails; install drsync where {who} can execute it")


_STATS_SQL = (
    "SELECT archived_count, coalesce(last_archived_wal, ''), "
    "coalesce(last_archived_time::text, ''), failed_count, coalesce(last_failed_wal, ''), "
    "coalesce(last_failed_time::text, ''), "
    "coalesce(last_failed_time > last_archived_time, last_failed_time IS NOT NULL), "
    # pg_settings, not current_setting(): a role that may not see a setting gets no row
    # rather than an error.
    "coalesce((SELECT setting FROM pg_settings WHERE name = 'archive_command'), ''), "
    "inet_server_addr() IS NULL, "
    "coalesce((SELECT setting FROM pg_settings WHERE name = 'data_directory'), '') "
    "FROM pg_stat_archiver")


def check_archiver(dsn: str, tools: PgTools | None = None) -> list[Finding]:
    """Read pg_stat_archiver (and, on this host, the archive_command's drsync)."""
    tools = tools or PgTools()
    row = tools.query(dsn, _STATS_SQL)[0]
    stats = ArchiverStats(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5],
                          row[6] == "t")
    out = [judge_archiver(stats)]
    # Same host: a unix-socket connection to a server whose data directory we see.
    server_uid = None
    if row[8] == "t" and row[9]:
        try:
            server_uid = os.stat(row[9]).st_uid
        except OSError:
            server_uid = None
    executable = judge_executable(row[7], server_uid)
    if executable is not None:
        out.append(executable)
    return out
