"""``drsync dr plan`` and ``drsync dr restore`` on a real fleet of five local tenants."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.dr.conftest import DrFleet, psql, tree


def test_plan_order_reasons_and_bytes(dr_fleet: DrFleet) -> None:
    done = dr_fleet.run("dr", "plan", str(dr_fleet.fleet), "--json")
    assert done.returncode == 1, done.stderr  # two tenants have nothing to restore
    doc = json.loads(done.stdout)
    rows = doc["tenants"]
    # Nothing to restore first (by priority), then priority, then the tightest RTO.
    assert [r["name"] for r in rows] == ["Shiiba", "Kadogawa", "Nobeoka", "Saiki", "Hyuga"]
    assert "tenant.Shiiba.repo: no repository configured" in rows[0]["reason"]
    assert "has no snapshot" in rows[1]["reason"]
    assert [r["restorable"] for r in rows] == [False, False, True, True, True]
    assert [r["source_kind"] for r in rows[2:]] == ["files", "pg_dump", "sqlite"]
    nobeoka = rows[2]
    pack_bytes = sum(p.stat().st_size for p in
                     (dr_fleet.base / "repos" / "nobeoka" / "data").rglob("*") if p.is_file())
    assert nobeoka["bytes"] == pack_bytes  # every pack of its only snapshot
    assert doc["rate"]["basis"] == "[dr] restore_mbit_per_s"
    assert nobeoka["predicted_s"] == round(pack_bytes / 10e6, 3)
    assert all(r["rto_met"] for r in rows[2:])

    human = dr_fleet.run("dr", "plan", str(dr_fleet.fleet))
    assert human.returncode == 1
    assert "Shiiba: nothing to restore: " in human.stdout
    assert "tenant.Shiiba.repo: no repository configured" in human.stdout


def _check_restored(fleet: DrFleet) -> None:
    restored = fleet.base / "restore" / "nobeoka"
    source = fleet.sources["nobeoka"]
    found = [p for p in restored.rglob("README.txt")]
    assert len(found) == 1
    assert tree(found[0].parent) == tree(source)
    dbs = list((fleet.base / "restore" / "hyuga").rglob("*.db"))
    assert len(dbs) == 1
    with sqlite3.connect(dbs[0]) as conn:
        rows = conn.execute("SELECT id, name, ward FROM resident ORDER BY id").fetchall()
    conn.close()
    with sqlite3.connect(fleet.sources["hyuga"]) as conn:
        assert rows == conn.execute("SELECT id, name, ward FROM resident ORDER BY id").fetchall()
    conn.close()
    query = "SELECT count(*), sum(amount), md5(string_agg(id || ':' || amount, ',' ORDER BY id))" \
            " FROM tax"
    assert psql(str(fleet.pg_target), query) == psql(str(fleet.pg_source), query)


def test_restore_fleet_failures_do_not_stop_others(dr_fleet: DrFleet) -> None:
    before = json.loads(dr_fleet.run("dr", "plan", str(dr_fleet.fleet), "--json").stdout)
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                        "--json", "--jobs", "2")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    by_name = {t["name"]: t for t in doc["tenants"]}
    assert [t["name"] for t in doc["tenants"]] == ["Nobeoka", "Shiiba", "Saiki", "Hyuga",
                                                  "Kadogawa"]
    assert {n: t["status"] for n, t in by_name.items()} == {
        "Nobeoka": "ok", "Shiiba": "failed", "Saiki": "ok", "Hyuga": "ok", "Kadogawa": "failed"}
    assert "no repository configured" in by_name["Shiiba"]["error"]
    assert "has no snapshot" in by_name["Kadogawa"]["error"]
    for name in ("Nobeoka", "Saiki", "Hyuga"):
        t = by_name[name]
        assert t["bytes"] > 0 and t["error"] is None
        assert t["rto_s"] > 0 and t["rpo_s"] > 0 and t["rpo_s"] < 3600
    assert by_name["Nobeoka"]["bytes"] == sum(len(b) for b in
                                              tree(dr_fleet.sources["nobeoka"]).values())
    _check_restored(dr_fleet)
    # Each tenant's restore is a run of kind restore in the catalog.
    runs = json.loads(dr_fleet.run("runs", "--json").stdout)
    restores = {r["tenant"]: r for r in runs if r["kind"] == "restore"}
    assert {n: r["status"] for n, r in restores.items()} == {
        "Nobeoka": "ok", "Saiki": "ok", "Hyuga": "ok", "Kadogawa": "failed"}
    plan_rows = {r["name"]: r for r in before["tenants"]}
    for name in ("Nobeoka", "Saiki", "Hyuga"):
        # What was fetched (recorded as read: what `dr plan` measures rates from) is what
        # the plan said, less the pack headers a planned read does not need.
        fetched = by_name[name]["fetched_bytes"]
        assert restores[name]["bytes_read"] == fetched
        assert 0.9 * plan_rows[name]["bytes"] < fetched <= plan_rows[name]["bytes"]
        assert restores[name]["bytes_added"] == by_name[name]["bytes"]  # written
    # ... and the plan now predicts from the measured rate.
    plan = json.loads(dr_fleet.run("dr", "plan", str(dr_fleet.fleet), "--json").stdout)
    assert plan["rate"]["basis"] == "measured (3 restore/drill runs)"


def test_kill_mid_way_then_resume(dr_fleet: DrFleet) -> None:
    args = ("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets), "--json")
    proc = dr_fleet.popen(*args)
    state_file = None
    deadline = time.monotonic() + 120
    finished: set[str] = set()
    running: set[str] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            states = list(dr_fleet.base.glob("dr-restore-*.json"))
            if states:
                state_file = states[0]
                try:
                    doc = json.loads(state_file.read_text())
                except ValueError:
                    continue  # never: the file is replaced atomically; retried to be sure
                finished = {n for n, t in doc["tenants"].items() if t.get("status") == "ok"}
                running = {n for n, t in doc["tenants"].items()
                           if t.get("status") == "running"}
                if finished and running:  # one done, one in the middle of its restore
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the restore ended before it could be killed"
    assert state_file is not None and finished
    assert "Nobeoka" in finished  # priority 1 goes first
    again = dr_fleet.run(*args)
    assert again.returncode == 1, again.stderr  # Shiiba and Kadogawa still fail
    doc = json.loads(again.stdout)
    status = {t["name"]: t["status"] for t in doc["tenants"]}
    for name in finished:
        assert status[name] == "skipped"
    for name in running:
        assert status[name] == "ok"  # interrupted: resumed there, as a delta restore
    assert {n for n, s in status.items() if s in ("ok", "skipped")} == {
        "Nobeoka", "Saiki", "Hyuga"}
    assert status["Shiiba"] == status["Kadogawa"] == "failed"
    _check_restored(dr_fleet)
    third = json.loads(dr_fleet.run(*args).stdout)
    assert {t["name"]: t["status"] for t in third["tenants"]} == {
        "Nobeoka": "skipped", "Shiiba": "failed", "Saiki": "skipped", "Hyuga": "skipped",
        "Kadogawa": "failed"}


def _state(fleet: DrFleet) -> Path:
    from drsync.dr.run import state_path

    return state_path(fleet.fleet, fleet.targets)


def test_interrupted_target_drsync_made_is_cleared(dr_fleet: DrFleet) -> None:
    partial = dr_fleet.base / "restore" / "nobeoka"
    (partial / "half").mkdir(parents=True)
    (partial / "half" / "written.bin").write_bytes(b"x" * 1000)
    _state(dr_fleet).write_text(json.dumps({"version": 1, "started": "2026-12-01T00:00:00Z",
        "tenants": {"Nobeoka": {"status": "running", "made_target": str(partial)}}}))
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                        "--json")
    by_name = {t["name"]: t for t in json.loads(done.stdout)["tenants"]}
    assert by_name["Nobeoka"]["status"] == "ok", by_name["Nobeoka"]
    assert not (partial / "half").exists()  # the delta resume removed what is not restored
    _check_restored(dr_fleet)
    # RTO counts from the fleet restore's first start, recorded in the state file.
    assert by_name["Nobeoka"]["rto_s"] > 3600


def test_interrupted_target_drsync_did_not_make_is_refused(dr_fleet: DrFleet) -> None:
    partial = dr_fleet.base / "restore" / "nobeoka"
    partial.mkdir(parents=True)
    (partial / "precious.txt").write_text("not drsync's")
    _state(dr_fleet).write_text(json.dumps({"version": 1, "started": "2026-12-01T00:00:00Z",
        "tenants": {"Nobeoka": {"status": "running", "made_target": False}}}))
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                        "--json")
    by_name = {t["name"]: t for t in json.loads(done.stdout)["tenants"]}
    assert by_name["Nobeoka"]["status"] == "failed"
    assert "drsync did not create" in by_name["Nobeoka"]["error"]
    assert (partial / "precious.txt").read_text() == "not drsync's"
    assert by_name["Hyuga"]["status"] == "ok"  # the others go on


def test_a_retry_pointed_at_another_directory_does_not_take_it_for_its_own(
        dr_fleet: DrFleet) -> None:
    """The mark "drsync made this target" was the tenant's, not the directory's: after an
    interrupted attempt, pointing the tenant at another directory made the retry resume
    there as a delta restore and delete the operator's files. Found by an edge hunt."""
    elsewhere = dr_fleet.base / "restore" / "elsewhere"
    partial = dr_fleet.base / "restore" / "nobeoka"
    partial.mkdir(parents=True)
    (partial / "precious.txt").write_text("the operator's")
    _state(dr_fleet).write_text(json.dumps({"version": 1, "started": "2026-12-01T00:00:00Z",
        "tenants": {"Nobeoka": {"status": "running", "made_target": str(elsewhere)}}}))
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                        "--json")
    by_name = {t["name"]: t for t in json.loads(done.stdout)["tenants"]}
    assert by_name["Nobeoka"]["status"] == "failed"
    assert "drsync did not create" in by_name["Nobeoka"]["error"]
    assert [p.name for p in partial.iterdir()] == ["precious.txt"]
    # A state file of an older drsync said only `true`: not trusted either.
    _state(dr_fleet).write_text(json.dumps({"version": 1, "started": "2026-12-01T00:00:00Z",
        "tenants": {"Nobeoka": {"status": "running", "made_target": True}}}))
    dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets))
    assert [p.name for p in partial.iterdir()] == ["precious.txt"]


def test_two_tenants_in_one_directory_are_refused(dr_fleet: DrFleet) -> None:
    """Accepted, two tenants' files were mixed, and one's resume (a delta restore) deleted
    what the other had restored, which was still reported back. Found by an edge hunt."""
    shared = dr_fleet.base / "restore" / "shared"
    for inner in (shared, shared / "hyuga"):
        dr_fleet.targets.write_text(
            f'[[target]]\ntenant = "Nobeoka"\ndirectory = "{shared}"\n'
            f'[[target]]\ntenant = "Hyuga"\ndirectory = "{inner}"\n')
        done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets))
        assert done.returncode == 4, done.stderr
        assert "target.Nobeoka and target.Hyuga are" in done.stderr
        assert "give each tenant its own" in done.stderr
        assert not shared.exists()


def test_a_target_holding_other_files_is_never_written_into(dr_fleet: DrFleet) -> None:
    partial = dr_fleet.base / "restore" / "nobeoka"
    partial.mkdir(parents=True)
    (partial / "keep.txt").write_text("the operator's")
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                        "--json")
    by_name = {t["name"]: t for t in json.loads(done.stdout)["tenants"]}
    assert by_name["Nobeoka"]["status"] == "failed"
    assert f"target {partial} of tenant Nobeoka is not empty" in by_name["Nobeoka"]["error"]
    assert [p.name for p in partial.iterdir()] == ["keep.txt"]  # nothing written there
    assert by_name["Hyuga"]["status"] == "ok"  # the others go on


def test_bad_targets_file_is_one_line(dr_fleet: DrFleet) -> None:
    dr_fleet.targets.write_text('[[target]]\ntenant = "Nobeoka"\ndirectory = "a"\npgdata = "b"\n')
    done = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets))
    assert done.returncode == 4
    assert done.stderr.strip() == (f"drsync: error: {dr_fleet.targets}: target.Nobeoka: needs "
                                   "exactly one of directory, pg_restore, pgdata (got directory, "
                                   "pgdata)")
    assert not list(dr_fleet.base.glob("dr-restore-*.json"))


def test_a_recovery_only_fleet_file_from_any_directory(dr_fleet: DrFleet) -> None:
    """README's fleet file for disaster recovery has no planner tables ([window], [[link]],
    rates): dr plan and dr restore take it. Run again from another directory, naming the
    same files another way, the restore finds its state: finished tenants are skipped."""
    text = dr_fleet.fleet.read_text()
    dr_only = text[text.index("[dr]"):]  # [dr] and the tenants: no window, link, defaults
    dr_fleet.fleet.write_text(dr_only)
    plan = dr_fleet.run("dr", "plan", str(dr_fleet.fleet), "--json")
    assert plan.returncode == 1, plan.stderr  # Shiiba and Kadogawa have nothing to restore
    assert [r["name"] for r in json.loads(plan.stdout)["tenants"]] == [
        "Shiiba", "Kadogawa", "Nobeoka", "Saiki", "Hyuga"]
    human = dr_fleet.run("dr", "plan", str(dr_fleet.fleet))
    assert "[dr] restore_mbit_per_s" in human.stdout  # the basis, not swallowed as markup

    first = dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets),
                         "--json")
    assert {t["name"]: t["status"] for t in json.loads(first.stdout)["tenants"]} == {
        "Nobeoka": "ok", "Shiiba": "failed", "Saiki": "ok", "Hyuga": "ok",
        "Kadogawa": "failed"}
    elsewhere = dr_fleet.base / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "DRSYNC_CATALOG": str(dr_fleet.catalog)}
    again = subprocess.run([dr_fleet.exe, "dr", "restore", "../fleet.toml", "--to",
                            "../elsewhere/../targets.toml", "--json"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, timeout=300)
    assert {t["name"]: t["status"] for t in json.loads(again.stdout)["tenants"]} == {
        "Nobeoka": "skipped", "Shiiba": "failed", "Saiki": "skipped", "Hyuga": "skipped",
        "Kadogawa": "failed"}, again.stderr
    assert len(list(dr_fleet.base.glob("dr-restore-*.json"))) == 1
    _check_restored(dr_fleet)


def test_a_tenant_restored_earlier_is_reported_where_it_was_restored(
        dr_fleet: DrFleet) -> None:
    """The state file kept no target: a rerun after the targets file changed reported a
    skipped tenant at its new directory, where nothing was ever restored (edge hunt)."""
    first = json.loads(dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to",
                                    str(dr_fleet.targets), "--json").stdout)
    was = {t["name"]: t["target"] for t in first["tenants"]}
    text = dr_fleet.targets.read_text().replace('"restore/nobeoka"', '"restore/moved"')
    dr_fleet.targets.write_text(text)
    again = json.loads(dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to",
                                    str(dr_fleet.targets), "--json").stdout)
    nobeoka = next(t for t in again["tenants"] if t["name"] == "Nobeoka")
    assert nobeoka["status"] == "skipped" and nobeoka["target"] == was["Nobeoka"]
    assert "moved" not in nobeoka["target"]


def test_ctrl_c_stops_the_fleet_restore_without_starting_the_tenants_queued(
        dr_fleet: DrFleet) -> None:
    """Ctrl-C went on restoring every queued tenant (their futures were submitted) and
    only then said "aborted". Found by an edge hunt."""
    args = ("dr", "restore", str(dr_fleet.fleet), "--to", str(dr_fleet.targets), "--json")
    proc = dr_fleet.popen(*args)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            doc = json.loads(_state(dr_fleet).read_text()) if _state(dr_fleet).exists() else {}
            if any(t.get("status") == "running" for t in doc.get("tenants", {}).values()):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.005)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    left = json.loads(_state(dr_fleet).read_text())["tenants"]
    assert len([t for t in left.values() if t.get("status") == "ok"]) < 3  # not all done
    again = json.loads(dr_fleet.run(*args).stdout)
    assert {t["name"] for t in again["tenants"] if t["status"] in ("ok", "skipped")} == {
        "Nobeoka", "Saiki", "Hyuga"}
    _check_restored(dr_fleet)


def test_a_tenant_with_two_sources_is_told_what_dr_restore_leaves_behind(
        dr_fleet: DrFleet) -> None:
    """A tenant backing up its database and a directory each night: dr plan, dr restore
    and its summary named only the newest snapshot, and the database stayed behind
    without a word (exit 0, "ok"). Found by an edge hunt."""
    from tests.dr.conftest import _backup

    docs = dr_fleet.base / "hyuga-docs"
    docs.mkdir()
    (docs / "permit.txt").write_text("建築確認\n")
    _backup(dr_fleet, "hyuga", str(docs))  # now Hyuga's newest snapshot is the files one
    plan = json.loads(dr_fleet.run("dr", "plan", str(dr_fleet.fleet), "--json").stdout)
    hyuga = next(r for r in plan["tenants"] if r["name"] == "Hyuga")
    assert hyuga["source_kind"] == "files"
    assert len(hyuga["not_restored"]) == 1 and hyuga["not_restored"][0].startswith("sqlite ")
    text = dr_fleet.run("dr", "plan", str(dr_fleet.fleet)).stdout
    assert "Hyuga: also holds sqlite " in text and "which dr restore does not bring back" in text
    done = json.loads(dr_fleet.run("dr", "restore", str(dr_fleet.fleet), "--to",
                                   str(dr_fleet.targets), "--json").stdout)
    out = next(t for t in done["tenants"] if t["name"] == "Hyuga")
    assert out["status"] == "ok" and out["not_restored"] == hyuga["not_restored"]
    nobeoka = next(t for t in done["tenants"] if t["name"] == "Nobeoka")
    assert nobeoka["not_restored"] == []
