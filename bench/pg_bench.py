"""The PostgreSQL benchmark: drsync beside PostgreSQL's own tools, in one run.

On a throwaway cluster initialised by pgbench (``--scale``; scale 100 is
about 1.5 GB) with a realistic text column added to pgbench_accounts:

- ``wal-push`` latency per 16 MiB segment (median, p95), through the
  postgres-runnable launcher exactly as archive_command runs it, and the WAL
  compression ratio, on real segments the workload produced;
- dump throughput: ``drsync backup --pg-dump`` beside ``pg_dump -Fc -Z0 | zstd -3``;
- base backup throughput: ``drsync backup --pg-base`` beside ``pg_basebackup -Ft``
  to a file;
- bytes added by a second base backup after a workload touching 1% of pages;
- restore throughput of the base backup (``restore --pgdata``, no start).

Run ``make bench-pg`` or ``python bench/pg_bench.py --scale 20``. Results go
to stdout and ``bench/out/pg_results.json``. Root runs clusters as postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drsync.testing_postgres import (
    PG_USER,
    Cluster,
    as_cluster_user,
    chown_to_cluster_user,
    find_pg_bindir,
    make_cluster_dir,
    postgres_runnable_drsync,
)

OUT = Path(__file__).resolve().parent / "out"
MB = 1e6


class Bench:
    def __init__(self, scale: int) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL server binaries not found (set DRSYNC_PG_BINDIR)")
        self.exe = postgres_runnable_drsync()
        self.base = make_cluster_dir("drbench-")
        self.wal_copy = self.base / "walcopy"
        self.wal_copy.mkdir()
        chown_to_cluster_user(self.base)
        self.cluster = Cluster(self.base, bindir)
        self.scale = scale
        self.env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(self.base),
                    "XDG_STATE_HOME": str(self.base / "state"),
                    "DRSYNC_REPO": str(self.base / "repo"),
                    "DRSYNC_KEY_FILE": str(self.base / "tenant.key"),
                    "DRSYNC_SPOOL": str(self.base / "spool")}

    def drsync(self, *args: str, env: dict[str, str] | None = None) -> Any:
        full = {**self.env, **(env or {})}
        cmd = as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()), self.exe, *args])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base)
        if done.returncode != 0:
            raise SystemExit(f"drsync {' '.join(args)}: {done.stderr}")
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def sh(self, script: str) -> float:
        started = time.monotonic()
        prelude = f"set -o pipefail; PATH={self.cluster.bindir}:$PATH; "
        subprocess.run(as_cluster_user(["bash", "-c", prelude + script]),
                       check=True, cwd=self.base, capture_output=True)
        return time.monotonic() - started

    def setup(self) -> None:
        self.drsync("init", "--new-key-file", self.env["DRSYNC_KEY_FILE"],
                    env={"DRSYNC_PASSWORD": "bench"})
        # The benchmark collects real segments (cp) to time wal-push on them afterwards.
        self.cluster.initdb({"archive_mode": "on", "max_wal_size": "4GB",
                             "archive_command": f"'cp %p {self.wal_copy}/%f'",
                             "fsync": "on"})
        self.cluster.start()
        self.pgbench("-i", "-s", str(self.scale), "-q")
        for sql in ("ALTER TABLE pgbench_accounts ADD COLUMN note text",
                    "UPDATE pgbench_accounts SET note = '宮崎県延岡市 ' || aid || "
                    "' 番地 住民票 resident tax household ' || md5(aid::text)",
                    "VACUUM FULL pgbench_accounts", "CHECKPOINT"):
            self.cluster.psql(sql)

    def pgbench(self, *args: str) -> None:
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, *args, "postgres")

    def wal_push(self) -> dict[str, Any]:
        segments = sorted(p for p in self.wal_copy.iterdir() if len(p.name) == 24)[-40:]
        times = []
        # Timed as this user, with the launcher postgres would run, into its own spool.
        spool = self.base / "spool-timed"
        env = {**os.environ, **self.env, "DRSYNC_SPOOL": str(spool)}
        for seg in segments:
            started = time.perf_counter()
            subprocess.run([self.exe, "wal-push", str(seg)], env=env, check=True)
            times.append(time.perf_counter() - started)
        stored = sum((spool / s.name).stat().st_size for s in segments)
        raw = sum(s.stat().st_size for s in segments)
        times.sort()
        return {"segments": len(times), "median_s": round(statistics.median(times), 4),
                "p95_s": round(times[int(len(times) * 0.95) - 1], 4),
                "compression_ratio": round(raw / stored, 2)}

    def run(self) -> dict[str, Any]:
        self.setup()
        dsn = self.cluster.dsn
        size = int(self.cluster.psql("SELECT pg_database_size('postgres')"))
        out: dict[str, Any] = {"scale": self.scale, "database_bytes": size}
        t = self.sh(f"pg_dump -Fc -Z0 -d '{dsn}' | zstd -3 -q -T1 > {self.base}/dump.zst")
        out["pg_dump_zstd_mb_s"] = round(size / MB / t, 1)
        r = self.drsync("backup", "--pg-dump", dsn, "--json")
        out["drsync_dump_mb_s"] = round(size / MB / r["duration_s"], 1)
        out["drsync_dump_bytes_read"] = r["bytes_read"]
        t = self.sh(f"pg_basebackup -d '{dsn}' -D - -Ft -X none -c fast > {self.base}/base.tar")
        tar = (self.base / "base.tar").stat().st_size
        out["pg_basebackup_mb_s"] = round(tar / MB / t, 1)
        (self.base / "base.tar").unlink()
        first = self.drsync("backup", "--pg-base", dsn, "--json")
        out["drsync_base_mb_s"] = round(first["bytes_read"] / MB / first["duration_s"], 1)
        out["drsync_base_first_added_pct"] = round(100 * first["bytes_added"]
                                                   / first["bytes_read"], 2)
        pages = int(self.cluster.psql(
            "SELECT pg_relation_size('pgbench_accounts') / 8192"))
        self.cluster.psql(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY("
            f"SELECT format('(%s,1)', p)::tid FROM generate_series(0, {pages - 1}, 100) p))")
        self.cluster.psql("CHECKPOINT")
        second = self.drsync("backup", "--pg-base", dsn, "--json")
        out["second_base_added_pct_of_cluster"] = round(
            100 * second["bytes_added"] / second["bytes_read"], 2)
        self.pgbench("-T", "20", "-c", "2")
        self.cluster.psql("SELECT pg_switch_wal()")
        time.sleep(2)
        out["wal_push"] = self.wal_push()
        target = self.base / "restored"
        target.mkdir()
        chown_to_cluster_user(target)
        r = self.drsync("restore", second["snapshot_id"], "--pgdata", str(target / "data"),
                        "--json")
        out["drsync_restore_pgdata_mb_s"] = round(r["bytes_written"] / MB / r["duration_s"], 1)
        return out

    def close(self) -> None:
        self.cluster.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (100 ~ 1.5 GB)")
    args = parser.parse_args()
    bench = Bench(args.scale)
    try:
        results = bench.run()
    finally:
        bench.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "pg_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
