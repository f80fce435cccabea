"""Operator key escrow: a wrapping of the master key that only the fleet's X25519 private key
opens, so that operators can restore a tenant whose own keys were lost with its town hall.

The escrow key pair is two one-line text files (``drsync key gen-escrow``)::

    drsync-escrow-public-v1 <escrow key id> <base64 of the 32-byte X25519 public key>
    drsync-escrow-private-v1 <escrow key id> <base64 of the 32-byte X25519 private key>

The escrow key id is the first 16 bytes of SHA-256 of the public key, in hex, so
either file names the other and a wrapping names the pair that opens it.

Sealing (an ECIES built from ``cryptography``'s primitives only): a fresh
ephemeral X25519 key pair; its exchange with the escrow public key;
HKDF-SHA256 of that shared secret, salt = ephemeral public || escrow public,
info = the authenticated header; AES-256-GCM of the master key under the
32-byte result, associated data = the header. The header is canonical JSON
naming the repository, the wrapping's key id, the escrow key id and the
master-key generation, so a wrapping cannot be moved to another key id,
repository or escrow key without failing authentication.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from drsync.errors import ConfigError

__all__ = [
    "PRIVATE_MAGIC",
    "PUBLIC_MAGIC",
    "EscrowKeyPair",
    "EscrowPublicKey",
    "escrow_header",
    "open_escrow",
    "seal_escrow",
]

PUBLIC_MAGIC = "drsync-escrow-public-v1"
PRIVATE_MAGIC = "drsync-escrow-private-v1"
_FILE_MAX = 4096
_NONCE = 12


def escrow_key_id(public: bytes) -> str:
    return hashlib.sha256(public).digest()[:16].hex()


def _read_line(path: str | Path, magic: str) -> tuple[str, bytes]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_FILE_MAX + 1)
    except OSError as err:
        raise ConfigError(f"cannot read escrow key {path}: {err.strerror}") from None
    parts = data.split()
    if len(data) > _FILE_MAX or len(parts) != 3 or parts[0] != magic.encode():
        raise ConfigError(f"{path} is not a drsync escrow {magic.split('-')[2]} key")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except ValueError:
        raise ConfigError(f"{path}: escrow key is not base64") from None
    if len(raw) != 32:
        raise ConfigError(f"{path}: escrow key must be 32 bytes")
    return parts[1].decode("ascii", "replace"), raw


@dataclass(frozen=True)
class EscrowPublicKey:
    raw: bytes

    @property
    def key_id(self) -> str:
        return escrow_key_id(self.raw)

    def dumps(self) -> str:
        return f"{PUBLIC_MAGIC} {self.key_id} {base64.b64encode(self.raw).decode()}\n"

    @classmethod
    def load(cls, path: str | Path) -> EscrowPublicKey:
        key_id, raw = _read_line(path, PUBLIC_MAGIC)
        key = cls(raw)
        if key.key_id != key_id:
            raise ConfigError(f"{path}: escrow key id {key_id} does not match its public key")
        return key


@dataclass(frozen=True)
class EscrowKeyPair:
    """The operator's private half (and the public one it determines)."""

    private: bytes

    @classmethod
    def generate(cls) -> EscrowKeyPair:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        raw = X25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(raw)

    @property
    def public(self) -> EscrowPublicKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = X25519PrivateKey.from_private_bytes(self.private).public_key()
        return EscrowPublicKey(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def dumps(self) -> str:
        return (f"{PRIVATE_MAGIC} {self.public.key_id} "
                f"{base64.b64encode(self.private).decode()}\n")

    @classmethod
    def load(cls, path: str | Path) -> EscrowKeyPair:
        key_id, raw = _read_line(path, PRIVATE_MAGIC)
        pair = cls(raw)
        if pair.public.key_id != key_id:
            raise ConfigError(f"{path}: escrow key id {key_id} does not match its private key")
        return pair

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``escrow.key`` (0600, created exclusively) then ``escrow.pub``; never
        overwrite either. A missing ``out_dir`` is created, private (0700)."""
        out = Path(out_dir)
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create {out}: {err.strerror}") from None
        priv, pub = out / "escrow.key", out / "escrow.pub"
        created: list[Path] = []
        try:
            for path, text, mode in ((priv, self.dumps(), 0o600),
                                     (pub, self.public.dumps(), 0o644)):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 mode)
                except FileExistsError:
                    raise ConfigError(f"{path} already exists; refusing to overwrite") from None
                except OSError as err:
                    raise ConfigError(f"cannot create {path}: {err.strerror}") from None
                created.append(path)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
        return priv, pub


def escrow_header(repo_id: str, key_id: str, escrow_id: str, generation: int) -> bytes:
    """The authenticated header of an escrow wrapping (canonical JSON)."""
    return json.dumps({"v": 1, "kind": "escrow", "repository": repo_id, "key": key_id,
                       "escrow_key": escrow_id, "generation": generation},
                      sort_keys=True, separators=(",", ":")).encode()


def _kek(shared: bytes, ephemeral: bytes, escrow_public: bytes, head: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + escrow_public,
                info=b"drsync escrow v1 " + head).derive(shared)


def seal_escrow(secret: bytes, public: EscrowPublicKey, head: bytes) -> dict[str, Any]:
    """The wrapping fields sealing ``secret`` to ``public`` (base64 strings)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public.raw))
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_kek(shared, eph_pub, public.raw, head)).encrypt(nonce, secret, head)
    b64 = base64.b64encode
    return {"escrow_key": public.key_id, "escrow_public": b64(public.raw).decode(),
            "ephemeral": b64(eph_pub).decode(), "nonce": b64(nonce).decode(),
            "wrapped": b64(sealed).decode()}


def open_escrow(pair: EscrowKeyPair, ephemeral: bytes, nonce: bytes, sealed: bytes,
                head: bytes) -> bytes | None:
    """The sealed secret, or None when this private key does not open it."""
    try:
        shared = X25519PrivateKey.from_private_bytes(pair.private).exchange(
            X25519PublicKey.from_public_bytes(ephemeral))
        return AESGCM(_kek(shared, ephemeral, pair.public.raw, head)).decrypt(
            nonce, sealed, head)
    except (InvalidTag, ValueError):
        return None
