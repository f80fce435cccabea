"""Memory and CPU of drsync's PostgreSQL operations beside pgBackRest's, in one run.

On a throwaway cluster initialised by pgbench (``--scale``) with the text
column bench/pg_bench.py adds, every operation runs as the cluster's user
and is measured as a whole process tree by ``bench.proctree.run_measured``
(the same instrument as ``make bench-pg``): peak RSS is the largest sum of
RSS over the command and all its descendants, sampled every 10 ms (the
``runuser`` wrapper itself excluded); CPU is user+sys of the tree from
``wait4`` (children are waited for, so pg_basebackup counts). The server's
backends (the walsender serving pg_basebackup) are not in drsync's tree; their
CPU meanwhile is reported beside it (``server_cpu_s``).

drsync: base backup, a second base backup after a workload touching 1% of
pages, ``restore --pgdata``, ``wal-push`` of one segment, ``wal-fetch`` of
it after ``wal-ship``. pgBackRest (``--pgbackrest``, if installed): full and
incremental backup (zstd-3, aes-256-cbc, process-max=2), restore,
archive-push, archive-get. Also the interpreter baselines
(``import drsync.cli``, ``drsync --help``).

Run ``make bench-pg-memory`` or ``python bench/pg_memory_bench.py --scale 15
--pgbackrest``; results go to stdout and ``bench/out/pg_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proctree import run_measured
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
MiB = 1 << 20


def measure_cpu(cmd: list[str], *, cwd: Path, server_pid: int | None = None) -> dict[str, Any]:
    """Run ``cmd``: peak RSS of its tree (MiB), wall, CPU of the tree and of the server's
    backends meanwhile (s), and its stdout; SystemExit when it fails."""
    m = run_measured(cmd, server_pid=server_pid, cwd=cwd)
    if m.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[-6:])} failed: {m.stderr[-2000:]}")
    return {"peak_rss_mib": round(m.peak_rss / MiB, 1), "wall_s": round(m.wall_s, 2),
            "server_cpu_s": round(m.server_cpu_s, 2), "stdout": m.stdout,
            "cpu_s": round(m.cpu_s, 2)}


class Bench:
    def __init__(self, scale: int) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL server binaries not found (set DRSYNC_PG_BINDIR)")
        self.exe = postgres_runnable_drsync()
        self.base = make_cluster_dir("drmem-")
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

    def as_user(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        full = {**self.env, **(env or {})}
        return as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()), *args])

    def drsync(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        return measure_cpu(self.as_user(self.exe, *args, env=env), cwd=self.base,
                           server_pid=self.postmaster_pid())

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None  # not started yet

    def setup(self) -> None:
        self.drsync("init", "--new-key-file", self.env["DRSYNC_KEY_FILE"],
                    env={"DRSYNC_PASSWORD": "bench"})
        self.cluster.initdb({"archive_mode": "on", "max_wal_size": "4GB",
                             "archive_command": f"'cp %p {self.wal_copy}/%f'"})
        self.cluster.start()
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, "-i", "-s", str(self.scale),
                         "-q", "postgres")
        for sql in ("ALTER TABLE pgbench_accounts ADD COLUMN note text",
                    "UPDATE pgbench_accounts SET note = '宮崎県延岡市 ' || aid || "
                    "' 番地 住民票 resident tax household ' || md5(aid::text)",
                    "VACUUM FULL pgbench_accounts", "CHECKPOINT"):
            self.cluster.psql(sql)

    def touch_one_percent(self) -> None:
        pages = int(self.cluster.psql("SELECT pg_relation_size('pgbench_accounts') / 8192"))
        self.cluster.psql(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY("
            f"SELECT format('(%s,1)', p)::tid FROM generate_series(0, {pages - 1}, 100) p))")
        self.cluster.psql("CHECKPOINT")

    def segment(self) -> Path:
        self.cluster.psql("SELECT pg_switch_wal()")
        time.sleep(1.5)
        return sorted(p for p in self.wal_copy.iterdir() if len(p.name) == 24)[-1]

    @staticmethod
    def row(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k != "stdout"}

    def baselines(self) -> dict[str, Any]:
        python = Path(self.exe).read_text().splitlines()[0].removeprefix("#!").split()[0]
        code = Path(self.exe).parents[1]
        script = f"import sys; sys.path.insert(0, {str(code)!r}); import drsync.cli"
        return {"import_drsync_cli": self.row(measure_cpu(self.as_user(
                    python, "-I", "-c", script), cwd=self.base)),
                "help": self.row(self.drsync("--help"))}

    def run_drsync(self) -> dict[str, Any]:
        dsn = self.cluster.dsn
        out: dict[str, Any] = {"database_bytes": int(self.cluster.psql(
            "SELECT pg_database_size('postgres')"))}
        out["baselines"] = self.baselines()
        first = self.drsync("backup", "--pg-base", dsn, "--json")
        doc = json.loads(first["stdout"])
        out["base_backup"] = {**self.row(first), "mb_s": round(
            doc["bytes_read"] / 1e6 / doc["duration_s"], 1)}
        self.touch_one_percent()
        second = self.drsync("backup", "--pg-base", dsn, "--json")
        snap = json.loads(second["stdout"])["snapshot_id"]
        out["second_backup"] = self.row(second)
        seg = self.segment()
        for older in sorted(p for p in self.wal_copy.iterdir() if len(p.name) == 24):
            if older != seg:
                self.drsync("wal-push", str(older))
        out["wal_push"] = self.row(self.drsync("wal-push", str(seg)))
        self.drsync("wal-ship")
        fetched = self.base / "fetched-seg"
        out["wal_fetch"] = self.row(self.drsync("wal-fetch", seg.name, str(fetched)))
        target = self.base / "restored"
        target.mkdir()
        chown_to_cluster_user(target)
        r = self.drsync("restore", snap, "--pgdata", str(target / "data"), "--json")
        out["restore_pgdata"] = {**self.row(r), "mb_s": round(
            json.loads(r["stdout"])["bytes_written"] / 1e6 / json.loads(r["stdout"])
            ["duration_s"], 1)}
        shutil.rmtree(target, ignore_errors=True)
        return out

    def run_pgbackrest(self) -> dict[str, Any]:
        conf = self.base / "pgbackrest.conf"
        conf.write_text(
            "[global]\n"
            f"repo1-path={self.base}/pgbr\nrepo1-cipher-type=aes-256-cbc\n"
            "repo1-cipher-pass=benchbenchbenchbench\ncompress-type=zst\ncompress-level=3\n"
            f"process-max=2\nstart-fast=y\nlog-level-console=warn\nlog-level-file=off\n"
            f"lock-path={self.base}/pgbrlock\nspool-path={self.base}/pgbrspool\n"
            f"[bench]\npg1-path={self.cluster.data}\npg1-socket-path={self.base}\n"
            f"pg1-port={self.cluster.port}\n")
        chown_to_cluster_user(self.base)

        def pgbr(*args: str) -> dict[str, Any]:
            return self.row(measure_cpu(self.as_user(
                "pgbackrest", f"--config={conf}", "--stanza=bench", *args), cwd=self.base,
                server_pid=self.postmaster_pid()))

        pgbr("stanza-create", "--no-online")
        out: dict[str, Any] = {}
        out["full_backup"] = pgbr("backup", "--type=full", "--no-archive-check")
        self.touch_one_percent()
        out["incr_backup"] = pgbr("backup", "--type=incr", "--no-archive-check")
        seg = self.segment()
        out["archive_push"] = pgbr("archive-push", str(seg))
        out["archive_get"] = pgbr("archive-get", seg.name, str(self.base / "pgbr-seg"))
        target = self.base / "pgbr-restored"
        target.mkdir()
        chown_to_cluster_user(target)
        out["restore"] = pgbr("restore", f"--pg1-path={target}")
        shutil.rmtree(target, ignore_errors=True)
        return out

    def close(self) -> None:
        self.cluster.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (100 ~ 1.5 GB)")
    parser.add_argument("--pgbackrest", action="store_true", help="measure pgBackRest too")
    args = parser.parse_args()
    bench = Bench(args.scale)
    results: dict[str, Any] = {"scale": args.scale}
    try:
        bench.setup()
        results["drsync"] = bench.run_drsync()
        if args.pgbackrest and shutil.which("pgbackrest"):
            results["pgbackrest"] = bench.run_pgbackrest()
    finally:
        bench.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "pg_memory.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
