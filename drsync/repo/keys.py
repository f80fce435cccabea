"""Wrappings of the master key: by passphrase (scrypt), by key file, and by an operator's
escrow public key (X25519, see drsync.repo.escrow).

Each wrapping is a plaintext object ``keys/<key id>``: the envelope header
then JSON naming the kind, the KDF and its parameters, and the master key
sealed with AES-256-GCM under the key-encryption key, bound to the key id
(and, from generation 1 on, to the master-key generation it wraps). A
repository holds any number of wrappings; adding one never re-encrypts data.

A key file (on an agent host, mode 0600) is one text line::

    drsync-keyfile-v1 <repository id> <key id> <base64 of 32 random bytes>

It names its wrapping, so opening with it is one GET and one AES operation,
no KDF: an ``archive_command`` opens the repository in milliseconds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drsync.errors import ConfigError, WrongKey
from drsync.repo.crypto import MASTER_KEY_SIZE, NONCE_SIZE, MasterKey
from drsync.repo.objects import (
    HEADER_SIZE,
    TYPE_KEY,
    FormatError,
    check_header,
    decode_json,
    header,
)

if TYPE_CHECKING:  # the escrow module (X25519, HKDF) is imported only where used
    from drsync.repo.escrow import EscrowKeyPair, EscrowPublicKey

__all__ = [
    "DEFAULT_KDF",
    "KEYFILE_MAGIC",
    "KdfParams",
    "KeyFile",
    "KeyFileSlot",
    "Secret",
    "WrappingInfo",
    "describe_wrapping",
    "read_password_file",
    "unwrap",
    "wrap",
]

KINDS = ("passphrase", "keyfile", "escrow")

KEYFILE_MAGIC = "drsync-keyfile-v1"
_KEYFILE_MAX = 4096  # a key file is one short line; never read all of /dev/urandom
# Anyone who can write to the store can add a wrapping; one asking scrypt for terabytes
# or hours is refused, not attempted. 128 x n x r is scrypt's memory, times p its work:
# the bound is twice what DEFAULT_KDF costs.
_SCRYPT_MAX_COST = 1 << 28


def _is_id(text: str) -> bool:
    """Repository and key ids are 32 lower-case hex digits (``secrets.token_hex(16)``)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost: n (CPU/memory), r (block size), p (parallelism)."""

    n: int = 1 << 17  # 128 MiB, about 0.4 s here: slow for guessing, fine for people
    r: int = 8
    p: int = 1


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True)
class KeyFile:
    repo_id: str
    key_id: str
    secret: bytes

    def dumps(self) -> str:
        encoded = base64.b64encode(self.secret).decode()
        return f"{KEYFILE_MAGIC} {self.repo_id} {self.key_id} {encoded}\n"

    @classmethod
    def load(cls, path: str | Path) -> KeyFile:
        try:
            with open(path, "rb") as fh:
                data = fh.read(_KEYFILE_MAX + 1)
        except OSError as err:
            raise ConfigError(f"cannot read key file {path}: {err.strerror}") from None
        parts = data.split()
        if len(data) > _KEYFILE_MAX or len(parts) != 4 or parts[0] != KEYFILE_MAGIC.encode():
            raise ConfigError(f"{path} is not a drsync key file")
        repo_id, key_id = (p.decode("ascii", "replace") for p in parts[1:3])
        if not (_is_id(repo_id) and _is_id(key_id)):
            raise ConfigError(f"{path}: key file names no valid repository and key id")
        try:
            secret = base64.b64decode(parts[3], validate=True)
        except ValueError:
            raise ConfigError(f"{path}: key file secret is not base64") from None
        if len(secret) != 32:
            raise ConfigError(f"{path}: key file secret must be 32 bytes")
        return cls(repo_id, key_id, secret)

    def write(self, path: str | Path) -> None:
        """Create the file with mode 0600; never overwrite an existing one."""
        KeyFileSlot.claim(path).fill(self)


class KeyFileSlot:
    """A key file's path, created empty (O_EXCL, 0600) before the repository exists, so that
    ``init --new-key-file`` fails before it writes a byte to the store when the file cannot
    be created (it exists, its directory is missing or not writable)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def claim(cls, path: str | Path) -> KeyFileSlot:
        """An empty regular file already there (the slot of a command killed before it
        filled it) holds no key and is taken over; any other file is refused."""
        for _attempt in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if not (stat.S_ISREG(st.st_mode) and st.st_size == 0):
                    raise ConfigError(f"key file {path} already exists; refusing to "
                                      "overwrite") from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            except OSError as err:
                raise ConfigError(f"cannot create key file {path}: {err.strerror}") from None
            return cls(Path(path), fd)
        raise ConfigError(f"key file {path} already exists; refusing to overwrite")

    def fill(self, key_file: KeyFile) -> None:
        assert self._fd is not None, "a key file slot is filled once"
        fd, self._fd = self._fd, None
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(key_file.dumps())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise ConfigError(f"cannot write key file {self.path}: {err.strerror}") from None

    def abandon(self) -> None:
        """Remove the still empty file (the repository was not created)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Secret:
    """What a user presents: a passphrase, a key file or an escrow private key (exactly
    one)."""

    passphrase: str | None = None
    key_file: KeyFile | None = None
    escrow_key: EscrowKeyPair | None = None
    source: str = ""  # where it came from, for error messages


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scrypt(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    # Imported here: agents opening with a key file never pay for it.
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(passphrase.encode())


def new_key_id() -> str:
    import secrets  # here, like socket below: wal-push only opens wrappings

    return secrets.token_hex(16)


def wrap(
    master: MasterKey,
    repo_id: str,
    key_id: str,
    *,
    passphrase: str | None = None,
    key_file: KeyFile | None = None,
    escrow: EscrowPublicKey | None = None,
    kdf: KdfParams = DEFAULT_KDF,
) -> bytes:
    """Return the bytes of ``keys/<key_id>`` wrapping ``master`` (its generation)."""
    import socket

    doc: dict[str, Any] = {
        "repository": repo_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
    }
    if master.generation:
        doc["generation"] = master.generation
    if escrow is not None:
        from drsync.repo.escrow import escrow_header, seal_escrow

        doc["kind"] = "escrow"
        doc["kdf"] = None
        head = escrow_header(repo_id, key_id, escrow.key_id, master.generation)
        doc.update(seal_escrow(master.raw, escrow, head))
        return header(TYPE_KEY) + json.dumps(doc, indent=1).encode()
    if passphrase is not None:
        salt = os.urandom(16)
        kek = _scrypt(passphrase, salt, kdf)
        doc["kind"] = "passphrase"
        doc["kdf"] = {"name": "scrypt", "n": kdf.n, "r": kdf.r, "p": kdf.p, "salt": _b64(salt)}
    elif key_file is not None:
        kek = key_file.secret
        doc["kind"] = "keyfile"
        doc["kdf"] = None
    else:
        raise ValueError("wrap needs a passphrase or a key file")
    nonce = os.urandom(NONCE_SIZE)
    doc["nonce"] = _b64(nonce)
    doc["wrapped"] = _b64(AESGCM(kek).encrypt(nonce, master.raw,
                                             _binding(key_id, master.generation)))
    return header(TYPE_KEY) + json.dumps(doc, indent=1).encode()


def _binding(key_id: str, generation: int) -> bytes:
    """Associated data of a passphrase or key-file wrapping: the key id, and from generation
    1 on the generation, so a wrapping's plaintext ``generation`` cannot be changed."""
    return key_id.encode() + (f" generation {generation}".encode() if generation else b"")


def parse_wrapping(data: bytes) -> dict[str, Any]:
    """The wrapping's JSON fields, every one checked: FormatError for anything malformed,
    so whoever opens a wrapping only meets well-formed values."""
    check_header(data, TYPE_KEY)
    doc = decode_json(data[HEADER_SIZE:])
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        raise FormatError("undecodable key wrapping: unknown kind")
    if len(_b64_field(doc, "nonce")) != NONCE_SIZE:
        raise FormatError(f"key wrapping: nonce is not {NONCE_SIZE} bytes")
    _b64_field(doc, "wrapped")
    generation = doc.setdefault("generation", 0)
    if type(generation) is not int or not 0 <= generation < 1 << 31:
        raise FormatError("key wrapping: generation must be a non-negative integer")
    for name in ("created", "host", "repository"):
        if not isinstance(doc.get(name, ""), str):
            raise FormatError(f"key wrapping: {name} must be a string")
    if doc["kind"] == "escrow":
        if not _is_id(str(doc.get("escrow_key"))):
            raise FormatError("key wrapping: escrow_key must be 32 hex digits")
        for name in ("ephemeral", "escrow_public"):
            if len(_b64_field(doc, name)) != 32:
                raise FormatError(f"key wrapping: {name} is not 32 bytes")
    if doc["kind"] == "passphrase":
        kdf = doc.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise FormatError("key wrapping: kdf must be scrypt with n, r, p and salt")
        cost: list[Any] = [kdf.get(k) for k in ("n", "r", "p")]
        if not all(type(v) is int for v in cost):
            raise FormatError("key wrapping: scrypt n, r and p must be integers")
        n, r, p = cost
        if not (n > 1 and n & (n - 1) == 0 and r >= 1 and p >= 1
                and 128 * n * r * p <= _SCRYPT_MAX_COST):
            raise FormatError(f"key wrapping: scrypt cost n={n} r={r} p={p} is out of bounds")
        _b64_field(kdf, "salt")
    return doc


def _b64_field(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise FormatError(f"key wrapping: {name} is not base64") from None


def unwrap(data: bytes, key_id: str, secret: Secret) -> MasterKey | None:
    """The master key, or None when this secret does not open this wrapping.

    FormatError when the wrapping itself is malformed."""
    doc = parse_wrapping(data)
    generation = doc["generation"]
    if doc["kind"] == "escrow":
        return _unwrap_escrow(doc, key_id, secret)
    if doc["kind"] == "passphrase":
        if secret.passphrase is None:
            return None
        kdf = doc["kdf"]
        params = KdfParams(kdf["n"], kdf["r"], kdf["p"])
        kek = _scrypt(secret.passphrase, base64.b64decode(kdf["salt"]), params)
    else:
        if secret.key_file is None or secret.key_file.key_id != key_id:
            return None
        kek = secret.key_file.secret
    try:
        raw = AESGCM(kek).decrypt(base64.b64decode(doc["nonce"]),
                                  base64.b64decode(doc["wrapped"]), _binding(key_id, generation))
    except InvalidTag:
        return None
    if len(raw) != MASTER_KEY_SIZE:
        raise FormatError("wrapped master key has the wrong length")
    return MasterKey(raw, generation)


def _unwrap_escrow(doc: dict[str, Any], key_id: str, secret: Secret) -> MasterKey | None:
    """Only an escrow private key opens an escrow wrapping, and only the one it names."""
    from drsync.repo.escrow import escrow_header, open_escrow

    pair = secret.escrow_key
    if pair is None or pair.public.key_id != doc["escrow_key"]:
        return None
    head = escrow_header(doc.get("repository", ""), key_id, doc["escrow_key"],
                         doc["generation"])
    raw = open_escrow(pair, base64.b64decode(doc["ephemeral"]), base64.b64decode(doc["nonce"]),
                      base64.b64decode(doc["wrapped"]), head)
    if raw is None:
        return None
    if len(raw) != MASTER_KEY_SIZE:
        raise FormatError("wrapped master key has the wrong length")
    return MasterKey(raw, doc["generation"])


@dataclass(frozen=True)
class WrappingInfo:
    """What ``key list`` shows of a wrapping (its plaintext fields; nothing secret)."""

    key_id: str
    kind: str
    created: str
    host: str
    generation: int
    escrow_key: str | None = None
    escrow_public: bytes | None = None


def describe_wrapping(key_id: str, data: bytes) -> WrappingInfo:
    """FormatError when the wrapping is malformed."""
    doc = parse_wrapping(data)
    public = base64.b64decode(doc["escrow_public"]) if doc["kind"] == "escrow" else None
    return WrappingInfo(key_id, doc["kind"], doc.get("created", ""), doc.get("host", ""),
                        doc["generation"], doc.get("escrow_key"), public)


def no_key_error(url: str, secret: Secret) -> WrongKey:
    if secret.escrow_key is not None:
        return WrongKey(f"escrow key {secret.escrow_key.public.key_id}"
                        f"{f' ({secret.source})' if secret.source else ''} opens no wrapping "
                        f"of repository {url}")
    what = "key file" if secret.key_file is not None else "passphrase"
    where = f" ({secret.source})" if secret.source else ""
    return WrongKey(f"wrong {what}{where} for repository {url}")


def read_password_file(path: str) -> str:
    """The passphrase in the first line of ``path``; ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\r\n")
    except OSError as err:
        raise ConfigError(f"cannot read password file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"password file {path} is not UTF-8 text") from None
    if not line:
        raise ConfigError(f"password file {path} is empty")
    return line
