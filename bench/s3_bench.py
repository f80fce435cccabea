"""S3 transfer benchmark against moto's threaded server on loopback.

Prints, for uploads and downloads: throughput with no limit, and with a limit
(default 50 Mbit/s) as a fraction of the cap; then the bytes a backup re-run
sends again after the link was cut at 50% of a backup and stayed down past
the retry deadline. Then a repository of ``--nights`` nightly backups (60) read
through a proxy adding ``--rtt-ms`` (30) a round trip, as the secondary site or a
tenant sees it over a WAN: ``drsync snapshots`` and a nightly ``drsync backup``
(which reads the whole index) as the CLI, the first time (an empty cache, as on
a new machine) and the next (the documents cached, drsync.store.cache), beside
restic's ``snapshots`` and ``backup`` of the same nights the same two ways; wall
time and the bytes each brought down the link. Traffic goes only to 127.0.0.1.

    .venv/bin/python bench/s3_bench.py [--limit 50Mbit] [--seconds 20] [--backup-mib 96]
                                       [--nights 60] [--rtt-ms 30] [--no-restic]
                                       [--only-documents]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
for _name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
    os.environ.pop(_name, None)

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from drsync.backup import BackupRequest, run_backup  # noqa: E402
from drsync.errors import StoreError  # noqa: E402
from drsync.repo import Repository, Secret  # noqa: E402
from drsync.store import S3Options, Store, StoreOptions, open_store  # noqa: E402
from drsync.store.throttle import format_rate, parse_rate  # noqa: E402
from drsync.testing import make_repo, make_repository  # noqa: E402
from tests.store.faultproxy import FaultProxy  # noqa: E402

MiB = 1 << 20
OBJECT = 8 * MiB


def _bucket(endpoint: str, name: str) -> str:
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def _store(endpoint: str, bucket: str, *, up: float = 0, down: float = 0,
           connections: int = 4, deadline: float = 60, spool: str | None = None) -> Store:
    return open_store(f"s3://{bucket}/bench", StoreOptions(
        s3=S3Options(endpoint_url=endpoint, spool_dir=spool), connections=connections,
        retry_deadline=deadline, limit_upload=up, limit_download=down))


def _transfer(store: Store, count: int, direction: str) -> tuple[int, float]:
    payload = os.urandom(OBJECT)
    keys = [f"data/{i:02x}/obj{i}" for i in range(count)]
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        if direction == "up":
            list(pool.map(lambda k: store.put(k, payload), keys))
        else:
            list(pool.map(store.get, keys))
    return count * OBJECT, time.monotonic() - start


def throughput(endpoint: str, limit: float, seconds: float) -> None:
    bucket = _bucket(endpoint, "bench-throughput")
    store = _store(endpoint, bucket)
    sent, took = _transfer(store, 16, "up")
    print(f"upload,   no limit : {sent / took / 1e6:7.1f} MB/s ({sent // MiB} MiB in {took:.1f} s,"
          " 4 parallel transfers)")
    got, took = _transfer(store, 16, "down")
    print(f"download, no limit : {got / took / 1e6:7.1f} MB/s")
    count = max(2, round(limit * seconds / OBJECT))
    limited = _store(endpoint, bucket, up=limit, down=limit)
    for direction, name in (("up", "upload"), ("down", "download")):
        moved, took = _transfer(limited, count, direction)
        rate = moved / took
        print(f"{name + ',':9} cap {format_rate(limit)}: {rate / 1e6:6.2f} MB/s = "
              f"{rate / limit:.3f} of the cap ({moved // MiB} MiB in {took:.1f} s, "
              "4 transfers sharing one bucket)")


def _stored(store: Store) -> int:
    """Bytes the repository holds, less the key wrappings and config written at init."""
    return sum(i.size for i in store.list("") if not i.key.startswith(("keys/", "config")))


def resume(endpoint: str, backup_mib: int, shift: int, tag: str) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    data = os.urandom(backup_mib * MiB)
    with tempfile.TemporaryDirectory() as spool:
        # A clean run for the baseline.
        clean = make_repo(_store(proxy.url, _bucket(endpoint, f"bench-clean-{tag}")))
        before = proxy.bytes_up
        run_backup(clean, BackupRequest(stdin_name="dump", stdin=io.BytesIO(data)))
        baseline = proxy.bytes_up - before
        overhead = baseline / _stored(clean.store)  # requests and headers per stored byte

        bucket = _bucket(endpoint, f"bench-resume-{tag}")
        repo = make_repo(_store(proxy.url, bucket, spool=spool))
        proxy.cut_after_up = baseline // 2 + shift
        proxy.down_after_cut = True
        before = proxy.bytes_up
        try:
            run_backup(repo, BackupRequest(stdin_name="dump", stdin=io.BytesIO(data)))
            raise SystemExit("the cut did not stop the backup")
        except StoreError as err:
            first = proxy.bytes_up - before
            print(f"cut at 50%: first run stopped after {first / MiB:.1f} MiB: {err}"[:200])
        proxy.heal()
        proxy.down_after_cut = False
        store = _store(proxy.url, bucket, spool=spool)
        store.delete("lock")  # the dead run's lock (same process here, so not stale by pid)
        again = Repository.open(store, Secret(passphrase="test passphrase"))
        before = proxy.bytes_up
        run_backup(again, BackupRequest(stdin_name="dump", stdin=io.BytesIO(data)))
        second = proxy.bytes_up - before
        # What the two runs sent beyond what the repository now holds (at the clean
        # run's request overhead) was sent twice.
        resent = first + second - _stored(store) * overhead
    where = "50%" if not shift else f"50% + {shift / MiB:g} MiB (mid-part)"
    print(f"resume after a cut at {where} of {baseline / MiB:.1f} MiB (16 MiB packs, 8 MiB parts, "
          f"4 connections): re-run sent {second / MiB:.1f} MiB; bytes sent twice: "
          f"{resent / MiB:.2f} MiB ({resent / baseline:.1%} of the backup)")
    proxy.close()


def _cli(argv: list[str], env: dict[str, str], proxy: FaultProxy,
         stdin: bytes | None = None, cwd: Path | None = None) -> tuple[float, int, str]:
    """Run one command through the proxy: wall seconds, bytes it brought down, stdout."""
    before = proxy.bytes_down
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed: {done.stderr.decode()[-500:]}")
    return seconds, proxy.bytes_down - before, done.stdout.decode()


def documents(endpoint: str, nights: int, rtt_ms: float, restic: bool) -> dict[str, object]:
    """``snapshots`` and a nightly backup over a slow link, first with an empty cache and
    then with the documents cached, for drsync and (when installed) restic."""
    host, port = endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    proxy.delay = rtt_ms / 2000  # before each block forwarded, each way
    work = Path(tempfile.mkdtemp(prefix="drsync-s3-docs-"))
    exe = str(ROOT / ".venv" / "bin" / "drsync")
    bucket = _bucket(endpoint, "bench-documents")
    results: dict[str, object] = {"nights": nights, "rtt_ms": rtt_ms}
    try:
        # The nights are written straight to moto (no delay): only the reads are measured.
        make_repository(f"s3://{bucket}/drsync", "bench", options=StoreOptions(
            s3=S3Options(endpoint_url=endpoint)))
        env = {**os.environ, "DRSYNC_REPO": f"s3://{bucket}/drsync", "DRSYNC_PASSWORD": "bench",
               "XDG_STATE_HOME": str(work / "writer"), "AWS_ENDPOINT_URL": endpoint}
        restic_exe = shutil.which("restic") if restic else None
        renv = {**os.environ, "RESTIC_REPOSITORY": f"s3:{endpoint}/{bucket}/restic",
                "RESTIC_PASSWORD": "bench", "RESTIC_CACHE_DIR": str(work / "restic-writer")}
        if restic_exe:
            subprocess.run([restic_exe, "init", "--repository-version", "2"], env=renv,
                           check=True, capture_output=True)
        source = work / "source"
        source.mkdir()
        for night in range(nights):
            dump = os.urandom(64 << 10) + f"night {night}\n".encode() * 4096
            subprocess.run([exe, "backup", "--stdin-name", "registry.dump", "--tag", "nightly"],
                           env=env, input=dump, check=True, capture_output=True)
            if restic_exe:
                (source / "registry.dump").write_bytes(dump)
                subprocess.run([restic_exe, "backup", "--quiet", "--host", "bench",
                                "registry.dump"], env=renv, cwd=source, check=True,
                               capture_output=True)
        print(f"documents: {nights} nightly backups written; reading them through a proxy "
              f"adding {rtt_ms:g} ms a round trip", file=sys.stderr)
        tonight = os.urandom(64 << 10) + b"tonight\n" * 4096
        (source / "registry.dump").write_bytes(tonight)
        env["AWS_ENDPOINT_URL"] = proxy.url
        env["XDG_STATE_HOME"] = str(work / "reader")
        renv["RESTIC_REPOSITORY"] = f"s3:{proxy.url}/{bucket}/restic"
        renv["RESTIC_CACHE_DIR"] = str(work / "restic-reader")
        rows = []
        for when in ("cold", "cached"):
            row: dict[str, object] = {"cache": when}
            t, down, out = _cli([exe, "snapshots", "--json"], env, proxy)
            assert len(json.loads(out)) >= nights
            row["drsync_snapshots"] = (t, down)
            row["drsync_backup"] = _cli([exe, "backup", "--stdin-name", f"{when}.dump"], env,
                                        proxy, tonight)[:2]
            if restic_exe:
                row["restic_snapshots"] = _cli([restic_exe, "snapshots", "--json"], renv,
                                               proxy)[:2]
                row["restic_backup"] = _cli([restic_exe, "backup", "--quiet", "--host", "bench",
                                             "registry.dump"], renv, proxy, cwd=source)[:2]
            rows.append(row)
        results["rows"] = rows
    finally:
        proxy.close()
        shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        for what in ("snapshots", "backup"):
            line = f"{what:9} {row['cache']:6}"
            for tool in ("drsync", "restic"):
                got = row.get(f"{tool}_{what}")
                if isinstance(got, tuple):
                    line += f"  {tool} {got[0]:6.2f} s {got[1] / 1e3:8.1f} kB down"
            print(line)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", default="50Mbit", help="cap for the limited runs")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="approximate length of each limited run")
    parser.add_argument("--backup-mib", type=int, default=96, help="size of the resume backup")
    parser.add_argument("--nights", type=int, default=60,
                        help="nightly backups in the repository read over the slow link")
    parser.add_argument("--rtt-ms", type=float, default=30.0,
                        help="round-trip time the proxy adds for the documents' reads")
    parser.add_argument("--no-restic", action="store_true", help="drsync alone")
    parser.add_argument("--only-documents", action="store_true",
                        help="skip the transfer and resume measurements")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        if not args.only_documents:
            throughput(endpoint, parse_rate(args.limit), args.seconds)
            resume(endpoint, args.backup_mib, 0, "half")
            resume(endpoint, args.backup_mib, 4 * MiB + 12345, "mid-part")
        documents(endpoint, args.nights, args.rtt_ms, not args.no_restic)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
