"""WAL recompression benchmark: which codec and preset for the day-time reseal, measured.

A throwaway PostgreSQL 15 cluster (full_page_writes on, wal_compression off,
archiving with cp) runs a municipal day: a residents table with Japanese
text, 3% updates, 2% inserts, 0.5% deletes, tax payments and audit rows,
with a checkpoint after every batch (closer to checkpoint_timeout = 5min
than one a day). On the real segments it produced, in one run:

- each codec and level on one thread (Python's zstandard and lzma): bytes,
  ratio and MB/s, the raw limits of what drsync can do;

Every MB/s is per CPU-second (the process's own, or its children's for the
command-line tools and drsync), so a busy machine slows the run but not the
comparison; wall-clock rates are in the JSON.
- the peer tools on the same segments: ``xz -T1`` and ``zstd -19`` CLIs;
- drsync end to end: ``wal-push`` every segment (zstd, as archive_command
  does), then ``wal-recompress`` (LZMA, the default preset), its bytes and
  throughput against the lzma raw limit;
- what each ratio means for the night: towns of 300 MB of WAL a day that fit
  180 minutes of the 2011 trial's 1.92 Mbit/s link.

Run ``python bench/wal_recompress_bench.py [--segments N]``. Results go to
stdout and ``bench/out/wal_recompress_results.json``. Root runs the cluster
as postgres.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drsync.testing import make_repository
from drsync.testing_postgres import (
    Cluster,
    chown_to_cluster_user,
    find_pg_bindir,
    make_cluster_dir,
)

OUT = Path(__file__).resolve().parent / "out"
MB = 1e6
LINK_MBIT = 1.92
WINDOW_S = 180 * 60
TOWN_WAL_MB = 300

DAY = """
CREATE TABLE IF NOT EXISTS resident (id serial PRIMARY KEY, name text, kana text,
    address text, born date, household int, note text);
CREATE TABLE IF NOT EXISTS tax_payment (id bigserial PRIMARY KEY, resident int, paid date,
    yen int, kind text);
CREATE TABLE IF NOT EXISTS audit (id bigserial PRIMARY KEY, at timestamptz, who text,
    what text);
"""


def _day(cluster: Cluster, residents: int, batches: int) -> None:
    cluster.psql(DAY)
    cluster.psql(
        f"INSERT INTO resident (name, kana, address, born, household, note) "
        f"SELECT '住民' || g, 'ジュウミン' || (g % 977), '宮崎県延岡市' || (g % 83) || '丁目' "
        f"|| (g % 29) || '番', date '1930-01-01' + (g::bigint * 7919 % 30000)::int, g / 3, "
        f"CASE WHEN g % 5 = 0 THEN '転入届 受理済 ' || g ELSE '' END "
        f"FROM generate_series(1, {residents}) g")
    cluster.psql("CHECKPOINT")
    per = max(1, residents // batches)
    for b in range(batches):
        lo = b * per
        cluster.psql(
            f"UPDATE resident SET address = address || ' 転居', note = 'updated {b}' "
            f"WHERE id % 33 = {b % 33} AND id BETWEEN {lo} AND {lo + per * 3};"
            f"INSERT INTO resident (name, kana, address, born, household, note) "
            f"SELECT '新住民' || g, 'シンジュウミン', '宮崎県日向市' || (g % 50), "
            f"date '2000-01-01' + g % 8000, g, '' "
            f"FROM generate_series(1, {per // 50 + 1}) g;"
            f"DELETE FROM resident WHERE id % 200 = {b % 200} AND id < {lo + per};"
            f"INSERT INTO tax_payment (resident, paid, yen, kind) SELECT g % {residents}, "
            f"date '2026-11-01' + g % 30, 1000 + g * 37 % 90000, "
            f"(ARRAY['住民税','固定資産税','軽自動車税'])[1 + g % 3] "
            f"FROM generate_series(1, {per * 2 // 3}) g;"
            f"INSERT INTO audit (at, who, what) SELECT now(), '職員' || g % 40, "
            f"'閲覧 住民票 ' || g FROM generate_series(1, {per}) g;"
            f"CHECKPOINT")
    cluster.psql("SELECT pg_switch_wal()")


def _codec_rows(segments: list[Path]) -> list[dict[str, Any]]:
    datas = [p.read_bytes() for p in segments]
    raw = sum(len(d) for d in datas)
    rows = []
    codecs: list[tuple[str, Any]] = [
        (f"zstd-{lvl}", (lambda d, lvl=lvl: zstandard.ZstdCompressor(level=lvl).compress(d)))
        for lvl in (1, 3, 19)]
    codecs += [(f"lzma-{p}", (lambda d, p=p: lzma.compress(d, format=lzma.FORMAT_XZ,
                                                            check=lzma.CHECK_NONE, preset=p)))
               for p in (1, 3, 6, 9)]
    for name, fn in codecs:
        started = time.process_time()
        out = sum(len(fn(d)) for d in datas)
        cpu = time.process_time() - started
        rows.append({"method": name, "bytes": out, "ratio": raw / out,
                     "mb_per_s": raw / MB / cpu, "cpu_s_per_16mib": cpu / len(datas)})
    return rows


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _peer_rows(segments: list[Path]) -> list[dict[str, Any]]:
    raw = sum(p.stat().st_size for p in segments)
    rows = []
    for name, argv in (("xz -6 -T1 (CLI)", ["xz", "-6", "-T1", "-c"]),
                       ("zstd -19 (CLI)", ["zstd", "-19", "-q", "-c"])):
        if shutil.which(argv[0]) is None:
            rows.append({"method": name, "note": f"{argv[0]} not installed"})
            continue
        started, cpu0 = time.monotonic(), _children_cpu()
        out = 0
        for seg in segments:
            done = subprocess.run([*argv, str(seg)], capture_output=True, check=True)
            out += len(done.stdout)
        wall, cpu = time.monotonic() - started, _children_cpu() - cpu0
        rows.append({"method": name, "bytes": out, "ratio": raw / out,
                     "mb_per_s": raw / MB / cpu, "wall_mb_per_s": raw / MB / wall})
    return rows


def _drsync_rows(segments: list[Path], work: Path) -> dict[str, Any]:
    exe = str(Path(sys.executable).with_name("drsync"))
    env = {**os.environ, "DRSYNC_REPO": str(work / "repo"),
           "DRSYNC_KEY_FILE": str(work / "agent.key"), "DRSYNC_SPOOL": str(work / "spool")}
    make_repository(str(work / "repo"), "bench", work / "agent.key")
    raw = sum(p.stat().st_size for p in segments)
    started = time.monotonic()
    for seg in segments:
        subprocess.run([exe, "wal-push", str(seg)], env=env, check=True, capture_output=True)
    push_s = time.monotonic() - started
    pushed = sum(p.stat().st_size for p in (work / "spool").iterdir()
                 if not p.name.startswith("."))
    started, cpu0 = time.monotonic(), _children_cpu()
    done = subprocess.run([exe, "wal-recompress", "--json", "--cpu-budget", "100%",
                           "--no-idle"], env=env, check=True, capture_output=True, text=True)
    wall, cpu = time.monotonic() - started, _children_cpu() - cpu0
    doc = json.loads(done.stdout)
    # The night's part: wal-ship takes the sealed spool to the store (a local one here).
    started, cpu0 = time.monotonic(), _children_cpu()
    subprocess.run([exe, "wal-ship"], env=env, check=True, capture_output=True)
    ship_wall, ship_cpu = time.monotonic() - started, _children_cpu() - cpu0
    return {"raw_bytes": raw, "pushed_bytes": pushed, "push_ratio": raw / pushed,
            "ship_mb_per_s": raw / MB / max(ship_wall, ship_cpu),
            "push_mb_per_s": raw / MB / push_s, "recompressed_bytes": doc["bytes_after"],
            "recompressed_ratio": raw / doc["bytes_after"],
            "recompress_mb_per_s": raw / MB / cpu, "recompress_wall_mb_per_s": raw / MB / wall,
            "recompress_cpu_s": cpu,
            "link_bytes_saved": 1 - doc["bytes_after"] / pushed}


def _towns(ratio: float) -> int:
    per_town_s = TOWN_WAL_MB * MB / ratio * 8 / (LINK_MBIT * 1e6)
    return int(WINDOW_S // per_town_s)


TRIAL_FLEET = Path(__file__).resolve().parents[1] / "config" / "examples" / "lgwan-2011.toml"


def _planned_towns(ratio: float, ship_mb_per_s: float) -> dict[str, Any]:
    """``drsync plan --max-fit Nobeoka`` on the 2011 trial's fleet file, fed with what
    this run measured: the learner (``plan --learn``) given a month of Nobeoka's nights
    as the agent records them (300 MB of WAL a night, on the wire at the measured
    ratio), and the night's preparation as measured (wal-ship of the sealed spool,
    streaming while it sends: overlap on). The 2011 arithmetic, for comparison: its
    own 9:1 and 0.4 MB/s of compression before sending."""
    import datetime as dt
    from dataclasses import replace

    from drsync.plan import History, learn, load_fleet, max_fit

    fleet = load_fleet(TRIAL_FLEET)
    nobeoka = fleet.tenant("Nobeoka")
    day = dt.date(2026, 11, 1)
    raw = int(TOWN_WAL_MB * MB)
    nights = [History("Nobeoka", day + dt.timedelta(days=i), raw, int(raw / ratio),
                      raw / MB / ship_mb_per_s + nobeoka.setup_s,
                      raw / ratio * 8 / (LINK_MBIT * 1e6)) for i in range(28)]
    learned = learn(fleet, nights).fleet
    learned = learned.with_tenants(tuple(replace(t, overlap=True) for t in learned.tenants))
    fit = max_fit(learned, "Nobeoka")
    trial = max_fit(fleet, "Nobeoka")
    return {"towns": fit.max_tenants, "per_town_s": fit.per_tenant_s,
            "trial_towns": trial.max_tenants,
            "learned_ratio": learned.tenant("Nobeoka").compression_ratio,
            "learned_mb_per_s": learned.tenant("Nobeoka").compress_mb_per_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--residents", type=int, default=300_000)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--segments", type=int, default=4,
                    help="segments measured per codec (LZMA is slow: ~9 CPU-s each)")
    args = ap.parse_args()
    bindir = find_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL 15 server binaries not found")
    base = make_cluster_dir("drsync-walbench-")
    archive = base / "archive"
    archive.mkdir()
    chown_to_cluster_user(archive)
    cluster = Cluster(base, bindir)
    cluster.initdb({"archive_mode": "on", "archive_command": f"'cp %p {archive}/%f'",
                    "wal_compression": "off", "full_page_writes": "on",
                    "max_wal_size": "4GB"})
    cluster.start()
    try:
        _day(cluster, args.residents, args.batches)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(archive.iterdir())) < 2:
            time.sleep(0.5)
        time.sleep(2)
    finally:
        cluster.stop()
    segments = sorted(p for p in archive.iterdir() if len(p.name) == 24)
    day_mb = sum(p.stat().st_size for p in segments) / MB
    # Skip the first segments (initdb and the initial load); measure the day's changes.
    sample = segments[-args.segments - 1:-1] if len(segments) > args.segments else segments
    sample_mb = sum(p.stat().st_size for p in sample) / MB
    work = Path(tempfile.mkdtemp(prefix="drsync-walbench-work-"))
    try:
        codecs = _codec_rows(sample)
        peers = _peer_rows(sample)
        drsync = _drsync_rows(sample, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    print(f"WAL produced: {len(segments)} segments, {day_mb:.0f} MB; measured on "
          f"{len(sample)} of the day's segments ({sample_mb:.0f} MB)")
    print(f"{'method':<18} {'bytes':>12} {'ratio':>6} {'MB/s':>7}  towns/night*")
    for row in codecs + peers:
        if "bytes" not in row:
            print(f"{row['method']:<18} {row['note']}")
            continue
        print(f"{row['method']:<18} {row['bytes']:>12} {row['ratio']:>6.2f} "
              f"{row['mb_per_s']:>7.1f}  {_towns(row['ratio'])}")
    lz6 = next(r for r in codecs if r["method"] == "lzma-6")
    print(f"drsync wal-push (zstd):   ratio {drsync['push_ratio']:.2f} at "
          f"{drsync['push_mb_per_s']:.1f} MB/s incl. process start")
    print(f"drsync wal-recompress:    ratio {drsync['recompressed_ratio']:.2f} at "
          f"{drsync['recompress_mb_per_s']:.2f} MB/s per CPU-s (incl. start, key) = "
          f"{drsync['recompress_mb_per_s'] / lz6['mb_per_s']:.2f}x the lzma-6 raw limit; "
          f"{drsync['link_bytes_saved']:.0%} fewer bytes on the link than as pushed; "
          f"towns/night {_towns(drsync['push_ratio'])} -> {_towns(drsync['recompressed_ratio'])}")
    print(f"* towns of {TOWN_WAL_MB} MB of WAL a day in {WINDOW_S // 60} min at {LINK_MBIT} Mbit/s")
    planned = {label: _planned_towns(drsync[key], drsync["ship_mb_per_s"])
               for label, key in (("as pushed", "push_ratio"),
                                  ("recompressed", "recompressed_ratio"))}
    for label, row in planned.items():
        print(f"drsync plan --max-fit Nobeoka, learned from this run ({label}): "
              f"{row['towns']} towns (ratio {row['learned_ratio']:.2f}, wal-ship "
              f"{row['learned_mb_per_s']:.0f} MB/s, {row['per_town_s']:.0f} s of link a "
              f"town); the 2011 figures: {row['trial_towns']}")
    OUT.mkdir(exist_ok=True)
    (OUT / "wal_recompress_results.json").write_text(json.dumps(
        {"segments": len(segments), "day_mb": day_mb, "codecs": codecs, "peers": peers,
         "drsync": drsync, "planned": planned}, indent=2))


if __name__ == "__main__":
    main()
