"""The prune benchmark: forget + prune of a repository of many blobs, and restic's.

A repository of ``--files`` files of ``--blobs-per-file`` small blobs (256 B of
random plaintext each) is backed up for ``--nights`` nights; each night
rewrites ``--churn`` files. Then ``drsync forget --keep-daily 7`` and
``drsync prune`` run as child processes; their wall time, peak RSS
(``getrusage`` of the child, via ``wait4``) and what prune rewrote are
printed. The defaults make about 1 million blobs.

The repository is built quickly and honestly: data blobs are sealed with the
repository key and packed exactly as the writer packs them (``PackBuilder``,
an index file every 8 packs), but without the chunker (each blob is one
chunk of the file); the snapshot trees go through the real ``SnapshotWriter``.
So prune sees the repository a year of small-chunk backups would leave.

restic, where installed, backs up the same files (same bytes, written night by
night, each snapshot dated like drsync's) and runs ``forget --keep-daily 7``
and ``prune`` (its default ``--max-unused 5%``; drsync's default is 10%, so
the bench passes 5% to both); the ratios come from the same run. restic
chunks files of under 512 KiB as one blob each, so it sees far fewer blobs
than drsync on this content: the comparison is of the same job, not of the
same blob count.

Run ``make bench-prune`` (or ``python bench/prune_bench.py --files 600``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drsync.repo import Index, RepoConfig, Repository, Secret, Snapshot, SnapshotWriter
from drsync.repo.index import index_document, pack_key
from drsync.repo.objects import TYPE_INDEX
from drsync.repo.pack import BLOB_DATA, BlobEntry, PackBuilder
from drsync.store import open_store
from drsync.testing import make_repository

PASSWORD = "prune bench"
BLOB = 256
MiB = 1 << 20


def _drsync() -> str:
    exe = Path(sys.executable).parent / "drsync"
    return str(exe) if exe.exists() else (shutil.which("drsync") or "drsync")


# A small launcher between the benchmark and each measured program: a child's peak RSS
# (ru_maxrss) starts at its forking parent's RSS, and this parent holds a whole
# repository's worth of build state; the launcher holds about 10 MiB.
_LAUNCHER = ("import os, subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[2:])\n"
             "_pid, status, usage = os.wait4(p.pid, 0)\n"
             "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
             "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a program; its wall time, its own peak RSS (``wait4``, MiB) and its stdout."""
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as rss:
        done = subprocess.run([sys.executable, "-I", "-c", _LAUNCHER, rss.name, *args], env=env,
                              capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): "
                             f"{done.stderr.decode()[-2000:]}")
        peak_kib = int(rss.read() or 0)
    return {"seconds": round(time.monotonic() - started, 3),
            "peak_rss_mib": round(peak_kib / 1024, 1), "stdout": done.stdout.decode()}


class Content:
    """The files' blobs, night by night: file f is the concatenation of its blobs."""

    def __init__(self, files: int, per_file: int, churn: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.files, self.per_file, self.churn = files, per_file, churn
        self.blobs: list[list[bytes]] = [self._new() for _ in range(files)]

    def _new(self) -> list[bytes]:
        return [self.rng.randbytes(BLOB) for _ in range(self.per_file)]

    def next_night(self) -> list[int]:
        changed = self.rng.sample(range(self.files), self.churn)
        for f in changed:
            self.blobs[f] = self._new()
        return changed


def _day(night: int) -> str:
    at = datetime(2026, 1, 1, 3, 0, tzinfo=UTC) + timedelta(days=night)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def build_drsync(repo_dir: Path, content: Content, nights: int,
                 restic: Any | None) -> dict[str, Any]:
    make_repository(str(repo_dir), PASSWORD,
                    config=RepoConfig(chunk_avg=64 << 10, chunk_min=16 << 10,
                                      chunk_max=256 << 10, pack_size=4 * MiB))
    repo = Repository.open(open_store(str(repo_dir)), Secret(passphrase=PASSWORD))
    key = repo.key
    tree_index = Index()  # tree blobs only: nights share most tree chunks
    ids: list[list[str]] = [[] for _ in range(content.files)]
    unindexed: list[tuple[str, int, list[BlobEntry]]] = []
    blobs = 0
    started = time.monotonic()

    def store_blobs(files: list[int]) -> None:
        nonlocal blobs
        pack = PackBuilder(key)

        def flush() -> None:
            nonlocal pack
            if pack.entries:
                pack_id, data = pack.finish()
                repo.store.put(pack_key(pack_id), data)
                unindexed.append((pack_id, len(data), pack.entries))
                pack = PackBuilder(key)
                if len(unindexed) >= 8:
                    repo.save_document(TYPE_INDEX, "index", index_document(unindexed))
                    unindexed.clear()

        for f in files:
            ids[f] = []
            for plain in content.blobs[f]:
                chunk_id = key.chunk_id(plain)
                pack.add(BLOB_DATA, chunk_id, key.seal_chunk(plain, chunk_id, 0), len(plain))
                ids[f].append(chunk_id.hex())
                blobs += 1
                if len(pack) >= repo.config.pack_size:
                    flush()
        flush()
        if unindexed:
            repo.save_document(TYPE_INDEX, "index", index_document(unindexed))
            unindexed.clear()

    changed = list(range(content.files))
    for night in range(nights):
        if night:
            changed = content.next_night()
        store_blobs(changed)
        writer = SnapshotWriter(repo, tree_index, workers=2)
        for f in range(content.files):
            size = BLOB * content.per_file
            line = {"path": f"srv/file{f:06d}", "type": "file", "mode": 0o644,
                    "mtime_ns": 0, "size": size, "chunks": ids[f]}
            writer._tree.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        snap = writer.commit(host="bench", source_kind="files",
                             source_spec={"paths": ["/srv"]}, tags=[], summary={},
                             version="bench")
        repo.store.delete(f"snapshots/{snap.id}")
        dated = Snapshot(time=_day(night), start_time=_day(night), host="bench",
                         source_kind="files", source_spec={"paths": ["/srv"]}, tree=snap.tree,
                         tags=[], summary={}, drsync_version="bench")
        repo.save_snapshot(dated)
        if restic is not None:
            restic.night(night, changed, content)
    return {"blobs": blobs, "build_s": round(time.monotonic() - started, 1),
            "repo_bytes": _size(repo_dir)}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Restic:
    def __init__(self, workdir: Path) -> None:
        self.exe = shutil.which("restic") or ""
        self.repo = workdir / "restic-repo"
        self.src = workdir / "srv"
        self.env = {**os.environ, "RESTIC_REPOSITORY": str(self.repo),
                    "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(workdir / "rcache")}
        self.backup_s = 0.0
        subprocess.run([self.exe, "init"], env=self.env, check=True, capture_output=True)
        self.src.mkdir()

    def night(self, night: int, changed: list[int], content: Content) -> None:
        for f in changed:
            (self.src / f"file{f:06d}").write_bytes(b"".join(content.blobs[f]))
        started = time.monotonic()
        subprocess.run([self.exe, "backup", "--quiet", "--host", "bench", "--time",
                        _day(night)[:19].replace("T", " "), str(self.src)],
                       env=self.env, check=True, capture_output=True)
        self.backup_s += time.monotonic() - started

    def forget_prune(self, keep: int, max_unused: str) -> dict[str, Any]:
        listed = subprocess.run([self.exe, "list", "blobs"], env=self.env, check=True,
                                capture_output=True).stdout
        blobs = listed.count(b"\n")
        forget = run_child([self.exe, "forget", "--keep-daily", str(keep)], self.env)
        prune = run_child([self.exe, "prune", "--max-unused", max_unused], self.env)
        return {"blobs": blobs, "forget": _drop(forget), "prune": _drop(prune),
                "repo_bytes": _size(self.repo)}


def _drop(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "stdout"}


def run(workdir: Path, files: int, per_file: int, churn: int, nights: int, keep: int,
        max_unused: str, with_restic: bool = True) -> dict[str, Any]:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    content = Content(files, per_file, churn, seed=42)
    restic = Restic(workdir) if with_restic and shutil.which("restic") else None
    repo_dir = workdir / "drsync-repo"
    built = build_drsync(repo_dir, content, nights, restic)
    env = {**os.environ, "DRSYNC_REPO": str(repo_dir), "DRSYNC_PASSWORD": PASSWORD,
           "DRSYNC_CATALOG": str(workdir / "catalog.sqlite"),
           "XDG_STATE_HOME": str(workdir / "state")}
    forget = run_child([_drsync(), "forget", "--keep-daily", str(keep), "--json"], env)
    before = _size(repo_dir)
    prune = run_child([_drsync(), "prune", "--max-unused", max_unused, "--json"], env)
    report = json.loads(prune["stdout"])
    result: dict[str, Any] = {
        "files": files, "blobs_per_file": per_file, "churn": churn, "nights": nights,
        "keep": keep, "max_unused": max_unused, **built,
        "drsync": {"forget": _drop(forget), "prune": _drop(prune),
                   "repo_bytes_before_prune": before, "repo_bytes_after": _size(repo_dir),
                   "bytes_rewritten": report["bytes_rewritten"],
                   "packs_deleted": report["packs_deleted"],
                   "packs_repacked": report["packs_repacked"],
                   "blobs_live": report["blobs_live"],
                   "snapshots_kept": report["snapshots"]},
        "restic": None,
    }
    if restic is not None:
        theirs = restic.forget_prune(keep, max_unused)
        theirs["backup_s_total"] = round(restic.backup_s, 1)
        result["restic"] = theirs
        ours = result["drsync"]["prune"]
        result["ratio"] = {
            "prune_time_drsync_over_restic": round(ours["seconds"]
                                                   / max(theirs["prune"]["seconds"], 1e-3), 2),
            "prune_rss_drsync_over_restic": round(ours["peak_rss_mib"]
                                                  / max(theirs["prune"]["peak_rss_mib"], 1e-3),
                                                  2)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=6000)
    parser.add_argument("--blobs-per-file", type=int, default=100)
    parser.add_argument("--churn", type=int, default=140, help="files rewritten each night")
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--keep", type=int, default=7)
    parser.add_argument("--max-unused", default="5%")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/drsync-prune-bench"))
    parser.add_argument("--no-restic", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.workdir, args.files, args.blobs_per_file, args.churn, args.nights,
                 args.keep, args.max_unused, not args.no_restic)
    print(json.dumps(result, indent=2))
    ours = result["drsync"]
    print(f"\ndrsync: {result['blobs']} blobs, {args.nights} nights keeping {args.keep}: "
          f"prune {ours['prune']['seconds']} s, peak RSS {ours['prune']['peak_rss_mib']} MiB, "
          f"rewrote {ours['bytes_rewritten'] / MiB:.1f} MiB; forget "
          f"{ours['forget']['seconds']} s, {ours['forget']['peak_rss_mib']} MiB")
    if result["restic"]:
        theirs = result["restic"]["prune"]
        print(f"restic ({result['restic']['blobs']} blobs of the same content): prune "
              f"{theirs['seconds']} s, peak RSS {theirs['peak_rss_mib']} MiB; "
              f"ratio drsync/restic time {result['ratio']['prune_time_drsync_over_restic']}, "
              f"RSS {result['ratio']['prune_rss_drsync_over_restic']}")
    else:
        print("restic: not installed (apt-get install -y restic): no comparison")
    shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
