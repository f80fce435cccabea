"""The ``drsync`` console entry point: ``wal-push`` (and a queued ``wal-fetch``) before click.

PostgreSQL waits on every ``archive_command``; importing click and the
CLI's context module is a good part of a ``wal-push`` run. So when the
first argument is ``wal-push`` and the rest has the plain shape of an
archive_command (``wal-push [--config FILE] [--spool DIR] PATH``, options
before or after PATH, ``--opt=value`` or ``--opt value``), this module
resolves the settings with the same :func:`drsync.settings.resolve` the
click command uses (``--config`` after the subcommand winning over
``DRSYNC_CONFIG``) and calls the same service,
:func:`drsync.wal.push.push_segment`, which also fetches the key wrapping
for the first push of a spool from the store with the configured options.
Before those imports it starts reading and compressing the segment in a
thread (:mod:`drsync.wal.headstart`), so zstd runs on one core while the
imports and the key take the other.

Run as the console script, the fast path first asks a resident pusher of
the same identity (:func:`push_identity`; :mod:`drsync.wal.resident`) over
its abstract unix socket, importing only ``_socket``, and exits as it
answers; with none (or a refusal, or no answer) it pushes by itself as
above and then forks one, unless ``[wal] resident = false``.

``wal-fetch`` in restore_command's plain shape (``[--repo URL] [--key-file
FILE] [--config FILE] ... wal-fetch [--spool DIR] [--config FILE] NAME DEST``,
global options that take a value only) runs without click too: a segment
the prefetcher already verified (:mod:`drsync.wal.prefetch`,
:mod:`drsync.wal.queue`) is a rename, done before anything else is
imported; any other name calls the click command's service,
:func:`drsync.wal.ship.fetch_for_recovery`, with the same settings and exit
codes (a passphrase instead of a key file goes to click).

Anything else goes to :func:`drsync.cli.main` unchanged: every other
command, global options before ``wal-push``, ``--json``, ``--help``, an
unknown or malformed option, a path click would reject (a directory, an
unreadable file), and a passphrase instead of a key file (it may prompt).
Those cases behave exactly as the click command by construction; the fast
path handles only the shape whose behaviour it reproduces, and the tests run
both paths side by side.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing itself is not imported: a queued wal-fetch is a rename
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]

_VALUED = ("--config", "--spool")
# drsync.cli's global options that take a value (as restore_command passes them) and the
# setting each one is.
_GLOBAL_VALUED = {"--repo": "repo", "-r": "repo", "--password-file": "password_file",
                  "--key-file": "key_file", "--config": "config_path", "--catalog": "catalog",
                  "--limit-upload": "limit_upload", "--limit-download": "limit_download"}
_WAL_LEVEL = 3  # drsync.wal.push.WAL_LEVEL, restated so the head start need not import push


class _UseClick(Exception):
    """This invocation is not the plain shape: let the full CLI handle it."""


def _parse(args: list[str], valued: tuple[str, ...] = _VALUED,
           npaths: int = 1) -> dict[str, Any]:
    """A subcommand's own options (all taking a value), or _UseClick for anything unusual."""
    opts: dict[str, Any] = dict.fromkeys(valued)
    paths: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            paths += args[i + 1:]
            break
        name, eq, value = arg.partition("=")
        if name in valued:
            if not eq:
                i += 1
                if i == len(args):
                    raise _UseClick  # a missing value: click's usage error
                value = args[i]
            if not value or value.startswith("-"):
                raise _UseClick
            opts[name] = value
        elif arg.startswith("-"):
            raise _UseClick  # --json (for people, not PostgreSQL), --help, unknown, "-"
        else:
            paths.append(arg)
        i += 1
    if len(paths) != npaths:
        raise _UseClick
    opts["path"] = paths[0]
    opts["paths"] = paths
    return opts


def _click_would_reject(path: str | None, *, dir_okay: bool = True,
                        file_okay: bool = True) -> bool:
    """What click.Path(exists=False, readable=True) refuses, checked the same way."""
    if path is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if (not file_okay and stat.S_ISREG(st.st_mode)) or (not dir_okay and
                                                         stat.S_ISDIR(st.st_mode)):
        return True
    return not os.access(path, os.R_OK)


# The environment a wal-push's settings can depend on (drsync.settings.resolve reads only
# DRSYNC_*, XDG_STATE_HOME and HOME; store options only matter for the first push).
_IDENTITY_ENV = ("HOME", "XDG_STATE_HOME")


def push_identity(opts: dict[str, Any]) -> list[str]:
    """What a resident pusher (drsync.wal.resident) must share with this invocation to
    push for it: the same drsync, user, directory, options and settings environment.
    A passphrase's value is not sent, only whether one is set."""
    env = sorted((k, "set" if k == "DRSYNC_PASSWORD" else v) for k, v in os.environ.items()
                 if k.startswith("DRSYNC_") or k in _IDENTITY_ENV)
    return [sys.executable, __file__, str(os.getuid()), os.getcwd(),
            opts["--config"] or "", opts["--spool"] or "",
            *(f"{k}={v}" for k, v in env)]


def resident_address(identity: list[str]) -> bytes:
    """The abstract unix socket of the resident pusher for ``identity`` (FNV-1a 64 of it:
    a collision only costs a refusal, the pusher compares the whole identity)."""
    h = 0xCBF29CE484222325
    for byte in "\0".join(identity).encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"\0drsync-wal-push-{os.getuid()}-{h:016x}".encode()


def _ask_resident(identity: list[str], path: str) -> tuple[int, str] | None:
    """Have a running resident pusher push ``path``: (exit code, error line), or None when
    there is none, it refused, or it went away before answering (then push here: the
    spool's writes are all-or-nothing, so whatever it left is a whole object or none)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(_RESIDENT_WAIT_S)
        sock.connect(resident_address(identity))
        # Only a pusher of this very user may answer for the spool.
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[4:8], sys.byteorder) != os.getuid():
            return None
        sock.sendall("\0".join([_PROTO, *identity, path]).encode("utf-8", "surrogateescape"))
        sock.shutdown(_socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    except OSError:  # none running (ECONNREFUSED), gone, or too slow: push here
        return None
    finally:
        sock.close()
    text = reply.decode("utf-8", "replace")
    if text == "0":
        return 0, ""
    code, sep, message = text[1:].partition("\0")
    if text[:1] == "E" and sep and code.isdigit():
        return int(code), message
    return None


_PROTO = "drsync-wal-push 1"
_RESIDENT_WAIT_S = 120.0  # far longer than one push; past it, push here (the spool is safe)


def wal_push_fast(args: list[str], resident: bool = False) -> None:
    """Run ``wal-push`` without click, or raise _UseClick.

    ``resident`` (the console script only, never a library caller): first ask a resident
    pusher (drsync.wal.resident), and after a push here start one."""
    opts = _parse(args)
    if (_click_would_reject(opts["--config"], dir_okay=False)
            or _click_would_reject(opts["--spool"], file_okay=False)
            or _click_would_reject(opts["path"], dir_okay=False)):
        raise _UseClick
    identity: list[str] = []
    if resident and os.path.isfile(opts["path"]):
        try:
            identity = push_identity(opts)
        except OSError:  # no current directory (removed): nothing to share with a pusher
            identity = []
    if identity:
        answer = _ask_resident(identity, opts["path"])
        if answer is not None:
            code, message = answer
            if code:
                print(f"drsync: error: {message}", file=sys.stderr, flush=True)
                sys.exit(code)
            return

    # Read and compress on another core while this one imports and opens the key.
    from drsync.wal.headstart import HeadStart

    head_start = HeadStart(opts["path"], _WAL_LEVEL)
    from drsync.settings import resolve
    from drsync.wal.push import push_segment

    settings = resolve(opts["--config"], {"spool": opts["--spool"]}, os.environ)
    if not settings.key_file:
        raise _UseClick  # a passphrase: the KDF dominates anyway, and it may prompt

    def no_passphrase() -> Any:
        raise _UseClick

    _, spool = push_segment(opts["path"], settings, no_passphrase, head_start)
    if identity and settings.wal_resident:
        head_start.wait()  # no thread may run at the fork
        from drsync.wal.resident import start

        start(identity, settings, spool, os.path.abspath(opts["path"]))


def _wal_fetch_shape(args: list[str]) -> tuple[dict[str, Any], str | None, str | None,
                                                  str, str]:
    """``[global options] wal-fetch [--spool D] [--config F] NAME DEST`` taken apart:
    (global flags, config, spool, NAME, DEST), or _UseClick for anything else.

    Only global options that take a value may come first; anything else (``--help``,
    ``--version``, an unknown option, a missing value) goes to click."""
    try:
        at = args.index("wal-fetch")
    except ValueError:
        raise _UseClick from None
    flags: dict[str, Any] = {}
    i = 0
    while i < at:
        name, eq, value = args[i].partition("=")
        field = _GLOBAL_VALUED.get(name)
        if field is None:
            raise _UseClick
        if not eq:
            if i + 1 >= at:
                raise _UseClick
            value = args[i + 1]
        if not value or value.startswith("-"):
            raise _UseClick
        flags[field] = value
        i += 1 if eq else 2
    opts = _parse(args[at + 1:], _VALUED, npaths=2)
    config = opts["--config"] or flags.pop("config_path", None)
    flags.pop("config_path", None)
    name, dest = opts["paths"]
    return flags, config, opts["--spool"], name, dest


def wal_fetch_fast(args: list[str]) -> int:
    """Run ``wal-fetch`` without click: a queued segment is a rename
    (:func:`drsync.wal.queue.take_queued`); anything else calls the same service as the
    click command, :func:`drsync.wal.ship.fetch_for_recovery`, with settings from the
    same :func:`drsync.settings.resolve`, and exits as it does: 0, 1 (silently: not
    archived), 126 with one line (anything else). _UseClick for a passphrase (it may
    prompt) and for whatever click would refuse."""
    flags, config, spool, name, dest = _wal_fetch_shape(args)
    from drsync.wal.queue import take_queued

    if take_queued(name, dest):
        return 0
    if (_click_would_reject(config, dir_okay=False)
            or _click_would_reject(flags.get("key_file"), dir_okay=False)
            or _click_would_reject(flags.get("password_file"), dir_okay=False)
            or _click_would_reject(spool, file_okay=False)
            or os.path.isdir(dest)):
        raise _UseClick
    from drsync.errors import DrsyncError, WalNotFound
    from drsync.settings import resolve

    try:
        settings = resolve(config, {**flags, "spool": spool}, os.environ)
        if not settings.key_file:
            raise _UseClick

        def no_passphrase(_store: Any) -> Any:
            raise _UseClick

        from drsync.wal.ship import fetch_for_recovery

        fetch_for_recovery(name, dest, settings, no_passphrase)
    except WalNotFound:
        return WalNotFound.exit_code
    except DrsyncError as err:
        print(f"drsync: error: {err}", file=sys.stderr, flush=True)
        return 126
    return 0


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else list(argv)
    if "wal-fetch" in args:
        try:
            code = wal_fetch_fast(args)
        except _UseClick:
            pass
        except KeyboardInterrupt:
            print("drsync: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
        else:
            if code:
                sys.exit(code)  # as click's standalone mode would: callers may ignore a return
            return None
    if args[:1] == ["wal-push"]:
        try:
            return wal_push_fast(args[1:], resident=argv is None)
        except _UseClick:
            pass
        except Exception as err:
            # Imported only now: a push the resident pusher answers never needs it.
            from drsync.errors import DrsyncError

            if not isinstance(err, DrsyncError):
                raise
            print(f"drsync: error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            print("drsync: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
    if argv is None:  # this process's own entry point: start-up without the cyclic GC
        from drsync.malloc import defer_cyclic_gc

        defer_cyclic_gc()
    from drsync.cli import main as click_main

    return click_main(argv)
