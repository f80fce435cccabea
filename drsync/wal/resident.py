"""The resident pusher: wal-push without the interpreter's start-up, and with look-ahead.

PostgreSQL runs ``archive_command`` once per segment and waits; a fresh
``drsync wal-push`` spends about 55 ms starting Python and importing the
crypto, compression and settings code before the ~50 ms of work. So after
a push of its own, the console script's fast path (``drsync.entry``) forks
this pusher: a detached process (own session, stdio on /dev/null, cwd /)
that keeps those imports and the opened key, listens on an abstract unix
socket named after the invocation's identity
(:func:`drsync.entry.push_identity`: same python, drsync, user, cwd,
options and ``DRSYNC_*``/``HOME``/``XDG_STATE_HOME`` environment), and
exits after ``IDLE_S`` seconds without a request. The next wal-push of the
same identity connects (``_socket`` only, nothing of drsync imported),
sends its path, and exits as the pusher says.

Look-ahead, as pgBackRest's asynchronous archiving: after each request the
pusher reads ``archive_status`` next to the segment and pushes the other
segments PostgreSQL has marked ``.ready`` into the spool, each exactly as a
request would (:func:`drsync.wal.push.push_file`: durable object, conflict
check). It remembers, in memory only, each one's source identity (device,
inode, size, mtime, ctime, taken before the read and unchanged after it) and
the spool object's (inode, size, mtime, ctime). A later request whose file
and spooled object both still match is answered at once; anything else is
pushed for real, so a different file under a spooled name is still the
WalConflict. Nothing about look-ahead is written to disk: a pusher killed at
any moment leaves the spool as a killed wal-push would (whole objects or
none, temporaries named ``.tmp-*``), and no marker that could be wrong.

What the pusher refuses (then the client pushes by itself, as before): a
request of another identity (an address collision), a client of another
user (SO_PEERCRED), and any request once the config file (its bytes, against
those the parent read) or the key file (its stat) changed since they were read
(it exits: the next push starts a fresh one). A pusher that dies mid-request
leaves the client to push itself.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from drsync.errors import DrsyncError

if TYPE_CHECKING:
    import socket

    from drsync.repo.crypto import MasterKey
    from drsync.settings import Settings
    from drsync.wal.spool import Spool

__all__ = ["IDLE_S", "start"]

IDLE_S = 60.0  # an archiving cluster pushes far more often; an idle one pays one cold push
_PROTO = "drsync-wal-push 1"
_LOOKAHEAD_MAX = 64  # segments pushed ahead per request: bounded work between requests

Ident = tuple[int, ...]


def _ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stat_or_none(path: str | None) -> Ident | None:
    if not path:
        return None
    try:
        return _ident(os.stat(path))
    except OSError:
        return None


def _sha256_or_none(path: str | None) -> str | None:
    if not path:
        return None
    import hashlib
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def start(identity: list[str], settings: Settings, spool: Spool, served: str) -> None:
    """Fork a resident pusher for ``identity`` (the caller then simply exits)."""
    import threading

    if threading.active_count() > 1:
        return  # a fork copies no thread, but may copy a lock one of them holds
    try:
        pid = os.fork()
    except OSError:
        return  # no pusher: every push stays a cold one
    if pid:
        return
    code = 0
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        _Pusher(identity, settings, spool).run(served)
    except BaseException:  # nobody to tell: the next wal-push pushes by itself
        code = 1
    finally:
        os._exit(code)


class _Pusher:
    def __init__(self, identity: list[str], settings: Settings, spool: Spool) -> None:
        import socket

        from drsync.entry import resident_address
        from drsync.wal.push import spool_key

        self.identity = identity
        self.spool = spool
        # The config as the parent read it (its bytes, compared on every request: a stat taken
        # here could already see an edit made since the parent's read, and an edit within one
        # mtime tick keeps the stat), and the key as stat'ed before it is read.
        self.config = settings.source or None
        self.config_sha256 = settings.source_sha256
        self.key_path = os.path.abspath(settings.key_file) if settings.key_file else None
        self.key_ident = _stat_or_none(self.key_path)
        self.key: MasterKey = spool_key(spool, settings.key_file, None, _no_passphrase)
        self.ahead: dict[str, tuple[str, Ident, Ident]] = {}  # name -> (path, source, object)
        # Served, or refused by look-ahead (a conflict): not read again while unchanged, as
        # PostgreSQL marks it done only after the answer (or never, for a conflict).
        self.handled: dict[str, tuple[str, Ident | None]] = {}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(resident_address(identity))  # EADDRINUSE: one is running already
        self.sock.listen(8)
        self.cwd = identity[3]  # a request's path is relative to it, as in the client

    def unchanged(self) -> bool:
        return (_sha256_or_none(self.config) == (self.config_sha256 or None)
                and _stat_or_none(self.key_path) == self.key_ident)

    def run(self, served: str) -> None:
        import select

        watch = _ReadyWatch(os.path.join(os.path.dirname(served), "archive_status"))
        self.handled[os.path.basename(served)] = (served, _stat_or_none(served))  # the parent's
        self.look_ahead(served)
        listening = self.sock.fileno()
        idle_until = time.monotonic() + IDLE_S  # counted from the last request only
        while True:
            left = idle_until - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([listening, *watch.fds()], [], [], left)
            if not ready:
                return
            if listening not in ready:
                # A segment was just marked ready: PostgreSQL is about to ask for it
                # (a shell and an interpreter away); start now.
                if watch.drain():
                    self.look_ahead(served)
                continue
            conn, _ = self.sock.accept()
            with conn:
                path = self.serve(conn)
            if path is None:
                return
            idle_until = time.monotonic() + IDLE_S
            if path:
                served = path
                self.look_ahead(path)

    def serve(self, conn: socket.socket) -> str | None:
        """Answer one request: its absolute path, "" when refused, None when this pusher
        must stop."""
        import socket

        conn.settimeout(10)
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[4:8], sys.byteorder) != os.getuid():
            return ""  # another user: say nothing
        request = b""
        while chunk := conn.recv(65536):
            request += chunk
        fields = request.decode("utf-8", "surrogateescape").split("\0")
        if fields[:1] != [_PROTO] or fields[1:-1] != self.identity or len(fields) < 3:
            conn.sendall(b"F")  # an address collision: the client pushes by itself
            return ""
        given = fields[-1]
        if not self.unchanged():
            conn.sendall(b"F")
            return None
        try:
            os.chdir(self.cwd)  # the directory of that name now, as the client sees it
        except OSError:
            conn.sendall(b"F")
            return None
        path = os.path.abspath(given)
        self.handled[os.path.basename(path)] = (path, _stat_or_none(path))
        try:
            if not self.already_pushed(path):
                self.push(given)  # the path as given: the same messages as a cold push
        except DrsyncError as err:
            conn.sendall(f"E{err.exit_code}\0{err}".encode("utf-8", "surrogateescape"))
            return path
        conn.sendall(b"0")
        return path

    def already_pushed(self, path: str) -> bool:
        """Whether look-ahead spooled exactly this file (same source, object unchanged)."""
        name = os.path.basename(path)
        entry = self.ahead.pop(name, None)
        if entry is None or entry[0] != path:
            return False
        return (_stat_or_none(path) == entry[1]
                and _stat_or_none(str(self.spool.path(name))) == entry[2])

    def push(self, path: str) -> None:
        from drsync.wal.headstart import HeadStart
        from drsync.wal.push import WAL_LEVEL, push_file

        if self.spool.exists(os.path.basename(path)):
            push_file(path, self.spool, self.key)  # a comparison: nothing to compress
            return
        try:
            head_start = HeadStart(path, WAL_LEVEL)
        except RuntimeError:  # no thread to be had: push on this one
            head_start = None
        try:
            push_file(path, self.spool, self.key, head_start)
        finally:
            if head_start is not None:
                head_start.wait()

    def look_ahead(self, served: str) -> None:
        """Push the other segments marked ready next to ``served``, oldest first, until
        a request comes in."""
        import select

        from drsync.repo.wal import is_wal_name
        from drsync.wal.push import push_file

        wal_dir = os.path.dirname(served)
        try:
            listed = os.listdir(os.path.join(wal_dir, "archive_status"))
        except OSError:
            return
        names = sorted(n[:-6] for n in listed if n.endswith(".ready"))
        # History files first, as PostgreSQL archives them.
        names.sort(key=lambda n: not n.endswith(".history"))
        done = 0
        for name in names:
            path = os.path.join(wal_dir, name)
            if (done >= _LOOKAHEAD_MAX or not is_wal_name(name) or path == served
                    or name in self.ahead):
                continue
            before = _stat_or_none(path)
            if self.handled.get(name) == (path, before):
                continue
            if select.select([self.sock], [], [], 0)[0]:
                return  # PostgreSQL is waiting: serve it first
            try:
                push_file(Path(path), self.spool, self.key)
            except DrsyncError:
                self.handled[name] = (path, before)
                continue  # e.g. a conflict: the real request reports it
            after = _stat_or_none(path)
            spooled = _stat_or_none(str(self.spool.path(name)))
            if before is not None and before == after and spooled is not None:
                self.ahead[name] = (path, before, spooled)
            done += 1
        # Forget what PostgreSQL archived meanwhile by other means (no longer ready).
        for name in [n for n in self.ahead if n not in names]:
            del self.ahead[name]
        for name in [n for n in self.handled if n not in names]:
            del self.handled[name]


class _ReadyWatch:
    """inotify on archive_status: wakes the pusher when PostgreSQL marks a segment ready
    (it fsyncs a segment before it creates the .ready file). Without inotify (another OS,
    no instances left) the pusher just looks ahead after each request."""

    _IN_CREATE, _IN_MOVED_TO, _IN_NONBLOCK, _IN_CLOEXEC = 0x100, 0x80, 0o4000, 0o2000000

    def __init__(self, directory: str) -> None:
        self.fd = -1
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(self._IN_NONBLOCK | self._IN_CLOEXEC)
            if fd < 0:
                return
            if libc.inotify_add_watch(fd, os.fsencode(directory),
                                      self._IN_CREATE | self._IN_MOVED_TO) < 0:
                os.close(fd)
                return
            self.fd = fd
        except (OSError, AttributeError):
            return

    def fds(self) -> list[int]:
        return [self.fd] if self.fd >= 0 else []

    def drain(self) -> bool:
        """Read the pending events: whether one was a .ready file (not a .done)."""
        ready = False
        try:
            while events := os.read(self.fd, 65536):
                at = 0
                while at + 16 <= len(events):  # struct inotify_event: wd, mask, cookie, len
                    length = int.from_bytes(events[at + 12:at + 16], sys.byteorder)
                    name = events[at + 16:at + 16 + length].rstrip(b"\0")
                    ready = ready or name.endswith(b".ready")
                    at += 16 + length
        except BlockingIOError:
            pass
        return ready


def _no_passphrase() -> MasterKey:
    raise RuntimeError("the resident pusher runs only with a key file")
