"""WAL objects: one archived PostgreSQL file (segment, timeline history, backup label), or
one MariaDB/MySQL binary log file (same layout; its name tells them apart).

An object is self-describing and sealed with the repository key (see
docs/FORMAT.md, section "WAL objects")::

    DRSY W 01 | name length (1) | name | content id (32) | size (u64) | pushed (u64 µs)
              | sealed payload (codec, nonce, ciphertext, tag)

Everything before the sealed payload is its associated data, so the name,
content id, size and time cannot be changed without authentication
failing. The content id (keyed BLAKE3 of the plaintext, like a chunk id)
lets a second push of the same name be compared with the first without
decrypting, and leaks nothing without the key.

The same bytes sit in the local spool (``<spool>/<name>``) and, once
shipped, in the store (``wal/<name>``).
"""

from __future__ import annotations

import re
import struct
import threading
import time
from dataclasses import dataclass

from drsync.repo.crypto import (
    CODEC_LZMA,
    GENERATION_FLAG,
    GenerationMissing,
    MasterKey,
    SealError,
    compress,
    compress_lzma,
    decompress,
)
from drsync.repo.objects import HEADER_SIZE, FormatError, check_header, header

__all__ = [
    "TYPE_WAL",
    "WAL_PREFIX",
    "OlderKey",
    "WalHeader",
    "is_binlog_name",
    "is_wal_name",
    "open_wal",
    "parse_wal_header",
    "recompress_wal",
    "seal_wal",
    "wal_key",
]

TYPE_WAL = b"W"
WAL_PREFIX = "wal/"
# 24 hex digits (timeline, log, segment), optionally .partial; NNNNNNNN.history;
# a backup label NNNNNNNNNNNNNNNNNNNNNNNN.OOOOOOOO.backup.
_NAME = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
# A binary log: the server's log_basename, a dot, its sequence number (binlog.000042).
# No PostgreSQL name ends in a dot and digits only.
_BINLOG = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{6,10}$")
_FIXED = struct.Struct("<32sQQ")
MAX_WAL_FILE = 1 << 30  # PostgreSQL's largest segment size
_PARALLEL_HASH = 1 << 20
# The header is clear text until ``open_wal`` authenticates it; a push time no calendar
# can show is refused here, so nobody converting it to a date meets an overflow.
_LAST_PUSH_US = 253_402_300_799 * 10**6  # 9999-12-31T23:59:59Z


def is_wal_name(name: str) -> bool:
    """A name the archive takes: PostgreSQL's WAL, history and label names, or a binlog's."""
    return bool(_NAME.match(name) or _BINLOG.match(name))


def is_binlog_name(name: str) -> bool:
    return bool(_BINLOG.match(name))


def wal_key(name: str) -> str:
    return WAL_PREFIX + name


@dataclass(frozen=True)
class WalHeader:
    name: str
    content_id: bytes
    size: int
    pushed_us: int
    length: int  # bytes of header before the sealed payload

    @property
    def pushed(self) -> float:
        return self.pushed_us / 1e6


def seal_wal(key: MasterKey, name: str, data: bytes | bytearray, level: int = 1, *,
             content_id: bytes | None = None,
             compressed: tuple[int, bytes] | None = None) -> bytes:
    """The object for ``name`` holding ``data``.

    ``content_id`` (``key.chunk_id(data)``) and ``compressed`` (``compress(data,
    level)``) may be given when the caller already has them (wal-push compresses
    while it starts up, see ``drsync.wal.headstart``); they must be of ``data``.
    """
    if not is_wal_name(name):
        raise ValueError(f"{name!r} is not a WAL file name")
    raw_name = name.encode()
    ids: list[bytes] = [] if content_id is None else [content_id]
    if compressed is not None:
        if not ids:
            ids.append(key.chunk_id(data))
        codec, payload = compressed
    elif not ids and len(data) >= _PARALLEL_HASH:
        # wal-push is on PostgreSQL's critical path: hash while zstd compresses (both
        # release the GIL), a few milliseconds per 16 MiB segment.
        hasher = threading.Thread(target=lambda: ids.append(key.chunk_id(data)))
        hasher.start()
        codec, payload = compress(data, level)
        hasher.join()
        if not ids:
            raise RuntimeError("hashing the WAL file failed")
    else:
        if not ids:
            ids.append(key.chunk_id(data))
        codec, payload = compress(data, level)
    head = (header(TYPE_WAL) + bytes((len(raw_name),)) + raw_name
            + _FIXED.pack(ids[0], len(data), int(time.time() * 1e6)))
    return head + key.seal(payload, codec, head)


def parse_wal_header(data: bytes) -> WalHeader:
    """The clear header of a WAL object (authenticated only by ``open_wal``)."""
    check_header(data, TYPE_WAL)
    if len(data) < HEADER_SIZE + 1:
        raise FormatError("truncated WAL object")
    n = data[HEADER_SIZE]
    end = HEADER_SIZE + 1 + n
    if len(data) < end + _FIXED.size:
        raise FormatError("truncated WAL object")
    try:
        name = bytes(data[HEADER_SIZE + 1:end]).decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("WAL object name is not ASCII") from None
    content_id, size, pushed = _FIXED.unpack_from(data, end)
    if pushed > _LAST_PUSH_US:
        raise FormatError(f"push time {pushed} µs is past the year 9999")
    return WalHeader(name, content_id, size, pushed, end + _FIXED.size)


HEADER_MAX = HEADER_SIZE + 1 + 255 + _FIXED.size  # read this much to parse any header


class OlderKey(FormatError):
    """The object is sealed by a generation the key does not hold (codec.GenerationMissing)."""


def open_wal(key: MasterKey, data: bytes, expected_name: str | None = None) -> tuple[WalHeader,
                                                                                       bytes]:
    """Authenticate, decompress and verify a WAL object; return its header and content."""
    head = parse_wal_header(data)
    if expected_name is not None and head.name != expected_name:
        raise FormatError(f"holds {head.name}, not {expected_name}")
    if head.size > MAX_WAL_FILE:
        raise FormatError(f"declared size {head.size} is too large")
    try:
        codec, payload = key.unseal(bytes(data[head.length:]), bytes(data[:head.length]))
        plain = decompress(codec, payload, head.size)
    except GenerationMissing as err:
        raise OlderKey(str(err)) from None
    except SealError as err:
        raise FormatError(str(err)) from None
    if len(plain) != head.size:
        raise FormatError(f"content is {len(plain)} bytes, header says {head.size}")
    if key.chunk_id(plain) != head.content_id:
        raise FormatError("content does not match its id")
    return head, plain


def recompress_wal(key: MasterKey, data: bytes, expected_name: str,
                   preset: int) -> bytes | None:
    """The object ``data`` with its content recompressed by LZMA ``preset``, or None when it
    already is LZMA or LZMA would not make the object smaller (a low preset can lose to
    zstd).

    The clear header is kept byte for byte (name, content id, size, push time), so a
    second push or a ship compares the new object equal to the old; only the sealed
    payload changes. ``data`` is fully verified first, as a reader would.
    """
    head, plain = open_wal(key, data, expected_name)
    aad = bytes(data[:head.length])
    # The codec byte is in the clear and open_wal has just authenticated it.
    if data[head.length] & ~GENERATION_FLAG == CODEC_LZMA:
        return None
    new_codec, payload = compress_lzma(plain, preset)
    if new_codec != CODEC_LZMA:
        return None
    resealed = aad + key.seal(payload, new_codec, aad)
    return resealed if len(resealed) < len(data) else None
