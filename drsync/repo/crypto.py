"""Sealing bytes: zstd compression, AES-256-GCM, and the keyed chunk id.

A *sealed* payload is ``codec (1) | nonce (12) | ciphertext | tag (16)``; the
codec byte is authenticated as associated data together with whatever the
caller binds (a blob id, an object header), so a blob cannot be moved to
another id nor its codec flipped without the tag failing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CODEC_RAW",
    "CODEC_ZSTD",
    "MASTER_KEY_SIZE",
    "NONCE_SIZE",
    "SEAL_OVERHEAD",
    "TAG_SIZE",
    "MasterKey",
    "SealError",
]

CODEC_RAW = 0
CODEC_ZSTD = 1
NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
MASTER_KEY_SIZE = 64  # 32 bytes AES-256 key, 32 bytes chunk-id key


class SealError(Exception):
    """A sealed payload failed authentication or decoding (caller names the object)."""


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstd contexts are not safe to share between threads; keep one per thread and level.
    cache: dict[int, zstandard.ZstdCompressor] = getattr(_local, "cctx", None) or {}
    if not cache:
        _local.cctx = cache
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def compress(data: bytes, level: int) -> tuple[int, bytes]:
    """Return (codec, payload): zstd when it shrinks the data, else the raw bytes."""
    if level > 0:
        packed = _compressor(level).compress(data)
        if len(packed) < len(data):
            return CODEC_ZSTD, packed
    return CODEC_RAW, bytes(data)


def decompress(codec: int, payload: bytes, max_size: int) -> bytes:
    if codec == CODEC_RAW:
        return payload
    if codec == CODEC_ZSTD:
        try:
            return bytes(_decompressor().decompress(payload, max_output_size=max_size))
        except zstandard.ZstdError as err:
            raise SealError(f"zstd: {err}") from None
    raise SealError(f"unknown codec {codec}")


@dataclass(frozen=True)
class MasterKey:
    """A repository's secret: the AES key and the chunk-id key, never stored unwrapped."""

    raw: bytes
    generation: int = 0

    def __post_init__(self) -> None:
        if len(self.raw) != MASTER_KEY_SIZE:
            raise ValueError("master key must be 64 bytes")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_SIZE))

    @property
    def _aead(self) -> AESGCM:
        return AESGCM(self.raw[:32])

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: equal chunks dedupe, outsiders learn nothing."""
        return blake3.blake3(data, key=self.raw[32:], max_threads=1).digest()

    def chunker_seed(self) -> int:
        """A per-repository gear-table seed, so cut points do not fingerprint content."""
        digest = blake3.blake3(b"drsync chunker seed v1", key=self.raw[32:]).digest()
        return int.from_bytes(digest[:4], "little")

    def seal(self, payload: bytes, codec: int, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        header = bytes((codec,))
        return header + nonce + self._aead.encrypt(nonce, payload, aad + header)

    def unseal(self, sealed: bytes, aad: bytes) -> tuple[int, bytes]:
        if len(sealed) < SEAL_OVERHEAD:
            raise SealError(f"sealed payload too short ({len(sealed)} bytes)")
        codec = sealed[0]
        nonce = bytes(sealed[1 : 1 + NONCE_SIZE])
        try:
            plain = self._aead.decrypt(nonce, bytes(sealed[1 + NONCE_SIZE :]), aad + sealed[:1])
        except InvalidTag:
            raise SealError("authentication failed (wrong key, or bytes changed)") from None
        return codec, plain

    def seal_chunk(self, data: bytes, chunk_id: bytes, level: int) -> bytes:
        codec, payload = compress(data, level)
        return self.seal(payload, codec, chunk_id)

    def unseal_chunk(self, sealed: bytes, chunk_id: bytes, raw_length: int) -> bytes:
        """Decrypt, decompress and verify that the plaintext hashes to ``chunk_id``."""
        codec, payload = self.unseal(sealed, chunk_id)
        data = decompress(codec, payload, raw_length)
        if len(data) != raw_length:
            raise SealError(f"length {len(data)} differs from index ({raw_length})")
        if self.chunk_id(data) != chunk_id:
            raise SealError("plaintext does not match its id")
        return data
