"""S3 transfer benchmark against moto's threaded server on loopback.

Prints, for uploads and downloads: throughput with no limit, and with a limit
(default 50 Mbit/s) as a fraction of the cap; then the bytes a backup re-run
sends again after the link was cut at 50% of a backup and stayed down past
the retry deadline. Traffic goes only to 127.0.0.1.

    .venv/bin/python bench/s3_bench.py [--limit 50Mbit] [--seconds 20] [--backup-mib 96]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
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
from drsync.testing import make_repo  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", default="50Mbit", help="cap for the limited runs")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="approximate length of each limited run")
    parser.add_argument("--backup-mib", type=int, default=96, help="size of the resume backup")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        throughput(endpoint, parse_rate(args.limit), args.seconds)
        resume(endpoint, args.backup_mib, 0, "half")
        resume(endpoint, args.backup_mib, 4 * MiB + 12345, "mid-part")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
