"""Self-describing repository objects: the envelope, and the sealed JSON documents.

Every object starts with ``b"DRSY"``, a one-byte type and a one-byte format
version. Encrypted documents (config, index, snapshot, run record) follow that header
with a sealed, usually zstd-compressed JSON payload bound to the header. See
docs/FORMAT.md.
"""

from __future__ import annotations

import json
from typing import Any

from drsync.errors import IntegrityError
from drsync.repo.crypto import MasterKey, SealError, compress, decompress

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "TYPE_CONFIG",
    "TYPE_DRILL",
    "TYPE_GENERATIONS",
    "TYPE_INDEX",
    "TYPE_KEY",
    "TYPE_LOCK",
    "TYPE_PACK",
    "TYPE_PACK_HEADER",
    "TYPE_RUN",
    "TYPE_SNAPSHOT",
    "FormatError",
    "check_header",
    "decode_json",
    "header",
    "object_id",
    "open_document",
    "seal_document",
]

MAGIC = b"DRSY"
FORMAT_VERSION = 1
TYPE_CONFIG = b"C"
TYPE_DRILL = b"D"
TYPE_GENERATIONS = b"G"
TYPE_INDEX = b"I"
TYPE_KEY = b"K"
TYPE_LOCK = b"L"
TYPE_PACK = b"P"
TYPE_PACK_HEADER = b"H"
TYPE_RUN = b"R"
TYPE_SNAPSHOT = b"S"
HEADER_SIZE = 6
# Documents are small; refuse to inflate a hostile one without bound.
MAX_DOCUMENT = 1 << 30


class FormatError(IntegrityError):
    """Bytes that are not the object they should be.

    Callers catch it and name the object; one that is not caught is still a
    one-line error with the exit code of damage, never a traceback.
    """


def header(kind: bytes) -> bytes:
    return MAGIC + kind + bytes((FORMAT_VERSION,))


def check_header(data: bytes, kind: bytes) -> None:
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        raise FormatError("not a drsync object (bad magic)")
    if data[4:5] != kind:
        raise FormatError(f"object type {data[4:5]!r}, expected {kind!r}")
    if data[5] != FORMAT_VERSION:
        raise FormatError(f"format version {data[5]} is not supported (this drsync reads 1)")


def decode_json(data: bytes) -> Any:
    """JSON from untrusted bytes: FormatError for anything that is not (bad UTF-8, bad
    syntax, nesting deep enough to exhaust the parser's recursion)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise FormatError(f"undecodable JSON: {str(err)[:200]}") from None


def object_id(data: bytes) -> str:
    """Content address of a stored object: SHA-256 of its bytes, in hex."""
    import hashlib  # here: wal-push imports this module and never names a document

    return hashlib.sha256(data).hexdigest()


def seal_document(key: MasterKey, kind: bytes, doc: dict[str, Any], level: int = 3) -> bytes:
    head = header(kind)
    codec, payload = compress(json.dumps(doc, separators=(",", ":")).encode(), level)
    return head + key.seal(payload, codec, head)


def open_document(key: MasterKey, kind: bytes, data: bytes) -> dict[str, Any]:
    check_header(data, kind)
    head = bytes(data[:HEADER_SIZE])
    try:
        codec, payload = key.unseal(bytes(data[HEADER_SIZE:]), head)
        plain = decompress(codec, payload, MAX_DOCUMENT)
    except SealError as err:
        raise FormatError(str(err)) from None
    doc = decode_json(plain)
    if not isinstance(doc, dict):
        raise FormatError("document is not an object")
    return doc
