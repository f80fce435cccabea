"""The daemon end to end, in a subprocess, on a schedule whose window opens seconds ahead."""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import MiB, Tenant

pytestmark = pytest.mark.timeout(120)

_SAMPLE = re.compile(r'^([a-z_]+)\{([^}]*)\} (\S+)$')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format: HELP and TYPE before every family's samples."""
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge"
            typed.add(name)
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.groups()
            assert name in helped and name in typed, name
            pairs = dict(re.findall(r'([a-z_]+)="([^"]*)"', labels))
            families.setdefault(name, []).append((pairs, float(value)))
    return families


def test_runs_its_slot_records_it_and_writes_metrics(tenant: Tenant) -> None:
    tenant.write_schedule(opens_in_s=3)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    code, _took = tenant.stop()
    assert code == 0, (tenant.root / "agent.err").read_text()
    state = tenant.state()
    run = state["last_run"]
    assert run["status"] == "ok", run
    assert tenant.snapshots() == run["snapshot_ids"] and len(run["snapshot_ids"]) == 1
    assert run["bytes_read"] > 1_000_000 and run["bytes_sent"] > 0
    runs = [r for r in tenant.catalog_runs() if r["kind"] == "backup"]
    assert [(r["status"], r["tenant"], r["snapshot_id"]) for r in runs] == \
        [("ok", "Nobeoka", run["snapshot_ids"][0])]
    assert runs[0]["planned_start"] is not None and runs[0]["deadline"] is not None
    # the same run, sealed in the store: a lost catalog is rebuilt from it
    tenant.lose_catalog()
    rebuilt = tenant.drsync("--config", str(tenant.config), "runs", "--from-store", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert [(r["status"], r["tenant"], r["snapshot_id"], r["planned_start"])
            for r in json.loads(rebuilt.stdout) if r["kind"] == "backup"] == \
        [("ok", "Nobeoka", run["snapshot_ids"][0], runs[0]["planned_start"])]
    families = parse_metrics(tenant.metrics.read_text())
    assert families["drsync_last_run_status"] == [
        ({"tenant": "Nobeoka", "status": s}, 1.0 if s == "ok" else 0.0)
        for s in ("ok", "partial", "failed", "missed", "overrun")]
    [(labels, success)] = families["drsync_last_success_timestamp_seconds"]
    assert labels == {"tenant": "Nobeoka"} and abs(success - time.time()) < 60
    assert families["drsync_last_run_bytes_read"][0][1] == run["bytes_read"]
    assert 0 <= families["drsync_rpo_seconds"][0][1] < 60
    assert families["drsync_wal_spool_files"][0][1] == 0
    # logs: JSON lines (stdout is a pipe), each with the tenant and a run id
    lines = tenant.lines()
    assert lines and all(x["tenant"] == "Nobeoka" and "run_id" in x for x in lines)
    finished = [x for x in lines if x.get("event") == "run_finished"]
    assert [x["run_id"] for x in finished] == [run["run_id"]]
    # agent status: healthy, and says so in JSON
    out = tenant.drsync("agent", "status", "--config", str(tenant.config), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["last_run"]["snapshot_id"] == run["snapshot_ids"][0]
    assert doc["tenant"] == "Nobeoka" and doc["healthy"] and doc["rpo_s"] < 60
    assert doc["next_run"] > doc["last_run"]["finished"]  # tomorrow's slot


def test_missed_slot_without_room_is_recorded_missed(tenant: Tenant) -> None:
    # the window opened 20 s ago; 10 s to the deadline, 30 s planned
    tenant.write_schedule(opens_in_s=-20, end_s=30, deadline_s=30)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "missed"
    assert tenant.snapshots() == []
    runs = tenant.catalog_runs()
    assert [(r["status"], r["tenant"]) for r in runs] == [("missed", "Nobeoka")]
    assert "planned" in runs[0]["error"]
    # also on record in the store, where the secondary side reads it
    tenant.lose_catalog()
    rebuilt = tenant.drsync("--config", str(tenant.config), "runs", "--from-store", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert [(r["status"], r["tenant"], r["error"]) for r in json.loads(rebuilt.stdout)] == \
        [("missed", "Nobeoka", runs[0]["error"])]
    families = parse_metrics(tenant.metrics.read_text())
    assert ({"tenant": "Nobeoka", "status": "missed"}, 1.0) in families["drsync_last_run_status"]
    assert math.isnan(families["drsync_rpo_seconds"][0][1])
    out = tenant.drsync("agent", "status", "--config", str(tenant.config))
    assert out.returncode == 1 and "missed" in out.stdout


def test_missed_slot_with_room_runs_at_once(tenant: Tenant) -> None:
    tenant.write_schedule(opens_in_s=-20, end_s=5, deadline_s=100)
    tenant.write_config()
    began = time.monotonic()
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert time.monotonic() - began < 30
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "ok" and len(tenant.snapshots()) == 1
    assert any(x.get("event") == "catch_up" for x in tenant.lines())


def test_wal_is_shipped_between_slots_when_an_interval_is_set(tenant: Tenant) -> None:
    spool = tenant.root / "spool"
    segment = tenant.root / "000000010000000000000007"
    segment.write_bytes(random.Random(7).randbytes(16 << 20))
    tenant.write_config(extra=f'[wal]\nspool = "{spool}"\n',
                        jobs="ship_wal = true\nwal_interval_s = 1\n")
    pushed = tenant.drsync("--config", str(tenant.config), "wal-push", str(segment))
    assert pushed.returncode == 0, pushed.stderr
    tenant.write_schedule(opens_in_s=3600)  # tonight's slot is an hour away
    tenant.start()
    shipped = tenant.repo / "wal" / segment.name
    tenant.wait_for(shipped.exists)
    assert tenant.stop()[0] == 0
    runs = tenant.catalog_runs()
    assert [(r["kind"], r["status"], r["tenant"]) for r in runs] == [("wal-ship", "ok", "Nobeoka")]
    assert runs[0]["bytes_added"] > 0 and tenant.snapshots() == []
    assert runs[0]["bytes_read"] == 16 << 20  # the WAL's own size, for plan --learn-catalog
    assert tenant.last_status() is None  # the slot itself has not run


def test_spooled_wal_is_recompressed_between_slots(tenant: Tenant) -> None:
    """[agent] recompress_every_s: a child wal-recompress reseals the spool with LZMA
    outside the slot, and the pass is on record with its bytes before and after."""
    spool = tenant.root / "spool"
    rng = random.Random(3)
    segment = tenant.root / "000000010000000000000007"
    words = [b"resident", b"Nobeoka", b"address", b"tax", b"2026-11-"]
    segment.write_bytes(b"|".join(rng.choice(words) + str(rng.randrange(10**6)).encode()
                                  for _ in range(60_000))[: 512 << 10])
    tenant.write_config(extra=f'[wal]\nspool = "{spool}"\n',
                        jobs="ship_wal = true\nrecompress_every_s = 1\n"
                             "recompress_cpu_budget = 1.0\n")
    pushed = tenant.drsync("--config", str(tenant.config), "wal-push", str(segment))
    assert pushed.returncode == 0, pushed.stderr
    before = (spool / segment.name).stat().st_size
    tenant.write_schedule(opens_in_s=3600)
    tenant.start()
    tenant.wait_for(lambda: any(r["kind"] == "wal-recompress" for r in tenant.catalog_runs()))
    assert tenant.stop()[0] == 0
    [run] = [r for r in tenant.catalog_runs() if r["kind"] == "wal-recompress"]
    after = (spool / segment.name).stat().st_size
    assert run["status"] == "ok" and run["tenant"] == "Nobeoka"
    assert run["bytes_read"] == before and run["bytes_added"] == after < before
    fetched = tenant.root / "fetched"
    done = tenant.drsync("--config", str(tenant.config), "wal-fetch", segment.name,
                         str(fetched))
    assert done.returncode == 0, done.stderr
    assert fetched.read_bytes() == segment.read_bytes()


def _recompressors(spool: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"wal-recompress" in argv and str(spool).encode() in argv:
            found.append(cmdline.parent.name)
    return found


def test_the_slot_ends_a_recompression_in_progress(tenant: Tenant) -> None:
    """A slow reseal (a tenth of a core, 20 segments) is going when the slot opens: the
    daemon ends it, the night's run is ok, nothing is recorded failed, and no child is left."""
    spool = tenant.root / "spool"
    tenant.write_config(extra=f'[wal]\nspool = "{spool}"\n',
                        jobs=f'ship_wal = true\nrecompress_every_s = 1\n'
                             f'recompress_cpu_budget = 0.1\n\n[[agent.job]]\n'
                             f'source = "sqlite"\ntarget = "{tenant.db}"\n')
    rng = random.Random(5)
    for i in range(20):
        segment = tenant.root / f"0000000100000000000000{i + 16:02X}"
        segment.write_bytes(b" ".join(str(rng.randrange(10**5)).encode()
                                      for _ in range(100_000))[: 256 << 10])
        done = tenant.drsync("--config", str(tenant.config), "wal-push", str(segment))
        assert done.returncode == 0, done.stderr
    tenant.write_schedule(opens_in_s=6)
    tenant.start()
    tenant.wait_for(lambda: bool(_recompressors(spool)), timeout=30)
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    assert tenant.state()["last_run"]["status"] == "ok"
    assert any(line.get("event") == "wal_recompress" and "ended for the slot" in line["message"]
               for line in tenant.lines())
    assert not [r for r in tenant.catalog_runs() if r["status"] == "failed"]
    assert not _recompressors(spool)


def test_the_retention_policy_is_applied_after_the_night(tenant: Tenant) -> None:
    tenant.write_config(extra="[retention]\nkeep_last = 1\n")
    for _night in range(2):
        done = tenant.drsync("--config", str(tenant.config), "backup", "--sqlite",
                             str(tenant.db))
        assert done.returncode == 0, done.stderr
    assert len(tenant.snapshots()) == 2
    tenant.write_schedule(opens_in_s=3)
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    run = tenant.state()["last_run"]
    assert run["status"] == "ok"
    assert tenant.snapshots() == run["snapshot_ids"]  # the two older ones forgotten
    assert any(x.get("event") == "forget" and "2 removed" in x["message"]
               for x in tenant.lines()), tenant.lines()
    # Removed on purpose: check does not report them missing from the store.
    done = tenant.drsync("--config", str(tenant.config), "check")
    assert done.returncode == 0 and "missing from the store" not in done.stdout, done.stdout


def _slow_config(tenant: Tenant) -> None:
    tenant.fill_db(4 << 20, seed=1)  # ~5 MiB of incompressible rows


@pytest.mark.slow
def test_overrun_at_the_deadline_then_a_clean_next_run(tenant: Tenant) -> None:
    _slow_config(tenant)
    # 2 Mbit/s (250 kB/s): 5 MB need 20 s; the deadline is 4 s after the start
    # (a 4 s lead and 1 s planned: a slow start still runs at once rather than "missed")
    tenant.write_schedule(opens_in_s=4, end_s=1, deadline_s=4, sends=[(0, 60, 2.0)],
                          max_mbit=2.0)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    run = tenant.state()["last_run"]
    assert run["status"] == "overrun" and run["snapshot_ids"] == []
    assert "deadline" in run["error"]
    assert tenant.snapshots() == []
    assert run["bytes_sent"] < tenant.db.stat().st_size  # stopped before the whole upload
    check = tenant.drsync("--config", str(tenant.config), "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted((r["kind"], r["status"]) for r in tenant.catalog_runs()) == [
        ("backup", "overrun"), ("check", "ok")]
    # the next night (a new window, no limit): ok, reusing what the overrun stored
    tenant.write_schedule(opens_in_s=2, end_s=5, deadline_s=60)
    tenant.start()
    tenant.wait_for(lambda: tenant.state()["last_run"]["run_id"] != run["run_id"])
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "ok" and len(tenant.snapshots()) == 1


@pytest.mark.slow
def test_sigterm_mid_backup_exits_0_and_the_next_run_is_clean(tenant: Tenant) -> None:
    _slow_config(tenant)
    tenant.write_schedule(opens_in_s=2, end_s=30, deadline_s=100, sends=[(0, 100, 2.0)],
                          max_mbit=2.0)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: _packs(tenant) >= 1)  # mid-backup: a pack is stored
    assert tenant.last_status() is None
    code, took = tenant.stop()
    assert code == 0 and took < 30
    run = tenant.state()["last_run"]
    assert run["status"] == "failed" and "SIGTERM" in run["error"]
    assert tenant.snapshots() == []
    assert tenant.drsync("--config", str(tenant.config), "check").returncode == 0
    tenant.write_schedule(opens_in_s=2, end_s=5, deadline_s=60)
    tenant.start()
    tenant.wait_for(lambda: tenant.state()["last_run"]["run_id"] != run["run_id"])
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "ok" and len(tenant.snapshots()) == 1


@pytest.mark.slow
def test_an_agent_restarted_within_the_window_runs_the_stopped_night_again(
        tenant: Tenant) -> None:
    """A restart (SIGTERM mid-backup: a deploy, a host going down and up) before the
    deadline does not lose the night: the same schedule, the agent runs it at once."""
    _slow_config(tenant)
    tenant.write_schedule(opens_in_s=2, end_s=10, deadline_s=110, sends=[(0, 110, 2.0)],
                          max_mbit=2.0)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: _packs(tenant) >= 1)
    assert tenant.stop()[0] == 0
    stopped = tenant.state()["last_run"]
    assert stopped["status"] == "failed" and "SIGTERM" in stopped["error"]
    tenant.start()  # nothing else changed: the window is open, its deadline ahead
    tenant.wait_for(lambda: tenant.state()["last_run"]["run_id"] != stopped["run_id"],
                    timeout=100)
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "ok" and len(tenant.snapshots()) == 1
    assert any(x.get("event") == "catch_up" for x in tenant.lines())
    assert sorted(r["status"] for r in tenant.catalog_runs()) == ["failed", "ok"]


@pytest.mark.slow
def test_sigterm_during_a_slow_16_mib_pack_finishes_it_within_30_s(tmp_path: Path) -> None:
    # At the slot's 2 Mbit/s one 16 MiB pack takes 67 s: SIGTERM lifts the limit for the
    # pack in flight, so it is stored and the agent exits well within 30 s.
    tenant = Tenant(tmp_path, pack_size=16 * MiB)
    try:
        tenant.fill_db(20 * MiB, seed=2)  # incompressible: the first pack fills in ~1 s
        opening = tenant.write_schedule(opens_in_s=2, end_s=30, deadline_s=300,
                                        sends=[(0, 300, 2.0)], max_mbit=2.0)
        tenant.write_config()
        proc = tenant.start()
        # The first pack is full and waiting for its upload tokens (for ~67 s) once the
        # backup has read its first 16 MiB of the database's copy, or the whole copy,
        # however slow the machine is to get there.
        time.sleep(max(0.0, (opening - datetime.now()).total_seconds()))
        seen: set[str] = set()

        def first_pack_full() -> bool:
            copies = _open_files(proc.pid, ".drsync-sqlite-")
            if any(pos >= 16 * MiB for pos in copies.values()):
                return True
            done = bool(seen - copies.keys())
            seen.update(copies)
            return done

        tenant.wait_for(first_pack_full, timeout=100)
        time.sleep(1)
        assert _packs(tenant) == 0  # still uploading at the slot's rate
        code, took = tenant.stop()
        assert code == 0 and took < 30, took
        assert _packs(tenant) >= 1  # the pack in flight was finished, not dropped
        run = tenant.state()["last_run"]
        assert run["status"] == "failed" and "SIGTERM" in run["error"]
        assert tenant.snapshots() == []
        assert tenant.drsync("--config", str(tenant.config), "check").returncode == 0
    finally:
        if tenant.proc is not None and tenant.proc.poll() is None:
            tenant.proc.kill()


def _open_files(pid: int, marker: str) -> dict[str, int]:
    """The files whose name holds ``marker`` the process or a child has open: path -> the
    position its descriptor has read to."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return {}  # a child that has just exited
    found: dict[str, int] = {}
    for child in children:
        found.update(_open_files(int(child), marker))
    for fd in fds:
        try:
            target = os.readlink(fd)
            info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
        except OSError:
            continue  # closed meanwhile
        if marker in target:
            found[target] = max(found.get(target, 0), int(info.split()[1]))  # "pos:\t<n>"
    return found


def _packs(tenant: Tenant) -> int:
    return sum(1 for p in (tenant.repo / "data").rglob("*") if p.is_file())


def test_sighup_reloads_the_schedule(tenant: Tenant) -> None:
    import signal

    tenant.write_schedule(opens_in_s=3600)  # an hour away
    tenant.write_config()
    proc = tenant.start()
    # the job store exists once the scheduler started, after the signal handlers
    tenant.wait_for(lambda: (tenant.root / "state" / "drsync" / "agent" / "Nobeoka" /
                             "jobs.sqlite").exists())
    tenant.write_schedule(opens_in_s=2)
    proc.send_signal(signal.SIGHUP)
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "ok"
    assert any(x.get("event") == "reload" for x in tenant.lines())


@pytest.mark.parametrize(("change", "message"), [
    ({"tenant": "Saga"}, "no slot for tenant 'Nobeoka'"),
    ({"version": 2}, "version: 2 is not supported"),
    ({"format": "other"}, "format: is not 'drsync-schedule'"),
])
def test_bad_schedule_is_one_line_at_start(tenant: Tenant, change: dict[str, Any],
                                           message: str) -> None:
    tenant.write_schedule(opens_in_s=5, **change)
    tenant.write_config()
    out = tenant.drsync("agent", "run", "--config", str(tenant.config), timeout=30)
    assert out.returncode == 4
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drsync: error: ") and message in lines[0]


@pytest.mark.slow
def test_upload_rate_follows_the_send_segments(tenant: Tenant) -> None:
    tenant.fill_db(3 << 19, seed=2)  # ~2.6 MB in all, incompressible
    # 4 Mbit/s (500 kB/s) for 2 s, then 2 Mbit/s (250 kB/s)
    tenant.write_schedule(opens_in_s=2, end_s=10, deadline_s=100,
                          sends=[(0, 2, 4.0), (2, 100, 2.0)], max_mbit=4.0)
    tenant.write_config()
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None, timeout=90)
    assert tenant.stop()[0] == 0
    run = tenant.state()["last_run"]
    assert run["status"] == "ok"
    rates = [(x["offset_s"], x["bytes_per_s"]) for x in tenant.lines() if x.get("event") == "rate"]
    assert rates[0][1] == 500_000 and rates[-1][1] == 250_000
    assert rates[-1][0] >= 1.9  # the change came at the boundary, not before
    # A lower bound only (a slow machine only takes longer): whatever the bucket let
    # through by a moment is at most its burst plus the rate integrated up to then, so
    # the run cannot have ended sooner. At a constant 500 kB/s it would take ~5 s.
    sent, (t0, _), (tb, _) = run["bytes_sent"], rates[0], rates[-1]
    assert sent > 2_000_000
    at_least = (tb - t0) + (sent - 65536 - 500_000 * (tb - t0)) / 250_000
    assert at_least > sent / 500_000 + 1.5  # the bound tells the two apart
    assert run["duration_s"] >= at_least * 0.98, (run, at_least)


def test_a_second_agent_for_the_same_tenant_is_refused(tenant: Tenant) -> None:
    tenant.write_schedule(opens_in_s=600)
    tenant.write_config()
    tenant.start()
    lock = tenant.root / "state" / "drsync" / "agent" / "Nobeoka" / "agent.lock"
    tenant.wait_for(lambda: lock.exists() and lock.read_text().strip().isdigit())
    assert tenant.proc is not None
    second = tenant.drsync("agent", "run", "--config", str(tenant.config), timeout=60)
    assert second.returncode == 12, second.stderr
    line = second.stderr.strip()
    assert line == (f"drsync: error: another agent (pid {tenant.proc.pid}) already runs "
                    f"tenant Nobeoka with state in {lock.parent}; not starting a second one")
    assert tenant.proc.poll() is None  # the first goes on
    assert tenant.stop()[0] == 0


def test_a_slot_whose_repository_does_not_open_is_on_record(tenant: Tenant) -> None:
    """The store is gone at slot time: each job is a failed run in the catalog (what the
    fleet view and the next plan read), and the metrics say the night failed."""
    tenant.write_config()
    tenant.repo.rename(tenant.root / "repo-away")  # the store is not there tonight
    tenant.write_schedule(opens_in_s=2)
    tenant.start()
    tenant.wait_for(lambda: tenant.last_status() is not None)
    assert tenant.stop()[0] == 0
    assert tenant.last_status() == "failed"
    (tenant.root / "repo-away").rename(tenant.repo)
    backups = [r for r in tenant.catalog_runs() if r["kind"] == "backup"]
    assert [(r["status"], r["tenant"], r["source"]) for r in backups] == [
        ("failed", "Nobeoka", f"sqlite:{tenant.db}")]
    assert backups[0]["error"].startswith("not run: the repository did not open: ")
    assert backups[0]["planned_start"] is not None
    metrics = tenant.metrics.read_text()
    assert 'drsync_last_run_status{tenant="Nobeoka",status="failed"} 1' in metrics, metrics
