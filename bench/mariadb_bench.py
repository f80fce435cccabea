"""The MariaDB benchmark: drsync beside MariaDB's own tools, in one run.

On a throwaway server (``drsync.testing_mariadb``) holding one InnoDB table
of ``--rows`` residents with a realistic text column (1,000,000 rows is
about 110 MB of dump):

- dump throughput: ``drsync backup --mariadb-dump`` beside
  ``mariadb-dump (same flags) | zstd -3`` to a file;
- binlog seal time per 16 MiB binlog (median, p95): ``push_file``, the code
  binlog-receive seals with, on real binlogs the load produced
  (``max_binlog_size = 16M``), and their compression ratio;
- restore time of the dump: ``drsync restore --mariadb-restore`` beside
  ``mariadb < dump.sql``.

Run ``make bench-mariadb`` or ``python bench/mariadb_bench.py --rows 200000``.
Results go to stdout and ``bench/out/mariadb_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drsync.repo.keys import KeyFile, Secret
from drsync.repo.repository import Repository
from drsync.sources.mariadb.dump import DUMP_FLAGS
from drsync.store import LocalStore
from drsync.testing import make_repository
from drsync.testing_mariadb import MariadbServer, missing_mariadb_programs
from drsync.wal.push import push_file
from drsync.wal.spool import Spool

OUT = Path(__file__).resolve().parent / "out"
MB = 1e6


class Bench:
    def __init__(self, rows: int) -> None:
        missing = missing_mariadb_programs()
        if missing:
            raise SystemExit(f"MariaDB's programs are missing: {', '.join(missing)}")
        self.rows = rows
        self.base = Path(tempfile.mkdtemp(prefix="drmdb-bench-", dir="/var/tmp"))
        self.server = MariadbServer(self.base / "server")
        self.server.base.mkdir()
        self.exe = shutil.which("drsync") or str(Path(sys.executable).parent / "drsync")
        self.env = {**os.environ, "DRSYNC_REPO": str(self.base / "repo"),
                    "DRSYNC_KEY_FILE": str(self.base / "tenant.key"),
                    "DRSYNC_SPOOL": str(self.base / "spool"),
                    "DRSYNC_CATALOG": str(self.base / "catalog.sqlite")}

    def drsync(self, *args: str) -> Any:
        done = subprocess.run([self.exe, *args, "--json"], env=self.env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"drsync {' '.join(args)}: {done.stderr}")
        return json.loads(done.stdout)

    def sh(self, script: str) -> float:
        started = time.monotonic()
        subprocess.run(["bash", "-c", "set -o pipefail; " + script], check=True,
                       capture_output=True)
        return time.monotonic() - started

    def client(self, program: str) -> str:
        return f"{program} --no-defaults -uroot --socket={self.server.socket}"

    def setup(self) -> None:
        make_repository(self.env["DRSYNC_REPO"], key_file_path=self.env["DRSYNC_KEY_FILE"])
        self.server.install()
        self.server.start("--max-binlog-size=16M", "--innodb-buffer-pool-size=256M")
        self.server.sql("CREATE DATABASE registry; CREATE TABLE registry.resident (id INT "
                        "PRIMARY KEY, name VARCHAR(100), address TEXT, tax DECIMAL(12,2)) "
                        "ENGINE=InnoDB")
        for start in range(1, self.rows + 1, 10_000):
            end = min(start + 9_999, self.rows)
            self.server.sql(
                "INSERT INTO resident SELECT seq, CONCAT('住民 ', seq), CONCAT('宮崎県延岡市 ', "
                "seq MOD 977, ' 番地 household ', MD5(seq)), (seq * 37) MOD 100000 / 3 "
                f"FROM seq_{start}_to_{end}", "registry")

    def seal_binlogs(self) -> dict[str, Any]:
        current = self.server.query("SHOW MASTER STATUS").split("\t")[0]
        files = sorted(p for p in self.server.data.glob("binlog.[0-9]*")
                       if p.name != current and p.stat().st_size > 8 << 20)[-20:]
        kf = KeyFile.load(self.env["DRSYNC_KEY_FILE"])
        key = Repository.open(LocalStore(self.env["DRSYNC_REPO"]), Secret(key_file=kf)).key
        spool = Spool(self.base / "spool-timed")
        times = []
        for path in files:
            started = time.perf_counter()
            push_file(path, spool, key)
            times.append(time.perf_counter() - started)
        raw = sum(p.stat().st_size for p in files)
        stored = sum(spool.path(p.name).stat().st_size for p in files)
        times.sort()
        return {"binlogs": len(times), "mean_mib": round(raw / len(files) / (1 << 20), 1),
                "median_s": round(statistics.median(times), 4),
                "p95_s": round(times[max(0, int(len(times) * 0.95) - 1)], 4),
                "compression_ratio": round(raw / stored, 2)}

    def run(self) -> dict[str, Any]:
        self.setup()
        out: dict[str, Any] = {"rows": self.rows}
        dump = self.base / "dump.sql"
        flags = " ".join(DUMP_FLAGS)
        t = self.sh(f"{self.client('mariadb-dump')} {flags} registry | zstd -3 -q -T1 "
                    f"> {dump}.zst")
        r = self.drsync("backup", "--mariadb-dump", self.server.dsn_for("registry"))
        out["dump_bytes"] = r["bytes_read"]
        out["mariadb_dump_zstd_mb_s"] = round(r["bytes_read"] / MB / t, 1)
        out["drsync_dump_mb_s"] = round(r["bytes_read"] / MB / r["duration_s"], 1)
        out["drsync_dump_added_bytes"] = r["bytes_added"]
        out["binlog_seal"] = self.seal_binlogs()
        self.sh(f"zstd -d -q {dump}.zst -o {dump}")
        self.server.sql("CREATE DATABASE plain")
        t = self.sh(f"{self.client('mariadb')} plain < {dump}")
        out["mariadb_load_s"] = round(t, 2)
        restored = self.drsync("restore", r["snapshot_id"], "--mariadb-restore",
                               self.server.dsn_for("restored"))
        out["drsync_restore_s"] = round(restored["duration_s"], 2)
        return out

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="residents to load")
    args = parser.parse_args()
    bench = Bench(args.rows)
    try:
        results = bench.run()
    finally:
        bench.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "mariadb_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
