"""primary-dc-loss.md on the real five-tenant fleet of tests/dr, killed mid-way first."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from drsync.testing import make_repository
from tests.dr.conftest import DrFleet, tree
from tests.dr.test_dr_cli import _check_restored
from tests.runbooks.conftest import operator_env, run_book


def _kill_mid_way(fleet: DrFleet) -> None:
    """A real interruption: SIGKILL once the first tenant is restored and another runs."""
    proc = fleet.popen("dr", "restore", str(fleet.fleet), "--to", str(fleet.targets), "--json")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for state in fleet.base.glob("dr-restore-*.json"):
                try:
                    status = [t.get("status") for t in
                              json.loads(state.read_text())["tenants"].values()]
                except ValueError:
                    continue
                if "ok" in status and "running" in status:
                    proc.send_signal(signal.SIGKILL)
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the restore ended before it could be killed"


@pytest.mark.slow
def test_primary_dc_loss_runbook(dr_fleet: DrFleet, drsync_bin: str, tmp_path: Path) -> None:
    _kill_mid_way(dr_fleet)
    env = operator_env(drsync_bin, FLEET=str(dr_fleet.fleet), TARGETS=str(dr_fleet.targets),
                       DRSYNC_CATALOG=str(dr_fleet.catalog))
    incident = tmp_path / "incident"
    incident.mkdir()
    done = run_book("primary-dc-loss.md", env, incident)
    # Two tenants cannot come back (no repository; never backed up): said, and exit 1.
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "Shiiba: nothing to restore: " in out
    assert "tenant.Shiiba.repo: no repository configured" in out
    assert "Shiiba: FAILED: " in out and "Kadogawa: FAILED: " in out
    assert "Kadogawa: NOT BACK: " in out and "has no snapshot" in out
    for name, limit in (("Nobeoka", 4), ("Saiki", 2), ("Hyuga", 24)):
        assert f"{name}: back, RTO " in out and f"(limit {limit} h)" in out
    assert out.count(": met") == 3
    first = {t["name"]: t["status"] for t in
             json.loads((incident / "dr-restore.json").read_text())["tenants"]}
    assert first["Nobeoka"] == "skipped"  # restored before the kill, not again
    _check_restored(dr_fleet)

    # Fix what the FAILED lines named, then the same runbook again: exit 0.
    shiiba_src = dr_fleet.base / "src" / "shiiba"
    shiiba_src.mkdir()
    (shiiba_src / "tax-2026.csv").write_text("id,amount\n1,1200\n")
    for name in ("shiiba", "kadogawa"):
        repo, key = dr_fleet.base / "repos" / name, dr_fleet.base / "keys" / f"{name}.key"
        if name == "shiiba":
            make_repository(str(repo), key_file_path=key)
        backed = dr_fleet.run("--repo", str(repo), "--key-file", str(key), "backup",
                              str(shiiba_src))
        assert backed.returncode == 0, backed.stderr
    with dr_fleet.fleet.open("a") as fh:  # Shiiba is the last [[tenant]]
        fh.write('repo = "repos/shiiba"\nkey_file = "keys/shiiba.key"\n')
    again = run_book("primary-dc-loss.md", env, incident)
    assert again.returncode == 0, again.stdout + again.stderr
    final = {t["name"]: t["status"] for t in
             json.loads((incident / "dr-final.json").read_text())["tenants"]}
    assert final == dict.fromkeys(("Shiiba", "Nobeoka", "Saiki", "Hyuga", "Kadogawa"),
                                  "skipped")
    assert again.stdout.count(": met") == 5
    for name in ("shiiba", "kadogawa"):
        [restored] = [p.parent for p in (dr_fleet.base / "restore" / name).rglob("tax-2026.csv")]
        assert tree(restored) == tree(shiiba_src)
