"""Sealing bytes: zstd (or LZMA) compression, AES-256-GCM, and the keyed chunk id.

A *sealed* payload is ``codec (1) | nonce (12) | ciphertext | tag (16)``; the
codec byte is authenticated as associated data together with whatever the
caller binds (a blob id, an object header), so a blob cannot be moved to
another id nor its codec flipped without the tag failing.

Master-key generations (``drsync key rotate``): a payload sealed by generation
g >= 1 sets the codec byte's high bit and names its generation::

    codec | 0x80 (1) | generation (4, little-endian) | nonce (12) | ciphertext | tag (16)

the first five bytes authenticated like the codec byte alone. A payload without
the bit is generation 0, so every object written before generations existed
reads unchanged, and a repository never rotated writes exactly those bytes.
Every generation shares one id key (chunk ids and the chunker seed must not
change, or dedup breaks); only the AES key rotates.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# The codecs live in their own module (wal-push compresses before this one is imported);
# they are re-exported here, where every caller has always found them.
from drsync.repo.codec import (
    CODEC_LZMA,
    CODEC_RAW,
    CODEC_ZSTD,
    GenerationMissing,
    SealError,
    compress,
    compress_lzma,
    decompress,
)

__all__ = [
    "CODEC_LZMA",
    "CODEC_RAW",
    "CODEC_ZSTD",
    "MASTER_KEY_SIZE",
    "NONCE_SIZE",
    "SEAL_OVERHEAD",
    "TAG_SIZE",
    "GenerationMissing",
    "MasterKey",
    "SealError",
    "compress",
    "compress_lzma",
    "decompress",
]

NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
MASTER_KEY_SIZE = 64  # 32 bytes AES-256 key, 32 bytes chunk-id key
GENERATION_FLAG = 0x80
_GEN_SIZE = 4


@dataclass(frozen=True)
class MasterKey:
    """A repository's secret: the AES key and the chunk-id key, never stored unwrapped.

    ``generation`` is the generation of this AES key, the one every seal uses;
    ``older`` holds the AES keys of older generations (from the repository's
    ``generations/<g>`` document) that unsealing needs for objects they sealed."""

    raw: bytes
    generation: int = 0
    older: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        if len(self.raw) != MASTER_KEY_SIZE:
            raise ValueError("master key must be 64 bytes")
        if not 0 <= self.generation < 1 << 31:
            raise ValueError("master key generation out of range")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_SIZE))

    def rotated(self) -> MasterKey:
        """The next generation: a new AES key, the same id key, this one kept as older."""
        return MasterKey(os.urandom(32) + self.raw[32:], self.generation + 1,
                         ((self.generation, self.raw[:32]), *self.older))

    def with_older(self, older: dict[int, bytes]) -> MasterKey:
        return MasterKey(self.raw, self.generation, tuple(sorted(older.items(), reverse=True)))

    @functools.cached_property
    def _aead(self) -> AESGCM:
        # Made once: its key schedule cost half a blob's decryption when made per blob.
        return AESGCM(self.raw[:32])

    def _aead_of(self, generation: int) -> AESGCM:
        if generation == self.generation:
            return self._aead
        for gen, key in self.older:
            if gen == generation:
                return AESGCM(key)
        raise GenerationMissing(f"sealed by master-key generation {generation}, which this key "
                        f"(generation {self.generation}) does not hold")

    def chunk_id(self, data: bytes | bytearray | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: equal chunks dedupe, outsiders learn nothing."""
        return blake3.blake3(data, key=self.raw[32:], max_threads=1).digest()

    def chunker_seed(self) -> int:
        """A per-repository gear-table seed, so cut points do not fingerprint content."""
        digest = blake3.blake3(b"drsync chunker seed v1", key=self.raw[32:]).digest()
        return int.from_bytes(digest[:4], "little")

    def seal(self, payload: bytes, codec: int, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        if self.generation:
            header = bytes((codec | GENERATION_FLAG,)) + self.generation.to_bytes(_GEN_SIZE,
                                                                                  "little")
        else:
            header = bytes((codec,))
        return header + nonce + self._aead.encrypt(nonce, payload, aad + header)

    def unseal(self, sealed: bytes | memoryview, aad: bytes) -> tuple[int, bytes]:
        if len(sealed) < SEAL_OVERHEAD:
            raise SealError(f"sealed payload too short ({len(sealed)} bytes)")
        codec, head = sealed[0], 1
        generation = 0
        if codec & GENERATION_FLAG:
            if len(sealed) < SEAL_OVERHEAD + _GEN_SIZE:
                raise SealError(f"sealed payload too short ({len(sealed)} bytes)")
            generation = int.from_bytes(sealed[1 : 1 + _GEN_SIZE], "little")
            codec, head = codec & ~GENERATION_FLAG, 1 + _GEN_SIZE
        aead = self._aead_of(generation)
        nonce = bytes(sealed[head : head + NONCE_SIZE])
        try:
            # A view is decrypted in place of a copy (a restore's blobs are views of a range).
            plain = aead.decrypt(nonce, sealed[head + NONCE_SIZE :], aad + sealed[:head])
        except InvalidTag:
            raise SealError("authentication failed (wrong key, or bytes changed)") from None
        return codec, plain

    @staticmethod
    def sealed_generation(sealed: bytes) -> int:
        """The generation that sealed a payload (0 for one without the generation flag)."""
        if sealed and sealed[0] & GENERATION_FLAG and len(sealed) >= 1 + _GEN_SIZE:
            return int.from_bytes(sealed[1 : 1 + _GEN_SIZE], "little")
        return 0

    def seal_chunk(self, data: bytes | memoryview, chunk_id: bytes, level: int) -> bytes:
        codec, payload = compress(data, level)
        return self.seal(payload, codec, chunk_id)

    def unseal_chunk(self, sealed: bytes | memoryview, chunk_id: bytes,
                     raw_length: int) -> bytes:
        """Decrypt, decompress and verify that the plaintext hashes to ``chunk_id``."""
        codec, payload = self.unseal(sealed, chunk_id)
        data = decompress(codec, payload, raw_length)
        if len(data) != raw_length:
            raise SealError(f"length {len(data)} differs from index ({raw_length})")
        if self.chunk_id(data) != chunk_id:
            raise SealError("plaintext does not match its id")
        return data
