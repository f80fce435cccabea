"""The PostgreSQL benchmark: drsync beside pgBackRest on one cluster, in one run.

One throwaway PostgreSQL cluster holds pgbench's tables (``--scale``, 50 by
default) plus 300,000 Japanese resident rows (names and addresses in kanji,
birth dates, household ids; ``bench/datagen.py``), about 850 MB at scale 50.
Its archive_command is one wrapper script that hands every WAL segment to
``drsync wal-push`` and then to ``pgbackrest archive-push``, timing each on
its own, so both tools receive exactly the same WAL. pgBackRest is Debian's
2.45 (``bench/pgbackrest_peer.py``; apt-get installs it when missing; without
it, or with ``--no-pgbackrest``, only drsync is measured), configured as
the issue compares it: zstd level 3, AES-256-CBC, ``process-max=2``, fast
checkpoint.

Measured for both tools in the same run, each command's whole process tree
(``bench/proctree.py``: wall, user+system CPU including pg_basebackup under
drsync and pgBackRest's local processes, peak of the tree's summed RSS
sampled every 10 ms, and of its PSS; the CPU the server's backends spent
meanwhile, the walsender for drsync, is its own line, not in the tool's):

- a full base backup (``backup --pg-base`` vs ``backup --type=full``), and
  the repository bytes it added (drsync: data/ + index/ + snapshots/;
  pgBackRest: the backup set's directory);
- a second backup after an update touching ~1.5% of pgbench_accounts' pages
  (``--pg-base`` again vs ``--type=incr``; also pgBackRest's beta block
  incremental, in a second repository with bundles, as an extra line, once);
- both backups ``--rounds`` times (default 3), the tool that goes first
  alternating, each figure the median of its rounds (every round in
  ``backup_rounds``), each round from the same starting point: drsync's full
  backups into a new repository each but the last (which goes into the
  benchmark's own), its second backups into copies of the repository as the
  full backup left it but the last; pgBackRest's full backups are new sets in
  one repository, and its incremental ones are expired (``expire --set``) but
  the last, so each is taken against the same full one. (Timed once, the full
  backup's CPU ratio was 1.05x in one run of four and 0.82-0.98x in the others);
- WAL: the wrapper's times of ``wal-push`` vs ``archive-push`` (median, p95)
  over a pgbench run of at least 30 segments, and the bytes each stored for
  every segment of the run (drsync's after ``wal-ship``);
- restore of the second backup to a ready data directory (``restore
  --pgdata`` vs ``pgbackrest restore``), each writing its own restore_command:
  ``--rounds`` rounds, the tool that goes first alternating, each figure
  the median of its rounds. Whichever tool restored first after the WAL run
  and ``wal-ship`` paid for the machine's state (0.7-1.6 s more wall, 1-2.3
  CPU-seconds more, for pgBackRest as for drsync), and drsync always went first;
- start to promoted: each round's restored directories started on a free port
  (in that round's order), timed until the log says it accepts connections after
  replaying the pgbench run's archived WAL to its end, then stopped; the median
  of the rounds, and the segments each fetched. (Timed once, it moved 0.61-1.29x
  between runs of the same code.)

Also, as context: database size, pg_basebackup alone to a tar file, and the per-byte
work of a full backup done alone on one thread (``raw_limits.measure_blocks`` over the
cluster's relation files: read, keyed BLAKE3 per 32 KiB, zstd-3 and AES-GCM per 512
KiB), with each tool's full backup CPU as a multiple of it.
Run ``make bench-pg`` or ``python bench/pg_bench.py --scale 5`` (``--no-resident``: every
wal-push starts cold, ``[wal] resident = false``). The table
goes to stdout, everything to ``bench/out/pg_results.json``. Run as root, the
clusters and both tools run as postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import raw_limits
from bench.datagen import TABLES, table_rows
from bench.peers import byte_compile_drsync
from bench.pgbackrest_peer import PgBackRest, install_pgbackrest
from bench.proctree import Measured, run_measured
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
MIB = 1 << 20
SEGMENT = 16 * MIB
RESIDENTS = 300_000
WAL_SEGMENTS = 30  # at least this many from the pgbench run
PAGE_STEP = 70  # the second backup's update: one row every PAGE_STEP pages (~1.4%)


@dataclass(frozen=True)
class Row:
    """One line of the table: drsync's value, pgBackRest's, and the ratio's goal."""

    metric: str
    unit: str
    drsync: float
    peer: float | None
    goal: float | None = 1.0  # drsync/pgBackRest at most this; None: for information

    def ratio(self) -> float | None:
        return self.drsync / self.peer if self.peer else None

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio()
        return {"metric": self.metric, "unit": self.unit, "drsync": round(self.drsync, 4),
                "pgbackrest": None if self.peer is None else round(self.peer, 4),
                "ratio": None if ratio is None else round(ratio, 3),
                "goal": self.goal, "met": None if ratio is None or self.goal is None
                else ratio <= self.goal}


def tree_bytes(*paths: Path) -> int:
    """Bytes of the regular files under ``paths`` (symlinks not followed)."""
    total = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for name in files:
                st = os.lstat(os.path.join(root, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class Bench:
    def __init__(self, scale: int, peer_missing: str | None, resident: bool = True,
                 rounds: int = 3) -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL server binaries not found (set DRSYNC_PG_BINDIR)")
        self.exe = postgres_runnable_drsync()
        self.base = make_cluster_dir("drbench-")
        self.cluster = Cluster(self.base, bindir)
        self.scale = scale
        self.peer_missing = peer_missing
        self.restored: list[Cluster] = []
        self.restore_runs: dict[str, list[dict[str, float]]] = {}
        self.backup_runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        self.rounds = rounds
        self.times = self.base / "archive-times.txt"
        self.repo = self.base / "repo"
        self.env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(self.base),
                    "LANG": "C.UTF-8", "XDG_STATE_HOME": str(self.base / "state"),
                    "DRSYNC_REPO": str(self.repo),
                    "DRSYNC_KEY_FILE": str(self.base / "tenant.key"),
                    "DRSYNC_SPOOL": str(self.base / "spool")}
        if not resident:  # every wal-push a cold one, as before drsync.wal.resident
            cold = self.base / "wal-cold.toml"
            cold.write_text("[wal]\nresident = false\n")
            self.env["DRSYNC_CONFIG"] = str(cold)
        self.peer = None if peer_missing else PgBackRest(self.base, self.cluster, "pgbackrest")
        # Block incremental needs bundles; a repository of its own, so the main one stays
        # as the issue configures it. Its backups skip the archive check (WAL goes to one).
        self.block = None if peer_missing else PgBackRest(
            self.base, self.cluster, "pgbackrest-block",
            {"repo1-bundle": "y", "repo1-block": "y", "beta": "y", "archive-check": "n"})

    # --- plumbing ------------------------------------------------------------------------

    def drsync_cmd(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        full = {**self.env, **(env or {})}
        return as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()), self.exe, *args])

    def drsync(self, *args: str, env: dict[str, str] | None = None) -> Any:
        done = subprocess.run(self.drsync_cmd(*args, env=env), capture_output=True, text=True,
                              cwd=self.base)
        if done.returncode != 0:
            raise SystemExit(f"drsync {' '.join(args)}: {done.stderr}")
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def measured(self, cmd: list[str], what: str) -> Measured:
        m = run_measured(cmd, server_pid=self.postmaster_pid(), cwd=self.base)
        if m.returncode != 0:
            raise SystemExit(f"{what} failed ({m.returncode}): {m.stderr.strip()[-2000:]}")
        return m

    def postmaster_pid(self) -> int:
        return int((self.cluster.data / "postmaster.pid").read_text().split()[0])

    def psql(self, sql: str) -> str:
        return self.cluster.psql(sql)

    def pgbench(self, *args: str) -> None:
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, *args, "postgres",
                         timeout=3600)

    def drsync_store_bytes(self, repo: Path) -> int:
        return tree_bytes(*(repo / d for d in ("data", "index", "snapshots")))

    # --- setup ---------------------------------------------------------------------------

    def write_archive_wrapper(self) -> Path:
        """One archive_command for both tools: drsync first, then pgBackRest, each timed.

        drsync goes first so that both backups (pg_basebackup waits for the end segment
        archived; pgBackRest checks its repository for it) wait for both pushes.
        """
        # pgBackRest's backup refuses an archive_command without "pgbackrest" in it.
        script = self.base / "archive-drsync-pgbackrest.sh"
        exports = "".join(f"export {k}='{v}'\n" for k, v in self.env.items())
        peer = (f"pgbackrest --config={self.peer.config} --stanza=bench archive-push "
                '"$1" || exit 1\n') if self.peer else ""
        script.write_text(
            "#!/bin/bash\n# archive_command of bench/pg_bench.py: %p %f\n" + exports
            + f't0=$EPOCHREALTIME\n{self.exe} wal-push "$1" || exit 1\nt1=$EPOCHREALTIME\n'
            + peer + "t2=$EPOCHREALTIME\n"
            + f'echo "$2 $t0 $t1 $t2" >> {self.times}\n')
        script.chmod(0o755)
        return script

    def load_residents(self) -> None:
        table = next(t for t in TABLES if t.name == "residents")
        columns = ", ".join(f"{c} {'bigint PRIMARY KEY' if c == 'id' else 'text'}"
                            for c in table.columns)
        self.psql(f"CREATE TABLE residents ({columns})")
        rows = self.base / "residents.tsv"
        with rows.open("w") as fh:
            fh.writelines(table_rows("residents", RESIDENTS))
        chown_to_cluster_user(rows)
        self.psql(f"COPY residents FROM '{rows}'")
        rows.unlink()

    def setup(self) -> None:
        self.drsync("init", "--new-key-file", self.env["DRSYNC_KEY_FILE"],
                    env={"DRSYNC_PASSWORD": "bench"})
        wrapper = self.write_archive_wrapper()
        self.cluster.initdb({"archive_mode": "on", "max_wal_size": "4GB",
                             "archive_command": f"'{wrapper} %p %f'", "fsync": "on"})
        chown_to_cluster_user(self.base)
        self.cluster.start()
        for peer in (self.peer, self.block):
            if peer:
                peer.run("stanza-create")
        self.pgbench("-i", "-s", str(self.scale), "-q")
        self.load_residents()
        self.psql("VACUUM ANALYZE")
        self.psql("CHECKPOINT")

    # --- measurements --------------------------------------------------------------------

    def archived_up_to_now(self, timeout: float = 1800) -> None:
        """Until the archiver has caught up: a backup waits for its end segment archived,
        and must not be timed waiting for the backlog of an earlier load.

        Caught up is no ``.ready`` file left after a switch (a switch in a segment with
        nothing written yet returns that unfinished segment's name, so not that name).
        """
        self.psql("SELECT pg_switch_wal()")
        status = self.cluster.data / "pg_wal" / "archive_status"
        deadline = time.monotonic() + timeout
        while any(p.suffix == ".ready" for p in status.iterdir()):
            if time.monotonic() > deadline:
                raise SystemExit(f"the archiver is stuck; server log:\n"
                                 f"{self.cluster.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def drsync_backup(self, repo: Path | None = None) -> tuple[Measured, int, str]:
        """One ``backup --pg-base`` (into ``repo``, the benchmark's own by default): its
        cost, store bytes added, and the snapshot id."""
        repo = repo or self.repo
        self.archived_up_to_now()
        before = self.drsync_store_bytes(repo)
        env = {"DRSYNC_REPO": str(repo), "DRSYNC_KEY_FILE": str(self.key_file(repo))}
        m = self.measured(self.drsync_cmd("backup", "--pg-base", self.cluster.dsn, "--json",
                                          env=env), "drsync backup --pg-base")
        return m, self.drsync_store_bytes(repo) - before, json.loads(m.stdout)["snapshot_id"]

    def key_file(self, repo: Path) -> Path:
        """The key file of ``repo`` (a copy of the benchmark's repository shares its key)."""
        own = repo.with_name(repo.name + ".key")
        return own if own.exists() else Path(self.env["DRSYNC_KEY_FILE"])

    def new_repo(self, name: str) -> Path:
        """An empty drsync repository of its own, with its own key file."""
        repo = self.base / name
        self.drsync("init", "--new-key-file", str(repo.with_name(name + ".key")),
                    env={"DRSYNC_REPO": str(repo), "DRSYNC_PASSWORD": "bench"})
        return repo

    def copied_repo(self, name: str) -> Path:
        """A copy of the benchmark's repository as it is now (owners kept)."""
        copy = self.base / name
        subprocess.run(["cp", "-a", str(self.repo), str(copy)], check=True)
        return copy

    def backup_rounds(self, kind: str) -> tuple[tuple[Measured, int, str],
                                                  tuple[Measured, int, str] | None]:
        """Each tool's ``kind`` backup ("full" or "incr") ``self.rounds`` times, the first
        tool alternating, every round from the same starting point (see the module's text):
        the median of each tool's rounds, with the last round's snapshot or label, which
        the later steps use. Every round's figures go to ``self.backup_runs[kind]``."""
        last = self.rounds - 1
        # Made before any round is timed: the copies must hold the repository before them.
        spare = [self.new_repo(f"repo-full-{r}") if kind == "full"
                 else self.copied_repo(f"repo-incr-{r}") for r in range(last)]
        tools = ["drsync", "peer"] if self.peer else ["drsync"]
        ran: dict[str, list[tuple[Measured, int, str]]] = {tool: [] for tool in tools}
        for round_ in range(self.rounds):
            for tool in tools if round_ % 2 == 0 else tools[::-1]:
                if tool == "drsync":
                    ran[tool].append(self.drsync_backup(spare[round_] if round_ < last
                                                        else None))
                    continue
                assert self.peer is not None
                ran[tool].append(self.peer_backup(self.peer, kind))
                if kind == "incr" and round_ < last:
                    self.peer.run("expire", f"--set={ran[tool][-1][2]}")
        for repo in spare:
            shutil.rmtree(repo, ignore_errors=True)
        self.backup_runs[kind] = {
            tool: [{"wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
                    "bytes": added, "peak_rss_mib": round(m.peak_rss / MIB, 1)}
                   for m, added, _ in runs] for tool, runs in ran.items()}

        def median(runs: list[tuple[Measured, int, str]]) -> tuple[Measured, int, str]:
            m = _median_measured([(m, None) for m, _added, _name in runs])
            return m, int(statistics.median(added for _m, added, _ in runs)), runs[-1][2]

        return median(ran["drsync"]), median(ran["peer"]) if self.peer else None

    def peer_backup(self, peer: PgBackRest, kind: str) -> tuple[Measured, int, str]:
        """One ``pgbackrest backup --type=kind``: its cost, the set's bytes, and its label."""
        self.archived_up_to_now()
        before = peer.backup_sets()
        m = self.measured(peer.command("backup", f"--type={kind}"),
                          f"pgbackrest backup --type={kind} ({peer.name})")
        (label,) = peer.backup_sets() - before
        return m, tree_bytes(peer.set_dir(label)), label

    def backup_rows(self, title: str, d: tuple[Measured, int, str],
                    p: tuple[Measured, int, str] | None) -> list[Row]:
        dm, dbytes, _ = d
        pm, pbytes = (p[0], p[1]) if p else (None, None)
        return [
            Row(f"{title}: wall", "s", dm.wall_s, pm.wall_s if pm else None),
            Row(f"{title}: repository bytes", "MB", dbytes / 1e6,
                pbytes / 1e6 if pbytes is not None else None),
            Row(f"{title}: CPU of the tool's tree", "s", dm.cpu_s, pm.cpu_s if pm else None),
            Row(f"{title}: server backends' CPU", "s", dm.server_cpu_s,
                pm.server_cpu_s if pm else None, None),
            Row(f"{title}: peak RSS of the tool's tree", "MiB", dm.peak_rss / MIB,
                pm.peak_rss / MIB if pm else None, 2.0),
            Row(f"{title}: peak PSS of the tool's tree", "MiB", dm.peak_pss / MIB,
                pm.peak_pss / MIB if pm else None, None),
        ]

    def block_rows(self, title: str, b: tuple[Measured, int, str], drsync_value: Row,
                   drsync_bytes: Row) -> list[Row]:
        """pgBackRest's block incremental beside drsync's same backup (for information)."""
        return [Row(f"{title} vs pgBackRest bundle+block: wall", "s", drsync_value.drsync,
                    b[0].wall_s, None),
                Row(f"{title} vs pgBackRest bundle+block: repo bytes", "MB",
                    drsync_bytes.drsync, b[1] / 1e6, None)]

    def touch_pages(self) -> float:
        """Update one row every PAGE_STEP pages of pgbench_accounts; the share of its pages."""
        pages = int(self.psql("SELECT pg_relation_size('pgbench_accounts') / 8192"))
        self.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ctid = ANY (ARRAY("
                  f"SELECT format('(%s,1)', p)::tid FROM generate_series(0, {pages - 1}, "
                  f"{PAGE_STEP}) p))")
        self.psql("CHECKPOINT")
        # The new row versions land together on a few pages at the end (fillfactor 100).
        return 100 * (pages // PAGE_STEP + 1) / pages

    def wal_workload(self) -> dict[str, Any]:
        """pgbench until at least WAL_SEGMENTS segments were written, then all archived.

        Its script updates 100 consecutive accounts a transaction: pgbench's own TPC-B
        script writes about a segment a minute on this shared machine, too slow.
        """
        accounts = 100_000 * self.scale
        script = self.base / "batch-update.sql"
        script.write_text(f"\\set aid random(1, {accounts - 100})\n"
                          "UPDATE pgbench_accounts SET abalance = abalance + 1 "
                          "WHERE aid BETWEEN :aid AND :aid + 99;\n")
        chown_to_cluster_user(script)
        start = self.psql("SELECT pg_current_wal_lsn()")
        archived_before = len(self.archive_times())
        started = time.monotonic()
        while int(float(self.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}')"))
                  ) < WAL_SEGMENTS * SEGMENT:
            self.pgbench("-n", "-T", "10", "-c", "2", "-j", "2", "-f", str(script))
        seconds = time.monotonic() - started
        self.archived_up_to_now()
        run = self.archive_times()[archived_before:]
        return {"pgbench_s": round(seconds, 1), "segments": run}

    def archive_times(self) -> list[tuple[str, float, float]]:
        """(segment, wal-push s, archive-push s) per line of the wrapper's file."""
        if not self.times.exists():
            return []
        lines = [line.split() for line in self.times.read_text().splitlines()]
        return [(name, float(t1) - float(t0), float(t2) - float(t1))
                for name, t0, t1, t2 in lines]

    def wal_rows(self, segments: list[tuple[str, float, float]]) -> list[Row]:
        """Push times of the workload's segments; stored bytes of every WAL file so far."""
        full = [s for s in segments if len(s[0]) == 24]  # not .backup or .history files
        push = [s[1] for s in full]
        peer = [s[2] for s in full] if self.peer else []
        rows = [Row(f"wal-push vs archive-push, {len(full)} segments: median", "ms",
                    1000 * statistics.median(push),
                    1000 * statistics.median(peer) if peer else None),
                Row("wal-push vs archive-push: p95", "ms", 1000 * percentile(push, 0.95),
                    1000 * percentile(peer, 0.95) if peer else None)]
        drsync_wal = tree_bytes(self.repo / "wal")
        peer_wal = tree_bytes(self.peer.archive_dir) if self.peer else None
        every = len(self.archive_times())
        rows.append(Row(f"WAL bytes stored, all {every} files of the run", "MB",
                        drsync_wal / 1e6, peer_wal / 1e6 if peer_wal is not None else None))
        return rows

    def restore_target(self, name: str) -> Cluster:
        """An empty, postgres-owned data directory's cluster on a port of its own."""
        base = self.base / name
        base.mkdir()
        cluster = Cluster(base, self.cluster.bindir, free_port())
        chown_to_cluster_user(base)
        return cluster

    def restore_drsync(self, snapshot: str, name: str = "r-drsync") -> tuple[Measured, Cluster]:
        target = self.restore_target(name)
        m = self.measured(self.drsync_cmd("restore", snapshot, "--pgdata", str(target.data),
                                          "--json"), "drsync restore --pgdata")
        return m, target

    def restore_rounds(self, snapshot: str, label: str | None
                       ) -> tuple[Measured, Measured | None, list[float], list[float]]:
        """Both restores ``self.rounds`` times, the first tool alternating, each
        restored cluster then started and timed to promoted (and stopped): the median
        of each tool's restores, and each tool's start-to-promoted seconds in order
        (every round's figures, WAL files fetched included, in ``restore_runs``)."""
        ran: dict[str, list[tuple[Measured, Cluster]]] = {"drsync": [], "peer": []}
        promoted: dict[str, list[tuple[float, int]]] = {"drsync": [], "peer": []}
        tools = ["drsync", "peer"] if label is not None else ["drsync"]
        for round_ in range(self.rounds):
            order = tools if round_ % 2 == 0 else tools[::-1]
            for tool in order:
                if ran[tool]:  # the last round's directory goes
                    shutil.rmtree(ran[tool][-1][1].base, ignore_errors=True)
                name = f"r-{tool}-{round_}"
                ran[tool].append(self.restore_drsync(snapshot, name) if tool == "drsync"
                                 else self.restore_peer(label or "", name))
            for tool in order:
                cluster = ran[tool][-1][1]
                promoted[tool].append(self.start_to_promoted(cluster))
                cluster.stop("immediate")
        self.restore_runs = {tool: [{"wall_s": round(m.wall_s, 2), "cpu_s": round(m.cpu_s, 2),
                                     "promote_s": round(p[0], 2), "wal_fetched": p[1]}
                                    for (m, _c), p in zip(runs, promoted[tool], strict=True)]
                             for tool, runs in ran.items() if runs}
        dm = _median_measured(ran["drsync"])
        pm = _median_measured(ran["peer"]) if label is not None else None
        return dm, pm, [p[0] for p in promoted["drsync"]], [p[0] for p in promoted["peer"]]

    def restore_peer(self, label: str, name: str = "r-pgbackrest") -> tuple[Measured, Cluster]:
        assert self.peer is not None
        target = self.restore_target(name)
        target.data.mkdir(mode=0o700)
        chown_to_cluster_user(target.data)
        m = self.measured(self.peer.command("restore", f"--set={label}",
                                            f"--pg1-path={target.data}"),
                          "pgbackrest restore")
        return m, target

    def start_to_promoted(self, cluster: Cluster) -> tuple[float, int]:
        """Start a restored cluster: seconds until promoted, and WAL segments it fetched."""
        with open(cluster.data / "postgresql.auto.conf", "a") as fh:
            fh.write(f"port = {cluster.port}\nunix_socket_directories = '{cluster.base}'\n"
                     "listen_addresses = ''\narchive_mode = off\n")
        self.restored.append(cluster)
        started = time.monotonic()
        cluster.run(cluster.bin("pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log),
                    "-W", "start")
        ready = "database system is ready to accept connections"
        deadline = started + 3600
        while ready not in (cluster.log.read_text() if cluster.log.exists() else ""):
            if time.monotonic() > deadline or "FATAL" in cluster.log.read_text():
                raise SystemExit(f"restored cluster did not promote:\n"
                                 f"{cluster.log.read_text()[-3000:]}")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        if cluster.psql("SELECT pg_is_in_recovery()") != "f":
            raise SystemExit(f"{cluster.data} still in recovery after its ready line")
        fetched = cluster.log.read_text().count('restored log file "')
        return seconds, fetched

    def run(self) -> dict[str, Any]:
        self.setup()
        out: dict[str, Any] = {"scale": self.scale, "residents": RESIDENTS,
                               "database_bytes": int(self.psql(
                                   "SELECT pg_database_size('postgres')")),
                               "pgbackrest": self.peer_missing or self.pgbackrest_version()}
        self.archived_up_to_now()
        t = self.measured(as_cluster_user(
            ["bash", "-c", f"{self.cluster.bin('pg_basebackup')} -d '{self.cluster.dsn}' -D - "
             f"-Ft -X none -c fast > {self.base}/base.tar"]), "pg_basebackup")
        out["context"] = {"pg_basebackup_to_tar_s": round(t.wall_s, 2),
                          "pg_basebackup_cpu_s": round(t.cpu_s, 2),
                          "walsender_cpu_s": round(t.server_cpu_s, 2)}
        (self.base / "base.tar").unlink()
        relations = sorted(p for sub in ("base", "global")
                           for p in (self.cluster.data / sub).rglob("*") if p.is_file())
        work = raw_limits.measure_blocks(relations)
        rows: list[Row] = []

        first, peer_first = self.backup_rounds("full")
        rows += self.backup_rows("full backup", first, peer_first)
        out["context"]["block_work"] = {
            **{k: round(v, 3) for k, v in work.items()},
            "full_backup_cpu_x": {"drsync": round(first[0].cpu_s / work["cpu_s"], 2),
                                  "pgbackrest": round(peer_first[0].cpu_s / work["cpu_s"], 2)
                                  if peer_first else None}}
        block_full = self.peer_backup(self.block, "full") if self.block else None

        out["pages_touched_pct"] = round(self.touch_pages(), 2)
        second, peer_second = self.backup_rounds("incr")
        second_rows = self.backup_rows("second backup", second, peer_second)
        rows += second_rows
        if self.block and block_full:
            rows += self.block_rows("full backup", block_full, rows[0], rows[1])
            rows += self.block_rows("second backup", self.peer_backup(self.block, "incr"),
                                    second_rows[0], second_rows[1])

        wal = self.wal_workload()
        out["wal_pgbench_s"] = wal["pgbench_s"]
        self.drsync("wal-ship")  # drsync's WAL into the repository, as pgBackRest's is
        rows += self.wal_rows(wal["segments"])

        dm, pm, d_promotes, p_promotes = self.restore_rounds(
            second[2], peer_second[2] if peer_second else None)
        rows += [Row("restore to a ready directory: wall", "s", dm.wall_s,
                     pm.wall_s if pm else None),
                 Row("restore: CPU of the tool's tree", "s", dm.cpu_s, pm.cpu_s if pm else None),
                 Row("restore: peak RSS of the tool's tree", "MiB", dm.peak_rss / MIB,
                     pm.peak_rss / MIB if pm else None, 2.0),
                 Row("restore: peak PSS of the tool's tree", "MiB", dm.peak_pss / MIB,
                     pm.peak_pss / MIB if pm else None, None)]
        fetched = {tool: statistics.median(r["wal_fetched"] for r in runs)
                   for tool, runs in self.restore_runs.items()}
        rows += [Row("start to promoted (median of the rounds)", "s",
                     statistics.median(d_promotes),
                     statistics.median(p_promotes) if p_promotes else None),
                 Row("start to promoted: WAL files fetched", "", fetched["drsync"],
                     fetched.get("peer"), None)]
        out["rows"] = [r.to_json() for r in rows]
        out["rounds"] = self.rounds
        out["backup_rounds"] = self.backup_runs  # in order; the peer first in odd rounds
        out["restore_rounds"] = self.restore_runs
        return out

    def pgbackrest_version(self) -> str:
        return subprocess.run(["pgbackrest", "version"], capture_output=True,
                              text=True).stdout.strip()

    def close(self) -> None:
        from drsync.testing import stop_leftover_processes

        for cluster in [*self.restored, self.cluster]:
            cluster.stop("immediate")
        stop_leftover_processes(str(self.base))  # archive_command's (drsync.wal.resident)
        shutil.rmtree(self.base, ignore_errors=True)


def _median_measured(runs: list[tuple[Measured, Any]]) -> Measured:
    """Each figure the median of the rounds' (the output of the last round)."""
    ms = [m for m, _cluster in runs]

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    return Measured(wall_s=med([m.wall_s for m in ms]), cpu_s=med([m.cpu_s for m in ms]),
                    peak_rss=int(med([m.peak_rss for m in ms])),
                    peak_pss=int(med([m.peak_pss for m in ms])),
                    server_cpu_s=med([m.server_cpu_s for m in ms]),
                    returncode=ms[-1].returncode, stdout=ms[-1].stdout, stderr=ms[-1].stderr)


def render(results: dict[str, Any]) -> str:
    header = f"{'metric':<58} {'drsync':>10} {'pgBackRest':>10} {'ratio':>7} {'goal':>6} met"
    lines = [header, "-" * len(header)]
    for r in results["rows"]:
        peer = "-" if r["pgbackrest"] is None else f"{r['pgbackrest']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        goal = "info" if r["goal"] is None else f"<={r['goal']:.1f}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        name = f"{r['metric']} ({r['unit']})" if r["unit"] else r["metric"]
        lines.append(f"{name:<58} {r['drsync']:>10.2f} {peer:>10} {ratio:>7} {goal:>6} {met}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale (50 ~ 850 MB "
                        "with the resident rows)")
    parser.add_argument("--no-resident", action="store_true",
                        help="[wal] resident = false: every wal-push starts cold")
    parser.add_argument("--no-pgbackrest", action="store_true",
                        help="measure drsync alone (no pgBackRest, nothing installed)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of each backup and restore, tools taking turns (default 3)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    byte_compile_drsync()  # drsync's processes (wal-push, wal-fetch) timed as installed
    # Killed, the run still stops its clusters and removes its directory (finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    missing = "--no-pgbackrest given" if args.no_pgbackrest else install_pgbackrest()
    if missing:
        print(f"pgBackRest not measured: {missing}", file=sys.stderr)
    bench = Bench(args.scale, missing, resident=not args.no_resident, rounds=args.rounds)
    try:
        results = bench.run()
    finally:
        bench.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "pg_results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                         + "\n")
    print(f"scale {results['scale']} + {RESIDENTS:,} residents: "
          f"{results['database_bytes'] / 1e6:,.0f} MB; {results['pgbackrest']}; "
          f"{results['pages_touched_pct']}% of pgbench_accounts' pages touched before the "
          "second backup")
    print(render(results))
    c = results["context"]
    print(f"context: pg_basebackup alone to a tar file {c['pg_basebackup_to_tar_s']} s "
          f"(its CPU {c['pg_basebackup_cpu_s']} s, the walsender's {c['walsender_cpu_s']} s); "
          f"the pgbench run behind the WAL lines took {results['wal_pgbench_s']} s")
    w = c["block_work"]
    peer = w["full_backup_cpu_x"]["pgbackrest"]
    print(f"the per-byte work of a full backup alone, on one thread (read, keyed BLAKE3 per "
          f"32 KiB, zstd-3 and AES-GCM per 512 KiB; {w['input_mb']:,.0f} MB of relation "
          f"files): {w['cpu_s']:.2f} CPU-s ({w['mb_s']:.0f} MB/s); full backup CPU: drsync "
          f"{w['full_backup_cpu_x']['drsync']:.2f}x it"
          + (f", pgBackRest {peer:.2f}x" if peer else ""))


if __name__ == "__main__":
    main()
