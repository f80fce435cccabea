"""The raw speed limits that drsync's backup pipeline is compared to, measured on real input.

Each stage of the pipeline runs alone over the same in-memory bytes (no I/O): the
FastCDC chunker, keyed BLAKE3, zstd level 3 and AES-256-GCM, then the whole pipeline
(chunk -> keyed hash -> compress -> encrypt) on one thread and on two. zstandard,
blake3 and cryptography release the GIL on large buffers, so two threads can approach
twice one; the chunker runs on the calling thread and bounds the pipeline.

The per-byte work of a base backup (``measure_blocks``) is the same stages over a data
directory's files as drsync cuts them: each file read 512 KiB at a time from the page
cache, keyed BLAKE3 of every 32 KiB block, zstd level 3 and AES-256-GCM of the 512 KiB
(a group, drsync.repo.group), on one thread: the CPU no tool that verifies, compresses
and encrypts those bytes can spend less of. ``make bench-pg`` compares both tools'
full backups to it.

The restore's limits (``measure_restore``) are the reverse over the same chunks
sealed in memory: AES-256-GCM open, zstd decompress and the keyed BLAKE3 check,
on one thread and on two, and writing the plaintext into a file on the target's
file system with fsync. A restore cannot beat the slower of the two: the
opening needs the CPU, the write needs the disk (and some CPU as well).

Throughput is in MB/s of *input* (plaintext) bytes (10**6 bytes per second).
Run ``python bench/raw_limits.py FILE [--limit 256M] [--restore-dir DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyfastcdc import FastCDC

__all__ = ["measure", "measure_blocks", "measure_restore", "read_prefix", "render",
           "render_restore"]

MIB = 1 << 20
CDC_AVG, CDC_MIN, CDC_MAX = 1 << 20, 256 << 10, 4 << 20
ZSTD_LEVEL = 3
BLOCK = 32 << 10  # a base backup's fixed chunk (drsync.sources.blocks.BLOCK_CHUNK)
GROUP = 512 << 10  # the bytes of a group (drsync.repo.group.GROUP_TARGET)


def read_prefix(path: Path, limit_bytes: int) -> bytes:
    """The first *limit_bytes* of *path*, read 1 MiB at a time."""
    parts = []
    remaining = limit_bytes
    with Path(path).open("rb") as source:
        while remaining > 0 and (block := source.read(min(MIB, remaining))):
            parts.append(block)
            remaining -= len(block)
    return b"".join(parts)


def _blocks(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[offset : offset + MIB] for offset in range(0, len(data), MIB)]


def _rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6 if seconds > 0 else float("inf")


def _timed(work: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Seconds of the best of *repeat* runs (speed varies run to run here), and its result."""
    best, result = float("inf"), 0
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


class _Sealer:
    """Hash, compress and encrypt one chunk; one compressor per thread (they are not shared)."""

    def __init__(self) -> None:
        self.hash_key = os.urandom(32)
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.local = threading.local()
        self.counter = iter(range(1 << 62))
        self.lock = threading.Lock()

    def nonce(self) -> bytes:
        with self.lock:
            return next(self.counter).to_bytes(12, "big")

    def seal(self, chunk: memoryview) -> int:
        compressor = getattr(self.local, "compressor", None)
        if compressor is None:
            compressor = self.local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        chunk_id = blake3.blake3(chunk, key=self.hash_key).digest()
        packed = compressor.compress(chunk)
        return len(self.aead.encrypt(self.nonce(), packed, chunk_id))


def _chunks(data: bytes) -> Iterable[memoryview]:
    for chunk in FastCDC(avg_size=CDC_AVG, min_size=CDC_MIN, max_size=CDC_MAX).cut_buf(data):
        yield chunk.data


def _pipeline(sealer: _Sealer, data: bytes, threads: int) -> int:
    if threads == 1:
        return sum(sealer.seal(chunk) for chunk in _chunks(data))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(sealer.seal, _chunks(data)))


def measure(path: Path, limit_bytes: int = 256 * MIB, repeat: int = 3) -> dict[str, float]:
    """Time each stage and the whole pipeline over the first *limit_bytes* of *path*.

    Every figure is the best of *repeat* runs.

    Keys: ``input_mb``, ``fastcdc_mb_s``, ``chunks``, ``blake3_keyed_mb_s``, ``zstd3_mb_s``,
    ``zstd3_ratio``, ``aes_gcm_mb_s``, ``pipeline_1t_mb_s``, ``pipeline_2t_mb_s``,
    ``pipeline_ratio`` (input bytes per sealed byte).
    """
    data = read_prefix(path, limit_bytes)
    size = len(data)
    if not size:
        raise ValueError(f"{path} is empty")
    blocks = _blocks(data)
    key = os.urandom(32)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    sealer = _Sealer()

    # Each stage returns a count and drops its outputs: keeping 256 MiB of fresh
    # allocations would time the page faults instead of the stage.
    def chunk() -> int:
        return sum(1 for _ in _chunks(data))

    def hash_blocks() -> int:
        return sum(len(blake3.blake3(b, key=key).digest()) for b in blocks)

    def compress() -> int:
        return sum(len(compressor.compress(b)) for b in blocks)

    def encrypt() -> int:
        return sum(len(aead.encrypt(i.to_bytes(12, "big"), b, None)) for i, b in enumerate(blocks))

    def pipeline_1t() -> int:
        return _pipeline(sealer, data, 1)

    def pipeline_2t() -> int:
        return _pipeline(sealer, data, 2)

    results: dict[str, float] = {"input_mb": size / 1e6}
    stages: list[tuple[str, Callable[[], int]]] = [
        ("fastcdc", chunk),
        ("blake3_keyed", hash_blocks),
        ("zstd3", compress),
        ("aes_gcm", encrypt),
        ("pipeline_1t", pipeline_1t),
        ("pipeline_2t", pipeline_2t),
    ]
    outputs: dict[str, int] = {}
    for name, stage in stages:
        seconds, outputs[name] = _timed(stage, repeat)
        results[f"{name}_mb_s"] = _rate(size, seconds)
    results["chunks"] = float(outputs["fastcdc"])
    results["zstd3_ratio"] = size / outputs["zstd3"]
    results["pipeline_ratio"] = size / outputs["pipeline_2t"]
    return results


def measure_blocks(paths: Sequence[Path], repeat: int = 3) -> dict[str, float]:
    """The per-byte work of a base backup of *paths* on one thread, without drsync.

    Every file is read ``GROUP`` bytes at a time (read once before, so from the page
    cache), each ``BLOCK`` of it hashed with keyed BLAKE3, and the ``GROUP`` compressed
    with zstd level 3 and encrypted with AES-256-GCM. The best of *repeat* runs.

    Keys: ``input_mb``, ``files``, ``cpu_s`` (this thread's CPU time), ``wall_s``,
    ``mb_s``, ``ratio`` (input bytes per sealed byte).
    """
    key = os.urandom(32)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    files = [p for p in paths if p.is_file()]
    for path in files:  # into the page cache, as the backups find them
        with path.open("rb", buffering=0) as fh:
            while fh.read(GROUP):
                pass

    def work() -> tuple[int, int]:
        read = sealed = 0
        nonce = 0
        for path in files:
            with path.open("rb", buffering=0) as fh:
                while data := fh.read(GROUP):
                    view = memoryview(data)
                    for at in range(0, len(data), BLOCK):
                        blake3.blake3(view[at:at + BLOCK], key=key, max_threads=1).digest()
                    nonce += 1
                    sealed += len(aead.encrypt(nonce.to_bytes(12, "big"),
                                               compressor.compress(data), None))
                    read += len(data)
        return read, sealed

    best: tuple[float, float, int, int] | None = None
    for _ in range(max(1, repeat)):
        cpu, wall = time.thread_time(), time.perf_counter()
        read, sealed = work()
        took = (time.thread_time() - cpu, time.perf_counter() - wall, read, sealed)
        if best is None or took[0] < best[0]:
            best = took
    assert best is not None
    cpu_s, wall_s, read, sealed = best
    return {"input_mb": read / 1e6, "files": float(len(files)), "cpu_s": cpu_s,
            "wall_s": wall_s, "mb_s": _rate(read, cpu_s),
            "ratio": read / sealed if sealed else 0.0}


def _open_all(sealed: Sequence[tuple[bytes, bytes, bytes]], aead: AESGCM, key: bytes,
              threads: int) -> int:
    """Open every sealed chunk (decrypt, decompress, check its keyed id); plaintext bytes."""
    local = threading.local()

    def one(item: tuple[bytes, bytes, bytes]) -> int:
        nonce, payload, chunk_id = item
        dctx = getattr(local, "dctx", None)
        if dctx is None:
            dctx = local.dctx = zstandard.ZstdDecompressor()
        plain = dctx.decompress(aead.decrypt(nonce, payload, chunk_id))
        if blake3.blake3(plain, key=key).digest() != chunk_id:
            raise AssertionError("a chunk did not verify")
        return len(plain)

    if threads == 1:
        return sum(map(one, sealed))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(one, sealed))


def _write_fsync(data: bytes, directory: Path) -> int:
    """*data* written 16 MiB at a time into a new file in *directory*, fsynced, removed."""
    path = directory / f".raw-limit-{os.getpid()}"
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset in range(0, len(data), 16 * MIB):
            os.write(fd, view[offset:offset + 16 * MIB])
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return len(data)


def measure_restore(path: Path, directory: Path, limit_bytes: int = 256 * MIB,
                    repeat: int = 3) -> dict[str, float]:
    """The restore's raw limits over the first *limit_bytes* of *path*, best of *repeat*.

    Keys: ``input_mb``, ``open_1t_mb_s``, ``open_2t_mb_s`` (decrypt, decompress, verify),
    ``write_fsync_mb_s`` (into a file in *directory*), ``bound_mb_s`` (the slower of
    opening on two threads and writing).
    """
    data = read_prefix(path, limit_bytes)
    if not data:
        raise ValueError(f"{path} is empty")
    key = os.urandom(32)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    sealed = []
    for n, chunk in enumerate(_chunks(data)):
        chunk_id = blake3.blake3(chunk, key=key).digest()
        nonce = n.to_bytes(12, "big")
        sealed.append((nonce, aead.encrypt(nonce, compressor.compress(chunk), chunk_id),
                       chunk_id))
    size = len(data)
    results: dict[str, float] = {"input_mb": size / 1e6}
    for threads in (1, 2):
        seconds, opened = _timed(functools.partial(_open_all, sealed, aead, key, threads),
                                 repeat)
        assert opened == size
        results[f"open_{threads}t_mb_s"] = _rate(size, seconds)
    seconds, _ = _timed(lambda: _write_fsync(data, directory), repeat)
    results["write_fsync_mb_s"] = _rate(size, seconds)
    results["bound_mb_s"] = min(results["open_2t_mb_s"], results["write_fsync_mb_s"])
    return results


def render_restore(results: dict[str, float]) -> str:
    rows = [
        ("open (AES-GCM, zstd, BLAKE3), 1 thread", f"{results['open_1t_mb_s']:8.0f} MB/s"),
        ("open, 2 threads", f"{results['open_2t_mb_s']:8.0f} MB/s"),
        ("write + fsync", f"{results['write_fsync_mb_s']:8.0f} MB/s"),
        ("restore bound (the slower)", f"{results['bound_mb_s']:8.0f} MB/s"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def render(results: dict[str, float]) -> str:
    rows = [
        ("input", f"{results['input_mb']:.0f} MB, {results['chunks']:.0f} chunks"),
        ("FastCDC cut_buf (avg 1 MiB)", f"{results['fastcdc_mb_s']:8.0f} MB/s"),
        ("BLAKE3 keyed", f"{results['blake3_keyed_mb_s']:8.0f} MB/s"),
        (
            "zstd level 3, 1 thread",
            f"{results['zstd3_mb_s']:8.0f} MB/s  (ratio {results['zstd3_ratio']:.2f}x)",
        ),
        ("AES-256-GCM", f"{results['aes_gcm_mb_s']:8.0f} MB/s"),
        ("pipeline, 1 thread", f"{results['pipeline_1t_mb_s']:8.0f} MB/s"),
        (
            "pipeline, 2 threads",
            f"{results['pipeline_2t_mb_s']:8.0f} MB/s"
            f"  ({results['pipeline_2t_mb_s'] / results['pipeline_1t_mb_s']:.2f}x of 1 thread)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Raw limits of drsync's backup pipeline.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--limit", type=_parse_size, default=256 * MIB, help="default 256M")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--restore-dir", type=Path,
                        help="also the restore's limits, writing into this directory")
    args = parser.parse_args(argv)
    print(render(measure(args.path, args.limit, args.repeat)))
    if args.restore_dir is not None:
        print(render_restore(measure_restore(args.path, args.restore_dir, args.limit,
                                             args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
