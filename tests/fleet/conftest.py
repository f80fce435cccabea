"""A small fleet with a schedule and a catalog of reported runs, for the CLI and browser."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

FLEET = """
[window]
start = "23:00"
minutes = 180

[[link]]
name = "miyazaki"
mbit_per_s = 20

[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300

[[tenant]]
name = "Nobeoka"
priority = 1

[[tenant]]
name = "Hyuga"
priority = 2
rpo_hours = 48

[[tenant]]
name = "Shiiba"
priority = 3

[[tenant]]
name = "Kushima"
priority = 1
"""


@dataclass
class FleetSetup:
    exe: str
    base: Path
    fleet: Path
    schedule: Path
    catalog: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DRSYNC_CATALOG": str(self.catalog)}
        return subprocess.run([self.exe, *args], capture_output=True, text=True, env=env,
                              timeout=120)


def record(tenant: str, n: int, status: str, hours_ago: float,
           error: str | None = None) -> dict[str, object]:
    started = datetime.now(UTC) - timedelta(hours=hours_ago)
    return {"run_id": f"{tenant.lower()}{n:028d}", "tenant": tenant, "host": f"{tenant}-db",
            "kind": "backup", "source": "sqlite:/var/lib/app/m.db", "status": status,
            "started": started.isoformat(),
            "finished": (started + timedelta(minutes=12)).isoformat(),
            "bytes_read": 52_428_800 * n, "bytes_added": 3_000_000, "bytes_sent": 3_000_000,
            "snapshot_id": f"{n:x}" * 64 if status == "ok" else None, "error": error}


@pytest.fixture
def fleet_setup(drsync_bin: str, tmp_path: Path) -> FleetSetup:
    from drsync.catalog.db import Catalog

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET)
    setup = FleetSetup(drsync_bin, tmp_path, fleet, tmp_path / "schedule.json",
                       tmp_path / "catalog.sqlite")
    done = setup.run("plan", str(fleet), "--write-schedule", str(setup.schedule))
    assert done.returncode == 0, done.stderr
    catalog = Catalog(str(setup.catalog))
    catalog.import_runs("/srv/dr/fleet", [
        record("Nobeoka", 1, "ok", 5),
        record("Hyuga", 1, "ok", 30), record("Hyuga", 2, "failed", 5,
                                             error="store unreachable: connect timed out"),
        record("Kushima", 1, "ok", 50), record("Kushima", 2, "overrun", 5,
                                               error="deadline 01:45 reached"),
    ])
    catalog.close()
    return setup
