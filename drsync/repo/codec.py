"""Compression codecs of a sealed payload (docs/FORMAT.md §2.2): raw, zstd, LZMA.

Kept apart from ``crypto`` (which re-exports every name here) so that
``wal-push`` can start compressing a segment while the AES and BLAKE3
bindings, the key file code and the settings are still being imported: this
module needs only ``zstandard`` (``lzma`` is imported on first use).
"""

from __future__ import annotations

import threading

import zstandard

__all__ = ["CODEC_LZMA", "CODEC_RAW", "CODEC_ZSTD", "SealError", "compress", "compress_lzma",
           "decompress"]

CODEC_RAW = 0
CODEC_ZSTD = 1
# Only WAL recompressed in the spool during the day (drsync.wal.recompress) uses it:
# slow to write, but 31% fewer bytes than zstd-3 on measured municipal WAL.
CODEC_LZMA = 2


class SealError(Exception):
    """A sealed payload failed authentication or decoding (caller names the object)."""


class GenerationMissing(SealError):
    """Sealed by a master-key generation the key at hand does not hold: not damage, but a
    key opened from a wrapping older than a rotation (a full open holds every generation)."""


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


def compress(data: bytes | bytearray | memoryview, level: int) -> tuple[int, bytes]:
    """Return (codec, payload): zstd when it shrinks the data, else the raw bytes."""
    if level > 0:
        packed = _compressor(level).compress(data)
        if len(packed) < len(data):
            return CODEC_ZSTD, packed
    return CODEC_RAW, bytes(data)


def compress_lzma(data: bytes, preset: int) -> tuple[int, bytes]:
    """Return (codec, payload): an .xz stream when it shrinks the data, else raw bytes."""
    import lzma

    packed = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=preset)
    if len(packed) < len(data):
        return CODEC_LZMA, packed
    return CODEC_RAW, bytes(data)


def decompress(codec: int, payload: bytes, max_size: int) -> bytes:
    if codec == CODEC_RAW:
        return payload
    if codec == CODEC_LZMA:
        import lzma

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
