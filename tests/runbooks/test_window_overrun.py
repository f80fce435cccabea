"""window-overrun.md after a real overrun of the agent, then the next night within its slot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent.conftest import Tenant
from tests.runbooks.conftest import operator_env, run_book

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Scaled down to the test's few megabytes: a 3 s window on a 2 Mbit/s link holds 0.75 MB.
FLEET = """
[window]
start = "23:00"
minutes = 0.05

[[link]]
name = "lgwan"
mbit_per_s = 2

[defaults]
compress_mb_per_s = 50
compression_ratio = 1
setup_s = 0

[[tenant]]
name = "Hyuga"
link = "lgwan"
priority = 1
daily_mb = 0.3

[[tenant]]
name = "Nobeoka"
link = "lgwan"
priority = 2
daily_mb = 0.2
"""


def test_window_overrun_runbook(drsync_bin: str, tmp_path: Path) -> None:
    tenant = Tenant(tmp_path / "tenant")
    try:
        tenant.fill_db(4 << 20, seed=1)  # ~5 MB of incompressible rows: 20 s at 2 Mbit/s
        tenant.write_schedule(opens_in_s=4, end_s=1, deadline_s=4, sends=[(0, 60, 2.0)],
                              max_mbit=2.0)
        tenant.write_config(extra=f'catalog = "{tmp_path / "catalog.sqlite"}"\n')
        tenant.start()
        tenant.wait_for(lambda: tenant.last_status() is not None)
        assert tenant.stop()[0] == 0
        assert tenant.last_status() == "overrun"
        (tmp_path / "fleet.toml").write_text(FLEET)
        env = operator_env(drsync_bin, AGENT_CONFIG=str(tenant.config),
                           FLEET=str(tmp_path / "fleet.toml"),
                           SCHEDULE=str(tmp_path / "schedule-new.json"),
                           CHANGE="window.minutes=60.05", HOME=str(tenant.root),
                           XDG_STATE_HOME=str(tenant.root / "state"))
        done = run_book("window-overrun.md", env, tmp_path, only=slice(None, -1))
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "agent status: exit 1: unhealthy" in out and "overrun" in out
        measured = float(out.split("Nobeoka: an overrun night read at least ")[1].split()[0])
        assert measured > 0.75  # more than the whole (scaled) window holds
        assert "Nobeoka" in out.split("does not fit")[-1]  # the plan with it says so
        assert "window.minutes=60.05: 2/2 fit" in out
        schedule = json.loads((tmp_path / "schedule-new.json").read_text())
        assert set(schedule["tenants"]) == {"Hyuga", "Nobeoka"}
        assert schedule["window"]["minutes"] == pytest.approx(60.05)

        # Before the next night the verification fails: it does not claim what has not happened.
        early = run_book("window-overrun.md", env, tmp_path, only=slice(-1, None))
        assert early.returncode == 1, early.stdout + early.stderr

        last = tenant.state()["last_run"]["run_id"]
        tenant.write_schedule(opens_in_s=2, end_s=5, deadline_s=60)  # the next night
        tenant.start()
        tenant.wait_for(lambda: tenant.state()["last_run"]["run_id"] != last)
        assert tenant.stop()[0] == 0
        verified = run_book("window-overrun.md", env, tmp_path, only=slice(-1, None))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "last run: ok " in verified.stdout
    finally:
        if tenant.proc is not None and tenant.proc.poll() is None:
            tenant.proc.kill()
            tenant.proc.communicate()
