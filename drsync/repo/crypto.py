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
import lzma
import os
import threading
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CODEC_LZMA",
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
# Only WAL recompressed in the spool during the day (drsync.wal.recompress) uses it:
# slow to write, but 31% fewer bytes than zstd-3 on measured municipal WAL.
CODEC_LZMA = 2
NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
MASTER_KEY_SIZE = 64  # 32 bytes AES-256 key, 32 bytes chunk-id key
GENERATION_FLAG = 0x80
_GEN_SIZE = 4


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


def compress_lzma(data: bytes, preset: int) -> tuple[int, bytes]:
    """Return (codec, payload): an .xz stream when it shrinks the data, else raw bytes."""
    packed = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=preset)
    if len(packed) < len(data):
        return CODEC_LZMA, packed
    return CODEC_RAW, bytes(data)


def decompress(codec: int, payload: bytes, max_size: int) -> bytes:
    if codec == CODEC_RAW:
        return payload
    if codec == CODEC_LZMA:
        # The tag already authenticated the payload; max_length bounds what a payload
        # sealed by a buggy writer could expand to, as max_output_size does for zstd.
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = dec.decompress(payload, max_length=max_size)
            if not dec.eof and not dec.needs_input and dec.decompress(b"", max_length=1):
                raise SealError(f"lzma: stream longer than {max_size} bytes")
        except lzma.LZMAError as err:
            raise SealError(f"lzma: {err}") from None
        if not dec.eof:
            raise SealError("lzma: truncated stream")
        return out
    if codec == CODEC_ZSTD:
        try:
            return bytes(_decompressor().decompress(payload, max_output_size=max_size))
        except zstandard.ZstdError as err:
            raise SealError(f"zstd: {err}") from None
    raise SealError(f"unknown codec {codec}")


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
        raise SealError(f"sealed by master-key generation {generation}, which this key "
                        f"(generation {self.generation}) does not hold")

    def chunk_id(self, data: bytes | memoryview) -> bytes:
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

    def seal_chunk(self, data: bytes, chunk_id: bytes, level: int) -> bytes:
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
