"""The restore benchmark: drsync against restic on the same data, local and S3.

A generated pg_dump-like file (bench/datagen.py) is backed up twice, into a
directory store and into a bucket on moto's server on loopback (in a process
of its own, so that its Python does not share the benchmark's interpreter
with the restore): cut at fixed 32 KiB offsets, as a PostgreSQL base
backup's relation files are (the case that made one GET a blob), and in
content-defined chunks, as ``drsync backup`` cuts a dump. Each is restored
twice: in this process, timed from opening the repository with its key file
(listing, index, every blob verified, file written and fsynced) to the end,
through a store wrapper that counts GETs; and as ``drsync restore`` (the
whole process, interpreter start included, as restic's is timed). restic,
where installed, backs up and restores the same file to and from the same
two places in the same run. Every restore runs ``--rounds`` times (default
3), the tools taking turns, and each is reported as its median round with the
range: a single restic restore here took 2.7-4.2 s from a directory and
2.7-5.1 s from moto within one morning, so one round of each compares the
machine's moments more than the tools. restic never fsyncs what it restores
(its file is still in the page cache when it exits; drsync's restore ends with
the file on disk, in its time): the fsync of restic's file right after it
exits is timed too, and restic's restore plus that fsync reported beside it,
for information. Traffic goes only to 127.0.0.1.

    .venv/bin/python bench/restore_bench.py [--size 1G] [--no-s3] [--no-restic] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "benchbench",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
for _name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
    os.environ.pop(_name, None)

import boto3  # noqa: E402

from bench import datagen, peers, raw_limits  # noqa: E402
from drsync.repo import Entry, KeyFile, Repository, Secret, SnapshotWriter  # noqa: E402
from drsync.restore import restore_snapshot  # noqa: E402
from drsync.store import S3Options, Store, StoreOptions, open_store  # noqa: E402
from drsync.testing import CountingStore, make_repository  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MB = 1e6
BLOCK = 32 << 10
# How the file is cut: as a base backup's relation files, and as `drsync backup` cuts a dump.
LAYOUTS: dict[str, int | None] = {"blocks": BLOCK, "cdc": None}


def _backup(store: Store, key_path: Path, dump: Path, fixed_size: int | None) -> None:
    repo = make_repository(store, key_file_path=key_path)
    writer = SnapshotWriter(repo, repo.load_index())
    with dump.open("rb") as fin:
        writer.add_stream(Entry(peers.FILE_NAME, "file", size=dump.stat().st_size), fin,
                          fixed_size=fixed_size)
    writer.commit(host="bench", source_kind="files", source_spec={}, tags=[], summary={},
                  version="bench")


def _restore(store: Store, key_path: Path, target: Path, dump: Path) -> dict[str, Any]:
    counting = CountingStore(store, connections=store.connections)
    started = time.perf_counter()
    repo = Repository.open(counting, Secret(key_file=KeyFile.load(key_path)))
    result = restore_snapshot(repo, "latest", target=target)
    seconds = time.perf_counter() - started
    data = counting.data_gets()
    return {"seconds": seconds, "mb_s": result.bytes_written / MB / seconds,
            "gets": sum(counting.gets.values()), "pack_gets": sum(data.values()),
            "packs": len(data), "max_gets_per_pack": max(data.values(), default=0),
            "ok": filecmp.cmp(target / peers.FILE_NAME, dump, shallow=False)}


def _restore_cli(env: dict[str, str], target: Path, dump: Path) -> dict[str, Any]:
    """``drsync restore latest`` as an operator runs it: the whole process."""
    exe = str(Path(sys.executable).with_name("drsync"))
    started = time.perf_counter()
    done = subprocess.run([exe, "restore", "latest", "--target", str(target)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"drsync restore failed: {done.stderr.strip()[-500:]}")
    return {"seconds": seconds, "mb_s": dump.stat().st_size / MB / seconds,
            "ok": filecmp.cmp(target / peers.FILE_NAME, dump, shallow=False)}


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    """moto's S3 server in a process of its own on a free loopback port; its endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _restic_env(repo: str, work: Path) -> dict[str, str]:
    return {**os.environ, "RESTIC_REPOSITORY": repo, "RESTIC_PASSWORD": peers.PASSWORD,
            "RESTIC_CACHE_DIR": str(work / "restic-cache")}


def _restic_backup(repo: str, dump: Path, work: Path) -> str | None:
    """restic's repository of the same file; its executable, or None if not installed."""
    exe = shutil.which("restic")
    if exe is None:
        return None
    env = _restic_env(repo, work)
    source = work / "source"
    source.mkdir(parents=True)
    os.link(dump, source / peers.FILE_NAME)
    subprocess.run([exe, "init", "--repository-version", "2"], env=env, check=True,
                   capture_output=True)
    subprocess.run([exe, "backup", "--quiet", "--host", "bench", peers.FILE_NAME], env=env,
                   cwd=source, check=True, capture_output=True)
    return exe


def _restic_restore(exe: str, repo: str, dump: Path, work: Path) -> dict[str, Any]:
    env = _restic_env(repo, work)
    shutil.rmtree(work / "restic-cache", ignore_errors=True)  # a restore at the secondary site
    if not repo.startswith("s3:"):
        peers.warm(Path(repo))  # as drsync's repository is before its restores
    target = work / "restore"
    started = time.perf_counter()
    done = subprocess.run([exe, "restore", "latest", "--target", str(target)], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"restic restore failed: {done.stderr.strip()[-500:]}")
    restored = next(target.rglob(peers.FILE_NAME))
    # restic leaves what it restored in the page cache (it never fsyncs a restored file);
    # drsync's restore ends with its files on disk. The fsync right after restic exits is
    # what restic's restore would take to be as durable: timed apart, for information.
    started = time.perf_counter()
    fd = os.open(restored, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_s = time.perf_counter() - started
    ok = filecmp.cmp(restored, dump, shallow=False)
    shutil.rmtree(target)
    return {"seconds": seconds, "mb_s": dump.stat().st_size / MB / seconds, "ok": ok,
            "fsync_s": sync_s}


def _warm(root: object) -> None:
    """A directory store's objects into the page cache before a restore (peers.warm)."""
    if root is not None:
        peers.warm(Path(str(root)))


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the lower middle of an even count), every round's
    outcome kept: ``ok`` only if every round restored byte-identical, and each
    round's seconds in ``rounds``."""
    middle = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
    median = {**middle, "ok": all(r["ok"] for r in runs),
              "rounds": [round(r["seconds"], 3) for r in runs]}
    if all("fsync_s" in r for r in runs):  # restic's: also the median of restore + fsync
        durable = sorted(r["seconds"] + r["fsync_s"] for r in runs)
        median["durable_s"] = durable[(len(durable) - 1) // 2]
    return median


def _run(label: str, open_repo: Callable[[str], tuple[Store, str]], restic_repo: str | None,
         dump: Path, work: Path, env: dict[str, str], rounds: int) -> dict[str, Any]:
    """Both layouts backed up, and restic's repository of the same file; then
    ``rounds`` rounds in which each restore runs once, in turn: both layouts in
    process and as the CLI, then restic's. Each is reported as its median round,
    so that neither tool is measured only at a moment the machine was slow.
    ``open_repo(layout)`` gives a fresh repository's store and its URL."""
    work.mkdir(parents=True)
    repos: dict[str, tuple[Store, Path, str]] = {}
    for layout, fixed_size in LAYOUTS.items():
        store, url = open_repo(layout)
        key = work / f"drsync-{layout}.key"
        print(f"{label}: backing up ({layout}) ...", file=sys.stderr)
        _backup(store, key, dump, fixed_size)
        repos[layout] = store, key, url
    restic = None
    if restic_repo:
        print(f"{label}: restic backing up ...", file=sys.stderr)
        restic = _restic_backup(restic_repo, dump, work / "restic")
    runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for n in range(rounds):
        for layout, (store, key, url) in repos.items():
            root = getattr(store, "root", None)  # a directory store; moto keeps its own
            name = "drsync" if layout == "blocks" else f"drsync_{layout}"
            print(f"{label}: round {n + 1} of {rounds}: restoring ({layout}) ...",
                  file=sys.stderr)
            _warm(root)
            runs[name].append(_restore(store, key, work / "restore", dump))
            shutil.rmtree(work / "restore")
            _warm(root)
            runs[f"{name}_cli"].append(_restore_cli(
                {**env, "DRSYNC_REPO": url, "DRSYNC_KEY_FILE": str(key),
                 "DRSYNC_CATALOG": str(work / f"catalog-{layout}.sqlite")},
                work / "restore", dump))
            shutil.rmtree(work / "restore")
        if restic is not None and restic_repo:
            print(f"{label}: round {n + 1} of {rounds}: restic restoring ...", file=sys.stderr)
            runs["restic"].append(_restic_restore(restic, restic_repo, dump, work / "restic"))
    row: dict[str, Any] = {name: _median(done) for name, done in runs.items()}
    row.setdefault("restic", None)
    return row


def _spread(run: dict[str, Any]) -> str:
    times = run["rounds"]
    return "" if len(times) < 2 else f", rounds {peers.spread(times)} s"


def render(size: int, rows: dict[str, dict[str, Any]],
           raw: dict[str, float] | None = None) -> str:
    lines = [f"restore of {size / MB:,.0f} MB (one file; key opening, listing, index, verify, "
             "fsync included; blocks = cut every 32 KiB as a base backup, cdc = content-defined "
             "chunks as `drsync backup` cuts a dump)"]
    if raw is not None:
        bound_s = size / MB / raw["bound_mb_s"]
        lines.append(
            f"  raw limits (same data, {raw['input_mb']:.0f} MB): opening (AES-GCM, zstd, "
            f"BLAKE3) on 2 threads {raw['open_2t_mb_s']:.0f} MB/s, writing + fsync "
            f"{raw['write_fsync_mb_s']:.0f} MB/s: no restore of this file beats "
            f"{bound_s:.2f} s")
        for label, row in rows.items():
            peer = row["restic"]
            if peer is not None:
                lines.append(f"  {label:<6} x3 restic's median would need {peer['seconds'] / 3:.2f}"
                             f" s ({peer['seconds'] / 3 / bound_s:.2f}x the raw bound)")
    for label, row in rows.items():
        peer = row["restic"]
        for layout in LAYOUTS:
            name = "drsync" if layout == "blocks" else f"drsync_{layout}"
            me, cli = row[name], row[f"{name}_cli"]
            lines.append(
                f"  {label:<6} {layout:<6} drsync {me['mb_s']:7.1f} MB/s ({me['seconds']:.2f} s), "
                f"{me['gets']} GETs ({me['pack_gets']} for {me['packs']} packs, at most "
                f"{me['max_gets_per_pack']} a pack), byte-identical: {me['ok']}{_spread(me)}")
            versus = "" if peer is None else (
                f"; x{peer['seconds'] / me['seconds']:.2f} restic's speed in process, "
                f"x{peer['seconds'] / cli['seconds']:.2f} as the CLI")
            lines.append(f"  {label:<6} {layout:<6} drsync restore (the CLI, whole process) "
                         f"{cli['mb_s']:7.1f} MB/s ({cli['seconds']:.2f} s), byte-identical: "
                         f"{cli['ok']}{_spread(cli)}{versus}")
        if peer is None:
            lines.append(f"  {label:<6} restic not installed or not run")
        else:
            lines.append(f"  {label:<6} restic {peer['mb_s']:7.1f} MB/s ({peer['seconds']:.2f} s)"
                         f", byte-identical: {peer['ok']}{_spread(peer)}")
            if "durable_s" in peer:
                cli = row["drsync_cdc_cli"]
                lines.append(
                    f"  {label:<6} restic, then its file fsynced (restic never syncs what it "
                    f"restores; drsync's CLI does, in its time): {peer['durable_s']:.2f} s; "
                    f"drsync cdc CLI x{peer['durable_s'] / cli['seconds']:.2f} that")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="input size (default 1G)")
    parser.add_argument("--no-s3", action="store_true", help="local store only")
    parser.add_argument("--no-restic", action="store_true", help="skip restic")
    parser.add_argument("--rounds", type=int, default=3,
                        help="every restore this many times, in turns; medians compared "
                             "(default 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    peers.byte_compile_drsync()  # drsync's processes timed as installed
    OUT.mkdir(exist_ok=True)
    dump = OUT / f"day1-{args.size}.sql"
    if not dump.exists():
        print(f"generating {args.size} of dump text ...", file=sys.stderr)
        datagen.generate(dump, datagen.parse_size(args.size))
    work = OUT / "restore-work"
    shutil.rmtree(work, ignore_errors=True)
    rows: dict[str, dict[str, Any]] = {}
    restic = not args.no_restic
    local = work / "local"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")}

    def local_repo(layout: str) -> tuple[Store, str]:
        url = str(local / f"drsync-{layout}")
        return open_store(url), url

    rows["local"] = _run("local", local_repo, str(local / "restic-repo") if restic else None,
                         dump, local, env, args.rounds)
    if not args.no_s3:
        with _moto_server() as endpoint:
            s3 = boto3.client("s3", endpoint_url=endpoint)
            for bucket in ("drsync-bench", "restic-bench"):
                s3.create_bucket(Bucket=bucket)

            def s3_repo(layout: str) -> tuple[Store, str]:
                url = f"s3://drsync-bench/{layout}"
                return open_store(url, StoreOptions(s3=S3Options(endpoint_url=endpoint))), url

            rows["s3"] = _run("s3", s3_repo, f"s3:{endpoint}/restic-bench" if restic else None,
                              dump, work / "s3", {**env, "AWS_ENDPOINT_URL": endpoint},
                              args.rounds)
    print("raw limits ...", file=sys.stderr)
    raw = raw_limits.measure_restore(dump, work, 256 << 20)
    print(render(dump.stat().st_size, rows, raw))
    (OUT / "restore-results.json").write_text(json.dumps(
        {"input_bytes": dump.stat().st_size, "raw": raw, **rows}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
