"""PostgreSQL connection strings: the password taken out before a DSN goes anywhere.

A DSN is what libpq's programs take after ``-d``: a URI
(``postgresql://user:secret@host:port/db?param=value``), ``key=value``
pairs (values single-quoted with ``\\'`` and ``\\\\`` escapes, or unquoted
with ``\\`` escaping the next character), or a bare database name. The
grammar is libpq's own (``conninfo_parse`` and ``conninfo_uri_parse`` in
``fe-connect.c``), small enough to follow exactly here.

:class:`PgConnection` splits a DSN into the DSN without its password, safe
on a command line, and the password, which reaches PostgreSQL's programs
only as ``PGPASSWORD`` in their environment (readable by the same user and
root alone, where ``ps`` shows every argument to everyone). :func:`redact`
is the DSN for messages, recorded specs and the catalog.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote

from drsync.errors import UsageError

__all__ = ["PgConnection", "conninfo_pairs", "is_conninfo", "redact", "split_password"]

URI_PREFIXES = ("postgresql://", "postgres://")
SECRET_KEYS = frozenset({"password", "sslpassword"})
MASK = "***"
_SPACE = " \t\n\r\f\v"  # C isspace(), as libpq tests bytes; not Unicode's wider set


@dataclass(frozen=True)
class Param:
    key: str
    value: str
    start: int  # the raw value's span in the DSN (quotes included), for redaction
    end: int


def is_conninfo(dsn: str) -> bool:
    """libpq's test: a URI or anything holding ``=``; otherwise a bare database name."""
    return dsn.startswith(URI_PREFIXES) or "=" in dsn


def _kv_params(dsn: str) -> list[Param]:
    """``key = value ...`` as libpq's conninfo_parse reads it."""
    params: list[Param] = []
    pos, n = 0, len(dsn)
    while True:
        while pos < n and dsn[pos] in _SPACE:
            pos += 1
        if pos >= n:
            return params
        key_start = pos
        while pos < n and dsn[pos] != "=" and dsn[pos] not in _SPACE:
            pos += 1
        key = dsn[key_start:pos]
        while pos < n and dsn[pos] in _SPACE:
            pos += 1
        if pos >= n or dsn[pos] != "=":
            raise ValueError(f'missing "=" after "{key}"')
        pos += 1
        while pos < n and dsn[pos] in _SPACE:
            pos += 1
        start = pos
        chars: list[str] = []
        if pos < n and dsn[pos] == "'":
            pos += 1
            while True:
                if pos >= n:
                    raise ValueError(f'unterminated quoted string after "{key}="')
                if dsn[pos] == "\\":
                    pos += 1
                    if pos < n:
                        chars.append(dsn[pos])
                        pos += 1
                    continue
                if dsn[pos] == "'":
                    pos += 1
                    break
                chars.append(dsn[pos])
                pos += 1
        else:
            while pos < n and dsn[pos] not in _SPACE:
                if dsn[pos] == "\\":
                    pos += 1
                    if pos < n:
                        chars.append(dsn[pos])
                        pos += 1
                else:
                    chars.append(dsn[pos])
                    pos += 1
        params.append(Param(key, "".join(chars), start, pos))


@dataclass(frozen=True)
class _Uri:
    prefix: str
    user: str  # still percent-encoded, like everything here
    password: tuple[int, int] | None  # span of the userinfo password
    rest: str  # hosts, path
    query: list[tuple[str, str, int, int]]  # raw key, raw value, span of the value


def _uri(dsn: str) -> _Uri:
    """The parts of a URI that can carry a password (conninfo_uri_parse_options)."""
    prefix = next(p for p in URI_PREFIXES if dsn.startswith(p))
    start = len(prefix)
    pos = start
    while pos < len(dsn) and dsn[pos] not in "@/":
        pos += 1
    user, password, after = "", None, start
    if pos < len(dsn) and dsn[pos] == "@":
        userspec = dsn[start:pos]
        colon = userspec.find(":")
        user = userspec if colon < 0 else userspec[:colon]
        password = None if colon < 0 else (start + colon + 1, pos)
        after = pos + 1
    mark = dsn.find("?", after)
    rest = dsn[after:] if mark < 0 else dsn[after:mark]
    query: list[tuple[str, str, int, int]] = []
    if mark >= 0:
        offset = mark + 1
        for item in dsn[mark + 1:].split("&"):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f'missing key/value separator "=" in URI query parameter '
                                 f'"{unquote(key)}"')
            begin = offset + len(key) + 1
            query.append((key, value, begin, begin + len(value)))
            offset += len(item) + 1
    return _Uri(prefix, user, password, rest, query)


def conninfo_pairs(dsn: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a key=value DSN, unquoted; UsageError (redacted) if malformed."""
    try:
        return [(p.key, p.value) for p in _kv_params(dsn)]
    except ValueError as err:
        raise UsageError(f"cannot parse the connection string {redact(dsn)!r}: {err}") from None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_password(dsn: str) -> tuple[str, str | None]:
    """(the DSN without its password, the password or None). libpq: the last one given wins,
    a URI's query after its user info. UsageError, never showing the password, if malformed."""
    if not is_conninfo(dsn):
        return dsn, None
    try:
        if not dsn.startswith(URI_PREFIXES):
            params = _kv_params(dsn)
            passwords = [p.value for p in params if p.key == "password"]
            clean = " ".join(f"{p.key}={_quote(p.value)}" for p in params
                             if p.key != "password")
            return clean, (passwords[-1] if passwords else None)
        uri = _uri(dsn)
    except ValueError as err:
        raise UsageError(f"cannot parse the connection string {redact(dsn)!r}: {err}") from None
    password = None if uri.password is None else unquote(dsn[uri.password[0]:uri.password[1]])
    kept = []
    for key, value, _start, _end in uri.query:
        if unquote(key) == "password":
            password = unquote(value)
        else:
            kept.append(f"{key}={value}")
    clean = uri.prefix + (f"{uri.user}@" if uri.user else "") + uri.rest
    return clean + ("?" + "&".join(kept) if kept else ""), password


def _secret_spans(dsn: str) -> list[tuple[int, int]]:
    if not dsn.startswith(URI_PREFIXES):
        return [(p.start, p.end) for p in _kv_params(dsn) if p.key in SECRET_KEYS]
    uri = _uri(dsn)
    spans = [] if uri.password is None else [uri.password]
    return spans + [(s, e) for k, _v, s, e in uri.query if unquote(k) in SECRET_KEYS]


_LOOSE_KV = re.compile(r"(?i)(ssl)?password\s*=.*", re.DOTALL)
_LOOSE_URI = re.compile(r"(://[^@/]*?:)[^@/]*@")


def redact(dsn: str) -> str:
    """The DSN for messages, recorded specs and the catalog: every password ``***``."""
    if not is_conninfo(dsn):
        return dsn
    try:
        spans = _secret_spans(dsn)
    except ValueError:
        # Unparsable: nothing after a password keyword can be trusted to end it.
        loose = _LOOSE_URI.sub(lambda m: m.group(1) + MASK + "@", dsn)
        return _LOOSE_KV.sub(lambda m: (m.group(1) or "") + "password=" + MASK, loose)
    out, last = [], 0
    for start, end in sorted(spans):
        out += [dsn[last:start], MASK]
        last = end
    return "".join([*out, dsn[last:]])


@dataclass(frozen=True)
class PgConnection:
    """A DSN as PostgreSQL's programs get it: ``dsn`` on the command line (no password),
    ``env()`` as their environment (``PGPASSWORD`` when the DSN held one), ``shown`` in
    messages."""

    dsn: str
    password: str | None
    shown: str

    @classmethod
    def of(cls, dsn: str) -> PgConnection:
        clean, password = split_password(dsn)
        return cls(clean, password, redact(dsn))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password  # libpq: a password in the DSN beats this
        return env

    def __repr__(self) -> str:
        return f"PgConnection({self.shown!r})"
