"""The WAL benchmark: drsync's archive_command and restore_command beside pgBackRest's.

On one throwaway cluster (pgbench ``--scale``, a text column added and
filled, then ``pgbench -T``), every segment the workload produced is pushed
by ``drsync wal-push`` and by ``pgbackrest archive-push`` (compress-type=zst
level 3, aes-256-cbc, process-max=2), alternately, each timed as
archive_command runs it (as the cluster's user, the postgres-runnable
launcher): median, p95 and bytes stored per segment, beside ``zstd -3`` of
the same segment. Then both tools restore a base backup taken before the
last ``--replay-segments`` segments, and the time from ``pg_ctl start`` to
promoted (``pg_is_in_recovery()`` false) is measured for drsync with
prefetch off and on, and for pgBackRest with archive-async off and on;
``--rounds`` alternating rounds. Before that, each restore_command alone
fetches the same segments one after the other into ``pg_wal/RECOVERYXLOG``
(no server), which isolates the part of replay the tools are responsible
for from PostgreSQL's own redo.

pgBackRest missing: only drsync is measured. Run
``python bench/wal_bench.py --scale 10``; results go to stdout and
``bench/out/wal_results.json``. Root runs clusters as postgres.
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
    free_port,
    make_cluster_dir,
    postgres_runnable_drsync,
)

OUT = Path(__file__).resolve().parent / "out"
# Timed as the cluster's user: runuser itself is left out of every measurement.
_TIMER = r"""
import json, os, subprocess, sys, time
runs = json.loads(sys.argv[1])
out = []
for cmd, env in runs:
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    out.append([time.perf_counter() - started, done.returncode, done.stderr[-500:]])
print(json.dumps(out))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q + 0.5) - 1)]


class WalBench:
    def __init__(self, scale: int, replay_segments: int) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL server binaries not found (set DRSYNC_PG_BINDIR)")
        self.bindir = bindir
        self.exe = postgres_runnable_drsync()
        self.base = make_cluster_dir("drwalbench-")
        self.walcopy = self.base / "walcopy"
        self.walcopy.mkdir()
        self.cluster = Cluster(self.base, bindir)
        self.scale = scale
        self.replay_segments = replay_segments
        self.pgbackrest = shutil.which("pgbackrest")
        self.pgbr_conf = self.base / "pgbackrest.conf"
        self.config = self.base / "drsync.toml"
        self.env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(self.base),
                    "XDG_STATE_HOME": str(self.base / "state"), "LANG": "C.UTF-8",
                    "DRSYNC_CONFIG": str(self.config)}

    # -- helpers ---------------------------------------------------------------------------
    def as_user(self, *cmd: str, check: bool = True, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        done = subprocess.run(as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()),
                                               *cmd]),
                              capture_output=True, text=True, cwd=self.base)
        if check and done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: {done.stderr[-2000:]}")
        return done

    def timed(self, runs: list[tuple[list[str], dict[str, str]]]) -> list[float]:
        done = self.as_user("/usr/bin/python3", "-c", _TIMER, json.dumps(runs))
        out = json.loads(done.stdout)
        for (cmd, _env), (_t, rc, err) in zip(runs, out, strict=True):
            if rc != 0:
                raise SystemExit(f"{' '.join(cmd)} exited {rc}: {err}")
        return [t for t, _rc, _err in out]

    def pgbr(self, *args: str) -> list[str]:
        return [str(self.pgbackrest), f"--config={self.pgbr_conf}", "--stanza=bench", *args]

    def pgbench(self, *args: str) -> None:
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, *args, "postgres")

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        from drsync.settings import resolve, store_options
        from drsync.testing import make_repository

        self.config.write_text(f'repo = "{self.base / "repo"}"\n'
                               f'key_file = "{self.base / "tenant.key"}"\n'
                               f'catalog = "{self.base / "catalog.sqlite"}"\n'
                               f'[wal]\nspool = "{self.base / "spool"}"\n')
        resolved = resolve(str(self.config), {}, self.env)
        assert resolved.repo is not None
        make_repository(resolved.repo, "pw", self.base / "tenant.key",
                        options=store_options(resolved))
        self.pgbr_conf.write_text(
            "[global]\n"
            f"repo1-path={self.base / 'pgbr'}\nrepo1-cipher-type=aes-256-cbc\n"
            "repo1-cipher-pass=bench-not-a-secret\ncompress-type=zst\ncompress-level=3\n"
            f"process-max=2\nlog-level-console=error\nlog-level-file=off\n"
            f"lock-path={self.base / 'pgbr-lock'}\nspool-path={self.base / 'pgbr-spool'}\n"
            "start-fast=y\n"
            f"[bench]\npg1-path={self.cluster.data}\npg1-socket-path={self.base}\n"
            f"pg1-port={self.cluster.port}\npg1-user={PG_USER}\n")
        chown_to_cluster_user(self.base)
        self.cluster.initdb({"archive_mode": "on", "max_wal_size": "4GB", "fsync": "on",
                             "archive_command": f"'cp %p {self.walcopy}/%f'",
                             "track_commit_timestamp": "on"})
        self.cluster.start()
        if self.pgbackrest:
            self.as_user(*self.pgbr("stanza-create"))

    def workload(self) -> dict[str, Any]:
        self.pgbench("-i", "-s", str(self.scale), "-q")
        for sql in ("ALTER TABLE pgbench_accounts ADD COLUMN note text",
                    "UPDATE pgbench_accounts SET note = '宮崎県延岡市 ' || aid || "
                    "' 番地 住民票 resident tax household ' || md5(aid::text)",
                    "VACUUM FULL pgbench_accounts", "CHECKPOINT"):
            self.cluster.psql(sql)
        # The base backups both tools restore; the WAL after them is what recovery replays.
        snap = json.loads(self.as_user(self.exe, "backup", "--pg-base", self.cluster.dsn,
                                       "--json").stdout)["snapshot_id"]
        if self.pgbackrest:
            self.as_user(*self.pgbr("backup", "--type=full", "--no-archive-check"))
        first = self.cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        while True:
            self.pgbench("-T", "5", "-c", "2")
            now = self.cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            if int(now[8:16], 16) * 256 + int(now[16:], 16) - (
                    int(first[8:16], 16) * 256 + int(first[16:], 16)) >= self.replay_segments:
                break
        self.cluster.psql("CREATE TABLE finished AS SELECT now() AS at")
        last = self.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        self.cluster.wait_archived(last)
        self.cluster.stop()
        return {"snapshot": snap, "replay_first": first, "replay_last": last}

    # -- archive_command -------------------------------------------------------------------
    def push(self) -> dict[str, Any]:
        files = sorted(self.walcopy.iterdir())
        segments = [p for p in files if len(p.name) == 24]
        runs: list[tuple[list[str], dict[str, str]]] = []
        for seg in segments:
            runs.append(([self.exe, "wal-push", "--config", str(self.config), str(seg)], {}))
            if self.pgbackrest:
                runs.append((self.pgbr("archive-push", str(seg)), {}))
        times = self.timed(runs)
        step = 2 if self.pgbackrest else 1
        drsync_t, pgbr_t = times[0::step], times[1::step] if self.pgbackrest else []
        # The other archived files (backup history), untimed.
        rest = [p for p in files if len(p.name) != 24]
        self.timed([([self.exe, "wal-push", "--config", str(self.config), str(p)], {})
                    for p in rest]
                   + ([(self.pgbr("archive-push", str(p)), {}) for p in rest]
                      if self.pgbackrest else []))
        raw = sum(p.stat().st_size for p in segments)
        spool = self.base / "spool"
        stored = sum((spool / p.name).stat().st_size for p in segments)
        zstd3 = 0
        for p in segments:
            zstd3 += len(subprocess.run(["zstd", "-3", "-q", "-c", str(p)], check=True,
                                        capture_output=True).stdout)
        out: dict[str, Any] = {
            "segments": len(segments),
            "drsync_median_ms": round(statistics.median(drsync_t) * 1e3, 1),
            "drsync_p95_ms": round(pct(drsync_t, 0.95) * 1e3, 1),
            "drsync_bytes_per_segment": stored // len(segments),
            "zstd3_bytes_per_segment": zstd3 // len(segments),
            "raw_bytes_per_segment": raw // len(segments),
        }
        if self.pgbackrest:
            pgbr_bytes = 0
            for seg in segments:
                found = list((self.base / "pgbr").glob(f"archive/bench/*/*/{seg.name}-*"))
                pgbr_bytes += found[0].stat().st_size
            out.update({
                "pgbackrest_median_ms": round(statistics.median(pgbr_t) * 1e3, 1),
                "pgbackrest_p95_ms": round(pct(pgbr_t, 0.95) * 1e3, 1),
                "pgbackrest_bytes_per_segment": pgbr_bytes // len(segments),
            })
            out["median_ratio"] = round(out["drsync_median_ms"] / out["pgbackrest_median_ms"], 2)
            out["bytes_ratio"] = round(stored / pgbr_bytes, 3)
        self.as_user(self.exe, "wal-ship")
        return out

    # -- restore_command -------------------------------------------------------------------
    def _start_to_promoted(self, pgdata: Path) -> float:
        port = free_port()
        with open(pgdata / "postgresql.auto.conf", "a") as fh:
            fh.write(f"port = {port}\nunix_socket_directories = '{pgdata.parent}'\n"
                     "archive_mode = off\n")
        log = pgdata.parent / "restored.log"
        started = time.monotonic()
        done = self.as_user(self.cluster.bin("pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w",
                            "-t", "600", "start", check=False)
        if done.returncode != 0:
            raise SystemExit(f"restored cluster in {pgdata} did not start:\n"
                             + log.read_text(errors="replace")[-3000:])
        while True:
            probe = self.as_user(self.cluster.bin("psql"), "-X", "-At", "-h",
                                 str(pgdata.parent), "-p", str(port), "-d", "postgres", "-c",
                                 "SELECT pg_is_in_recovery()", check=False)
            if probe.returncode == 0 and probe.stdout.strip() == "f":
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        count = self.as_user(self.cluster.bin("psql"), "-X", "-At", "-h", str(pgdata.parent),
                             "-p", str(port), "-d", "postgres", "-c",
                             "SELECT count(*) FROM finished").stdout.strip()
        if count != "1":
            raise SystemExit(f"restored cluster in {pgdata} did not replay to the end")
        self.as_user(self.cluster.bin("pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop")
        return elapsed

    def _fresh(self, name: str) -> Path:
        where = self.base / name
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir()
        chown_to_cluster_user(where)
        return where / "data"

    def replay_drsync(self, snapshot: str, prefetch: int) -> float:
        pgdata = self._fresh(f"r-drsync-{prefetch}")
        (self.base / f"prefetch-{prefetch}.toml").write_text(
            self.config.read_text() + f"[restore]\nwal_prefetch = {prefetch}\n")
        chown_to_cluster_user(self.base / f"prefetch-{prefetch}.toml")
        self.as_user(self.exe, "--config", str(self.base / f"prefetch-{prefetch}.toml"),
                     "restore", snapshot, "--pgdata", str(pgdata), "--json")
        _stop_prefetcher(pgdata)  # the restore's own check may have started one: no head start
        return self._start_to_promoted(pgdata)

    def replay_pgbackrest(self, asynchronous: bool) -> float:
        pgdata = self._fresh(f"r-pgbr-{int(asynchronous)}")
        shutil.rmtree(self.base / "pgbr-spool", ignore_errors=True)
        self.as_user(*self.pgbr("restore", f"--pg1-path={pgdata}", "--type=default"))
        # archive-get's queue (archive-get-queue-max, 128 MiB by default: 8 segments)
        # with archive-async=y, as drsync's wal_prefetch = 8.
        command = " ".join(self.pgbr(f"--archive-async={'y' if asynchronous else 'n'}",
                                     f"--pg1-path={pgdata}", "archive-get", "%f", '"%p"'))
        with open(pgdata / "postgresql.auto.conf", "a") as fh:
            fh.write(f"restore_command = '{command}'\n")
        return self._start_to_promoted(pgdata)

    def _restore_command(self, pgdata: Path) -> str:
        lines = [ln for ln in (pgdata / "postgresql.auto.conf").read_text().splitlines()
                 if ln.startswith("restore_command")]
        value = lines[-1].split("=", 1)[1].strip()
        return value[1:-1].replace("''", "'")

    def fetch_loop(self, snapshot: str, segments: list[str], rounds: int) -> dict[str, Any]:
        """restore_command alone, as recovery runs it (in the data directory, one segment
        after the other, into pg_wal/RECOVERYXLOG), with no server replaying in between:
        the part of replay each tool is responsible for."""
        dirs = {}
        for prefetch in (0, 8):
            pgdata = self._fresh(f"f-drsync-{prefetch}")
            conf = self.base / f"prefetch-{prefetch}.toml"
            conf.write_text(self.config.read_text() + f"[restore]\nwal_prefetch = {prefetch}\n")
            chown_to_cluster_user(conf)
            self.as_user(self.exe, "--config", str(conf), "restore", snapshot, "--pgdata",
                         str(pgdata), "--json")
            dirs[f"drsync_prefetch_{prefetch}"] = pgdata
        if self.pgbackrest:
            for asynchronous in (False, True):
                pgdata = self._fresh(f"f-pgbr-{int(asynchronous)}")
                self.as_user(*self.pgbr("restore", f"--pg1-path={pgdata}", "--type=default"))
                command = " ".join(self.pgbr(f"--archive-async={'y' if asynchronous else 'n'}",
                                             f"--pg1-path={pgdata}", "archive-get", "%f",
                                             '"%p"'))
                with open(pgdata / "postgresql.auto.conf", "a") as fh:
                    fh.write(f"restore_command = '{command}'\n")
                dirs["pgbackrest_async" if asynchronous else "pgbackrest_sync"] = pgdata
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, pgdata in dirs.items():
                _stop_prefetcher(pgdata)
                shutil.rmtree(self.base / "pgbr-spool", ignore_errors=True)
                command = self._restore_command(pgdata)
                script = " && ".join(
                    f"{command.replace('%f', seg).replace('%p', 'pg_wal/RECOVERYXLOG')}"
                    for seg in segments)
                runs = [(["sh", "-c", f"cd {pgdata} && {script}"], {})]
                results.setdefault(label, []).append(self.timed(runs)[0])
        for pgdata in dirs.values():
            _stop_prefetcher(pgdata)
        return {k: {"median_s": round(statistics.median(v), 3),
                    "per_segment_ms": round(statistics.median(v) / len(segments) * 1e3, 1),
                    "runs_s": [round(x, 3) for x in v]} for k, v in results.items()}

    def replay(self, snapshot: str, rounds: int) -> dict[str, Any]:
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, run in (("drsync_prefetch_0", lambda: self.replay_drsync(snapshot, 0)),
                               ("drsync_prefetch_8", lambda: self.replay_drsync(snapshot, 8)),
                               ("pgbackrest_sync", lambda: self.replay_pgbackrest(False)),
                               ("pgbackrest_async", lambda: self.replay_pgbackrest(True))):
                if label.startswith("pgbackrest") and not self.pgbackrest:
                    continue
                results.setdefault(label, []).append(run())
        out: dict[str, Any] = {k: {"median_s": round(statistics.median(v), 3),
                                   "runs_s": [round(x, 3) for x in v]}
                               for k, v in results.items()}
        if self.pgbackrest:
            best = min(out["pgbackrest_sync"]["median_s"], out["pgbackrest_async"]["median_s"])
            for label in ("drsync_prefetch_0", "drsync_prefetch_8"):
                out[label]["ratio_to_best_pgbackrest"] = round(out[label]["median_s"] / best, 2)
        return out

    def close(self) -> None:
        self.cluster.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def _stop_prefetcher(pgdata: Path) -> None:
    """End a prefetcher a restore's restore_command check started, and empty its queue."""
    from drsync.wal.prefetch import stop_prefetcher
    from drsync.wal.queue import QUEUE_DIR

    stop_prefetcher(pgdata / "pg_wal" / QUEUE_DIR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--replay-segments", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-replay", action="store_true")
    args = parser.parse_args()
    bench = WalBench(args.scale, args.replay_segments)
    try:
        bench.setup()
        made = bench.workload()
        out: dict[str, Any] = {"scale": args.scale, "pgbackrest": bool(bench.pgbackrest),
                               "load_before": os.getloadavg()[0]}
        out["push"] = bench.push()
        print(json.dumps(out, indent=2), flush=True)
        if not args.no_replay:
            out["replay_segments"] = (made["replay_first"], made["replay_last"])
            names = sorted(p.name for p in bench.walcopy.iterdir()
                           if len(p.name) == 24 and made["replay_first"] <= p.name
                           <= made["replay_last"])
            out["fetch_loop"] = bench.fetch_loop(made["snapshot"], names, args.rounds)
            print(json.dumps(out["fetch_loop"], indent=2), flush=True)
            out["replay"] = bench.replay(made["snapshot"], args.rounds)
        out["load_after"] = os.getloadavg()[0]
    finally:
        bench.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "wal_results.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
