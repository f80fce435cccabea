"""The ``drsync`` console entry point: ``wal-push`` before click is imported.

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
from typing import Any

__all__ = ["main"]

_VALUED = ("--config", "--spool")


class _UseClick(Exception):
    """This invocation is not the plain shape: let the full CLI handle it."""


def _parse(args: list[str]) -> dict[str, Any]:
    """wal-push's own options, or _UseClick for anything unusual."""
    opts: dict[str, Any] = {"--config": None, "--spool": None}
    paths: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            paths += args[i + 1:]
            break
        name, eq, value = arg.partition("=")
        if name in _VALUED:
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
    if len(paths) != 1:
        raise _UseClick
    opts["path"] = paths[0]
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


def wal_push_fast(args: list[str]) -> None:
    """Run ``wal-push`` without click, or raise _UseClick."""
    opts = _parse(args)
    if (_click_would_reject(opts["--config"], dir_okay=False)
            or _click_would_reject(opts["--spool"], file_okay=False)
            or _click_would_reject(opts["path"], dir_okay=False)):
        raise _UseClick

    from drsync.settings import resolve
    from drsync.wal.push import push_segment

    settings = resolve(opts["--config"], {"spool": opts["--spool"]}, os.environ)
    if not settings.key_file:
        raise _UseClick  # a passphrase: the KDF dominates anyway, and it may prompt

    def no_passphrase() -> Any:
        raise _UseClick

    push_segment(opts["path"], settings, no_passphrase)


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["wal-push"]:
        from drsync.errors import DrsyncError

        try:
            return wal_push_fast(args[1:])
        except _UseClick:
            pass
        except DrsyncError as err:
            print(f"drsync: error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            print("drsync: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
    from drsync.cli import main as click_main

    return click_main(argv)
