"""A tenant on disk for the agent: a key-file repository, a SQLite source, a schedule
(drsync-schedule v1) whose window opens a few seconds ahead, a config; and the daemon in
a subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drsync.repo import RepoConfig
from drsync.testing import make_repository

DRSYNC = str(Path(sys.executable).with_name("drsync"))
MiB = 1 << 20


class Tenant:
    def __init__(self, root: Path, pack_size: int = MiB) -> None:
        self.root = root
        self.repo = root / "repo"
        self.key = root / "tenant.key"
        self.db = root / "municipal.db"
        self.schedule = root / "schedule.json"
        self.config = root / "agent.toml"
        self.metrics = root / "metrics" / "drsync.prom"
        self.env = {**os.environ, "XDG_STATE_HOME": str(root / "state"), "HOME": str(root)}
        for var in list(self.env):
            if var.startswith("DRSYNC_"):
                del self.env[var]
        make_repository(str(self.repo), key_file_path=self.key, config=RepoConfig(
            chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10, pack_size=pack_size))
        self.fill_db(1 * MiB)
        self.proc: subprocess.Popen[str] | None = None

    def fill_db(self, size: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        with sqlite3.connect(self.db) as conn:
            conn.execute("create table if not exists residents (id integer primary key, "
                         "blob blob)")
            for _ in range(size // 4096):
                conn.execute("insert into residents (blob) values (?)", (rng.randbytes(4000),))

    def write_schedule(self, *, opens_in_s: float, start_s: float = 0.0, end_s: float = 5.0,
                       deadline_s: float = 60.0, window_s: float = 120.0,
                       sends: list[tuple[float, float, float]] | None = None,
                       max_mbit: float = 0.0, tenant: str = "Nobeoka",
                       **extra: Any) -> datetime:
        opening = (datetime.now() + timedelta(seconds=opens_in_s)).replace(microsecond=0)
        sends = sends or []
        doc = {"format": "drsync-schedule", "version": 1, "fleet": "fleet.toml",
               "window": {"start": opening.strftime("%H:%M:%S"), "minutes": window_s / 60,
                          "seconds": window_s},
               "tenants": {tenant: {
                   "link": "lgwan", "start": opening.strftime("%H:%M:%S"),
                   "start_s": start_s, "end_s": end_s, "deadline_s": deadline_s,
                   "max_mbit_per_s": max_mbit,
                   "send": [{"from_s": a, "to_s": b, "mbit_per_s": r} for a, b, r in sends]}},
               "unscheduled": []}
        doc.update(extra)
        self.schedule.write_text(json.dumps(doc))
        return opening

    def write_config(self, *, jobs: str | None = None, extra: str = "") -> None:
        if jobs is None:
            jobs = f'[[agent.job]]\nsource = "sqlite"\ntarget = "{self.db}"\n'
        self.config.write_text(
            f'repo = "{self.repo}"\nkey_file = "{self.key}"\n{extra}\n'
            f'[agent]\ntenant = "Nobeoka"\nschedule = "{self.schedule}"\n'
            f'metrics_file = "{self.metrics}"\n\n{jobs}')

    def drsync(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DRSYNC, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen([DRSYNC, "agent", "run", "--config", str(self.config)],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        return self.proc

    def lines(self) -> list[dict[str, Any]]:
        log = self.root / "agent.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took). Keeps stdout as agent.log."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        took = time.monotonic() - began
        (self.root / "agent.log").write_text(out)
        (self.root / "agent.err").write_text(err)
        code = self.proc.returncode
        self.proc = None
        return code, took

    def state(self) -> dict[str, Any]:
        path = self.root / "state" / "drsync" / "agent" / "Nobeoka" / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait_for(self, predicate: Any, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.1)
        raise AssertionError("timed out waiting")

    def last_status(self) -> str | None:
        run = self.state().get("last_run")
        return run["status"] if run else None

    def snapshots(self) -> list[str]:
        out = self.drsync("--config", str(self.config), "snapshots", "--json")
        assert out.returncode == 0, out.stderr
        return [s["id"] for s in json.loads(out.stdout)]

    def lose_catalog(self) -> None:
        """Delete the catalog (the default one, in the state directory) as a disaster
        would, with its journal of runs not yet ingested."""
        catalog = self.root / "state" / "drsync" / "catalog.sqlite"
        lost = list(catalog.parent.glob(catalog.name + "*"))
        assert catalog in lost
        for path in lost:
            path.unlink()

    def catalog_runs(self) -> list[dict[str, Any]]:
        out = self.drsync("--config", str(self.config), "runs", "--json")
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))


@pytest.fixture
def tenant(tmp_path: Path) -> Any:
    t = Tenant(tmp_path)
    yield t
    if t.proc is not None and t.proc.poll() is None:
        t.proc.kill()
        t.proc.communicate()
