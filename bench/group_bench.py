"""Blob groups (drsync.repo.group): repository bytes, backup CPU and restore time of
block-structured backups, with chunks sealed alone (``group_target`` 0, as before
groups) and in groups of several sizes, in one run.

Sources:

- a PostgreSQL base backup: a throwaway cluster initialised by ``pgbench -i``
  (``--scale``), copied with ``pg_basebackup -Fp``; then 1% of pgbench_accounts'
  pages updated and a second copy taken. Each copy is backed up as a base backup
  is (every file cut every 32 KiB), into a fresh local repository per setting;
- the demo's municipal SQLite database (``drsync.sample``, ``--sqlite-mb``), then 1%
  of its rows changed (``sample.mutate``).

For each: bytes stored by the first backup (packs, indexes, snapshot), the ratio to
whole-file zstd-3 (what pgBackRest stores, compressing whole files), the backup's
CPU seconds (this process: chunking, hashing, zstd, AES on its threads; the copy is
read from disk, so pg_basebackup is not counted), bytes the second backup adds, and
the restore time of each (``restore_snapshot`` into a directory: fetched, verified,
written and fsynced). Every restore is checked byte for byte against its copy.

``python bench/group_bench.py --scale 10``; results to stdout and
``bench/out/group_results.json``. Root runs the cluster as postgres.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drsync.repo import (  # noqa: E402
    Entry,
    RepoConfig,
    Repository,
    Secret,
    SnapshotWriter,
)
from drsync.repo.writer import WriterStats  # noqa: E402
from drsync.restore import restore_snapshot  # noqa: E402
from drsync.store.local import LocalStore  # noqa: E402
from drsync.testing import make_repository  # noqa: E402

BLOCK = 32 * 1024
SETTINGS = [0, 128 * 1024, 256 * 1024, 512 * 1024]
MB = 1e6


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield str(path.relative_to(root)), path


def whole_file_zstd(root: Path) -> int:
    cctx = zstandard.ZstdCompressor(level=3)
    return sum(len(cctx.compress(path.read_bytes())) for _name, path in _files(root))


def stored_bytes(repo_dir: Path) -> int:
    return sum(p.stat().st_size for p in repo_dir.rglob("*") if p.is_file())


def backup(repo: Repository, root: Path, group_target: int,
           tag: str) -> tuple[float, str, WriterStats]:
    """Back ``root`` up, every file cut every 32 KiB; (CPU seconds, snapshot id, stats)."""
    cpu = time.process_time()
    writer = SnapshotWriter(repo, repo.load_index(), group_target=group_target)
    for name, path in _files(root):
        with open(path, "rb") as fh:
            writer.add_stream(Entry(name, "file", mode=0o600, size=path.stat().st_size), fh,
                              fixed_size=BLOCK)
    snap = writer.commit(host="bench", source_kind="files", source_spec={}, tags=[tag],
                         summary={}, version="bench")
    return time.process_time() - cpu, snap.id, writer.stats


def restore_check(repo: Repository, snapshot_id: str, root: Path,
                  target: Path) -> tuple[float, float]:
    """``restore_snapshot`` into ``target`` (written, fsynced), timed; then every file
    compared with the copy it was backed up from. (Seconds, CPU seconds.)"""
    started, cpu = time.monotonic(), time.process_time()
    restore_snapshot(repo, snapshot_id, target=target)
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    for name, path in _files(root):
        if _digest(target / name) != _digest(path):
            raise SystemExit(f"restore of {name} differs")
    shutil.rmtree(target)
    return seconds, cpu


def _digest(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest()


def measure(first: Path, second: Path, work: Path, repeats: int) -> list[dict[str, Any]]:
    raw = sum(p.stat().st_size for _n, p in _files(first))
    whole = whole_file_zstd(first)
    rows = []
    for target in SETTINGS:
        runs = []
        for n in range(repeats):
            repo_dir = work / f"repo-{target}-{n}"
            make_repository(str(repo_dir), "bench passphrase", config=RepoConfig(
                chunk_avg=1 << 20, chunk_min=256 << 10, chunk_max=4 << 20))
            repo = Repository.open(LocalStore(str(repo_dir)), Secret(passphrase="bench passphrase"))
            cpu, snap1, _stats = backup(repo, first, target, "first")
            bytes1 = stored_bytes(repo_dir)
            _cpu2, snap2, stats2 = backup(repo, second, target, "second")
            added = stored_bytes(repo_dir) - bytes1
            restore_s = restore_check(repo, snap1, first, work / "restored")
            restore2_s = restore_check(repo, snap2, second, work / "restored")
            runs.append((cpu, bytes1, added, *restore_s, *restore2_s))
            shutil.rmtree(repo_dir)
        cpu = min(r[0] for r in runs)
        bytes1, added = runs[0][1], runs[0][2]
        changed = f"{stats2.chunks_new - 1} of {stats2.chunks - 1}"  # less the tree blob
        restore_s = min(r[3] for r in runs)  # the least disturbed by other jobs
        rows.append({"group_target": target, "raw_bytes": raw, "whole_file_zstd3": whole,
                     "stored": bytes1, "ratio_vs_whole_file": bytes1 / whole,
                     "backup_cpu_s": cpu, "backup_cpu_s_all": [r[0] for r in runs],
                     "second_added": added, "second_chunks_new": changed,
                     "second_added_pct": 100 * added / bytes1,
                     "restore_s": restore_s, "restore_s_all": [r[3] for r in runs],
                     "restore_cpu_s": min(r[4] for r in runs),
                     "restore2_s": min(r[5] for r in runs),
                     "restore2_s_all": [r[5] for r in runs],
                     "restore2_cpu_s": min(r[6] for r in runs)})
    return rows


def pg_copies(scale: int, work: Path) -> tuple[Path, Path]:
    from drsync.testing_postgres import (
        Cluster,
        chown_to_cluster_user,
        find_pg_bindir,
        make_cluster_dir,
    )

    bindir = find_pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL 15 binaries not found")
    base = make_cluster_dir("drgrp-")
    cluster = Cluster(base, bindir)
    try:
        cluster.initdb()
        cluster.start()
        cluster.run(cluster.bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", str(base),
                    "-p", str(cluster.port), "-U", "postgres", "postgres", timeout=1800)
        cluster.psql("CHECKPOINT")
        copies = []
        for label in ("first", "second"):
            dest = base / label
            cluster.run(cluster.bin("pg_basebackup"), "-h", str(base), "-p", str(cluster.port),
                        "-U", "postgres", "-D", str(dest), "-Fp", "-X", "none", "-c", "fast",
                        timeout=1800)
            copies.append(dest)
            if label == "first":
                pages = int(cluster.psql("SELECT relpages FROM pg_class "
                                         "WHERE relname = 'pgbench_accounts'"))
                rows = int(cluster.psql("SELECT count(*) FROM pgbench_accounts"))
                per_page = max(1, rows // max(1, pages))
                rng = random.Random(14)
                aids = [rng.randrange(pages) * per_page + 1 for _ in range(pages // 100)]
                cluster.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid "
                             f"IN ({','.join(map(str, aids))})")
                cluster.psql("CHECKPOINT")
        out = []
        for copy in copies:
            dest = work / copy.name
            shutil.copytree(copy, dest)
            out.append(dest)
        return out[0], out[1]
    finally:
        cluster.stop()
        chown_to_cluster_user(base)
        shutil.rmtree(base, ignore_errors=True)


def sqlite_copies(size_mb: int, work: Path) -> tuple[Path, Path]:
    from drsync import sample

    first = work / "sqlite-first"
    second = work / "sqlite-second"
    first.mkdir()
    second.mkdir()
    db = work / "municipal.db"
    sample.generate(db, size_mb=size_mb)
    shutil.copy(db, first / "municipal.db")
    sample.mutate(db, fraction=0.01)
    shutil.copy(db, second / "municipal.db")
    return first, second


def render(name: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"## {name}: {rows[0]['raw_bytes'] / MB:.1f} MB, whole-file zstd-3 "
             f"{rows[0]['whole_file_zstd3'] / MB:.2f} MB", "",
             "| group target | stored MB | vs whole-file zstd-3 | backup CPU s | "
             "2nd backup adds | restore 1st s (CPU) | restore 2nd s (CPU) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        target = (f"{r['group_target'] >> 10} KiB" if r["group_target"]
                  else "none (chunks alone)")
        lines.append(f"| {target} | {r['stored'] / MB:.2f} | {r['ratio_vs_whole_file']:.3f}x | "
                     f"{r['backup_cpu_s']:.2f} | {r['second_added'] / MB:.2f} MB "
                     f"({r['second_added_pct']:.1f}%; chunks {r['second_chunks_new']}) | "
                     f"{r['restore_s']:.2f} "
                     f"({r['restore_cpu_s']:.2f}) | {r['restore2_s']:.2f} "
                     f"({r['restore2_cpu_s']:.2f}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--sqlite-mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="drsync-group-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_pg:
            first, second = pg_copies(args.scale, work)
            results[f"pg_base_scale_{args.scale}"] = measure(first, second, work, args.repeats)
        first, second = sqlite_copies(args.sqlite_mb, work)
        results[f"sqlite_{args.sqlite_mb}mb"] = measure(first, second, work, args.repeats)
    for name, rows in results.items():
        print(render(name, rows) + "\n")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "group_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
