"""``drsync dr restore``: a fleet's plan carried out, tenant by tenant, surviving its own crash.

Each tenant is restored into its target (TARGETS.toml) in plan order,
``jobs`` at a time on threads. A tenant's failure is recorded and the others
go on. Progress lives in a state file next to TARGETS.toml,
``dr-restore-<hash>.json`` (the hash of the fleet and targets paths), rewritten
atomically (temporary file, fsync, rename) at every change, so a run that
is killed can be run again:

* a tenant recorded ``ok`` is skipped (reported ``skipped`` with the numbers
  of the run that restored it);
* a tenant recorded ``running`` (interrupted) or ``failed`` is restored again.
  A directory or data directory that drsync created (or found empty) is
  recorded as ``made_target`` (its path) before the first byte is written, so a
  retry into that same directory resumes there as a delta restore (what the
  interrupted attempt finished is verified and kept, the rest fetched, anything
  else removed); a target that
  held files before drsync came is never written into, on the first attempt
  or a retry: the tenant fails with a line saying so. A logical restore
  interrupted in a database is run again with ``--clean``.

Per tenant: ``rto_s`` is from the start of the fleet's restore (the first
run's start, recorded in the state file) to the tenant restored, which is
what the municipality waited; ``duration_s`` is its own restore;
``rpo_s`` is the moment it was restored minus the restored point's time.
Each attempt is a run of kind ``restore`` in the catalog (via its journal), its
``bytes_read`` the packs fetched: the measure ``dr plan`` predicts from.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from drsync import __version__, atomic
from drsync.dr.plan import Point
from drsync.dr.probe import latest_point, open_tenant
from drsync.dr.targets import Target
from drsync.errors import DrsyncError, StoreError, UsageError
from drsync.plan.fleet import Fleet, Tenant
from drsync.settings import Settings

__all__ = ["FleetRestore", "TenantOutcome", "state_path"]


class Recorder(Protocol):
    def start_run(self, repo: str, kind: str, source: str, host: str, *,
                  tenant: str | None = None, started: datetime | None = None) -> str: ...

    def finish_run(self, run_id: str, status: str, *, bytes_read: int = 0,
                   bytes_added: int = 0, snapshot_id: str | None = None,
                   error: str | None = None, finished: datetime | None = None) -> None: ...


@dataclass
class TenantOutcome:
    """One tenant's line of the summary (and of the live table while it runs)."""

    name: str
    status: str = "waiting"  # waiting, running, ok, failed, skipped
    bytes: int = 0  # restored (written) so far / in all
    total_bytes: int | None = None  # what the snapshot holds (for the ETA)
    fetched_bytes: int = 0  # the packs read from the store (what `dr plan` predicts from)
    rto_s: float | None = None
    rpo_s: float | None = None
    duration_s: float | None = None
    snapshot_id: str | None = None
    point_time: str | None = None
    target: str | None = None
    error: str | None = None
    not_restored: list[str] = field(default_factory=list)  # probe.other_sources
    started_mono: float | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {"name": self.name, "status": self.status, "rto_s": r(self.rto_s),
                "rpo_s": r(self.rpo_s), "bytes": self.bytes, "error": self.error,
                "fetched_bytes": self.fetched_bytes,
                "duration_s": r(self.duration_s), "snapshot_id": self.snapshot_id,
                "point_time": self.point_time, "target": self.target,
                "not_restored": self.not_restored}


def state_path(fleet_path: str | Path, targets_path: str | Path) -> Path:
    """``dr-restore-<hash>.json`` beside TARGETS.toml: one per (fleet, targets) pair."""
    fleet, targets = Path(fleet_path).resolve(), Path(targets_path).resolve()
    # resolve(): the same files named from another directory (``../targets.toml``, a
    # symlink) are the same restore, so a rerun from a new shell skips what is done.
    digest = hashlib.sha256(f"{fleet}\0{targets}".encode()).hexdigest()[:16]
    return targets.parent / f"dr-restore-{digest}.json"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class StateFile:
    """The crash-proof record of a fleet restore; every write is whole or absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.doc: dict[str, Any] = {"version": 1, "started": _iso(datetime.now(UTC)),
                                    "tenants": {}}
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise UsageError(f"state file {path} is unreadable ({err}); move it away to "
                                 "start the fleet's restore afresh") from None
            if not isinstance(doc, dict) or doc.get("version") != 1 \
                    or not isinstance(doc.get("tenants"), dict):
                raise UsageError(f"state file {path} is not a drsync dr-restore state; move "
                                 "it away to start afresh")
            self.doc = doc

    @property
    def started(self) -> datetime:
        return _parse(str(self.doc["started"]))

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.doc["tenants"].get(name, {}))

    def update(self, name: str, **values: Any) -> None:
        with self._lock:
            self.doc["tenants"].setdefault(name, {}).update(values)
            self._write()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        atomic.write_atomic(self.path, json.dumps(self.doc, indent=1, sort_keys=True))


def _made_here(before: dict[str, Any], target: Target) -> bool:
    """Whether an earlier attempt made (or found empty) this very target. A state file of
    drsync before 2026-12-08 said only ``true``: not trusted, the directory unknown."""
    return before.get("made_target") == target.where


def _empty_or_absent(path: Path) -> bool:
    return not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()
                                         and not any(path.iterdir()))


class FleetRestore:
    """Restores a fleet's tenants into their targets; see the module docstring."""

    def __init__(self, fleet: Fleet, targets: dict[str, Target], settings: Settings,
                 state: Path, *, recorder: Recorder | None = None,
                 drsync_command: str | None = None) -> None:
        self.fleet = fleet
        self.targets = targets
        self.settings = settings
        self.state = StateFile(state)
        self.recorder = recorder
        self.drsync_command = drsync_command
        self.host = socket.gethostname()
        self._opened: dict[str, Any] = {}  # tenant -> its repository, once opened
        self.outcomes: dict[str, TenantOutcome] = {}
        self.order: list[str] = []

    # -- planning -----------------------------------------------------------------

    def prepare(self) -> list[TenantOutcome]:
        """The outcomes in restore order (the plan's: priority, then the tightest RTO):
        tenants finished by an earlier run skipped, the rest waiting."""
        tenants = sorted(self.fleet.tenants, key=lambda t: (t.priority, t.rto_hours, t.name))
        for tenant in tenants:
            done = self.state.get(tenant.name)
            target = self.targets.get(tenant.name)
            out = TenantOutcome(tenant.name, target=target.describe() if target else None)
            if done.get("status") == "ok":
                # Where it was restored (the targets file may name another place now).
                out = replace(out, status="skipped", target=done.get("target") or out.target,
                              bytes=int(done.get("bytes", 0)),
                              fetched_bytes=int(done.get("fetched_bytes", 0)),
                              rto_s=done.get("rto_s"), rpo_s=done.get("rpo_s"),
                              duration_s=done.get("duration_s"),
                              snapshot_id=done.get("snapshot_id"),
                              point_time=done.get("point_time"))
            self.outcomes[tenant.name] = out
            self.order.append(tenant.name)
        return [self.outcomes[n] for n in self.order]

    # -- running ------------------------------------------------------------------

    def run(self, jobs: int = 1, on_change: Callable[[], None] | None = None,
            ) -> list[TenantOutcome]:
        if not self.order:
            self.prepare()
        todo = [n for n in self.order if self.outcomes[n].status != "skipped"]
        self.state.save()  # the fleet restore's start is on record before any tenant's
        pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="dr-restore")
        try:
            futures = [pool.submit(self._one, name, on_change) for name in todo]
            for fut in futures:
                fut.result()  # _one never raises: failures are outcomes
        except BaseException:
            # Ctrl-C: no tenant still queued is started (they stay waiting, and the next
            # run restores them); those under way are recorded interrupted by their state.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return [self.outcomes[n] for n in self.order]

    def _one(self, name: str, on_change: Callable[[], None] | None) -> None:
        out = self.outcomes[name]
        out.status, out.started_mono = "running", time.monotonic()
        if on_change:
            on_change()
        run_id = None
        tenant = self.fleet.tenant(name)
        started = datetime.now(UTC)
        store_failed = False
        source = ""
        try:
            target = self.targets.get(name)
            if target is None:
                raise UsageError(f"no [[target]] for tenant {name} in the targets file")
            source = target.describe()
            if self.recorder is not None and tenant.repo:
                run_id = self.recorder.start_run(tenant.repo, "restore", source, self.host,
                                                 tenant=name, started=started)
            self._restore(tenant, target, out)
            out.status = "ok"
        except Exception as err:  # one tenant's failure never stops the others
            out.status = "failed"
            out.error = str(err) if isinstance(err, DrsyncError) else \
                f"{type(err).__name__}: {err}"
            store_failed = isinstance(err, StoreError)
        out.duration_s = time.monotonic() - out.started_mono
        self.state.update(name, status=out.status, error=out.error, bytes=out.bytes,
                          fetched_bytes=out.fetched_bytes,
                          rto_s=out.rto_s, rpo_s=out.rpo_s, duration_s=out.duration_s,
                          snapshot_id=out.snapshot_id, point_time=out.point_time,
                          finished=_iso(datetime.now(UTC)))
        if run_id is not None and self.recorder is not None:
            status, finished = ("ok" if out.status == "ok" else "failed"), datetime.now(UTC)
            try:
                self.recorder.finish_run(run_id, status, bytes_read=out.fetched_bytes,
                                         bytes_added=out.bytes, snapshot_id=out.snapshot_id,
                                         error=out.error, finished=finished)
            except DrsyncError as err:  # the restore stands; say what was not recorded
                out.error = "; ".join(filter(None, [out.error, f"not in the catalog: {err}"]))
            repo = self._opened.pop(name, None)
            if repo is not None:  # as a run record, for catalog rebuild (later, if the store
                # failed)
                from drsync.repo.runs import save_run_or_warn

                save_run_or_warn(repo, {
                    "run_id": run_id, "tenant": name, "host": self.host, "kind": "restore",
                    "source": source, "status": status, "started": started.isoformat(),
                    "finished": finished.isoformat(), "bytes_read": out.fetched_bytes,
                    "bytes_added": out.bytes, "snapshot_id": out.snapshot_id,
                    "error": (out.error or "").splitlines()[0] if out.error else None,
                    "drsync_version": __version__}, quiet=True, store_failed=store_failed)
        if on_change:
            on_change()

    def _restore(self, tenant: Tenant, target: Target, out: TenantOutcome) -> None:
        before = self.state.get(tenant.name)
        interrupted = before.get("status") in ("running", "failed")
        repo = open_tenant(self.fleet, tenant, self.settings)
        self._opened[tenant.name] = repo
        snap, point = latest_point(repo, target.snapshot_kinds)
        out.not_restored = list(point.others)
        out.snapshot_id = snap.id
        out.total_bytes = int(snap.summary.get("bytes_read", 0)) or None
        out.point_time = _iso(point.time)
        made = self._claim(tenant.name, target, before, interrupted)
        resume = (interrupted and _made_here(before, target) and target.kind != "pg_restore")
        # The directory itself is what was made: a retry pointed at another one must not
        # take it for its own (and delete what the snapshot does not hold in it).
        self.state.update(tenant.name, status="running",
                          made_target=target.where if made else None, error=None,
                          snapshot_id=snap.id, target=target.describe(),
                          attempt_started=_iso(datetime.now(UTC)))
        if target.kind == "directory":
            from drsync.restore import restore_snapshot

            def advance(n: int) -> None:
                out.bytes += n

            result = restore_snapshot(repo, snap.id, target=target.where, progress=advance,
                                      delta=resume)
            out.bytes = result.bytes_written + result.bytes_kept
            out.fetched_bytes = result.bytes_fetched
        elif target.kind == "pg_restore":
            from drsync.pgrestore import restore_logical

            logical = restore_logical(repo, snap.id, target.where, clean=interrupted,
                                      pg_bindir=self.settings.pg_bindir)
            out.bytes = logical.bytes_written
            out.fetched_bytes = int(logical.details.get("bytes_fetched", 0))
        else:
            self._pgdata(repo, tenant, target, snap.id, resume, out)
        self._finish(out, point)

    def _claim(self, name: str, target: Target, before: dict[str, Any],
               interrupted: bool) -> bool:
        """Make a directory target ready: one an interrupted attempt of ours made is resumed
        (a delta restore); refuse a target that held files before drsync came. True:
        drsync made it."""
        if target.kind == "pg_restore":
            return False
        where = Path(target.where)
        if interrupted and _made_here(before, target) and os.path.lexists(where):
            return True
        if _empty_or_absent(where):
            return True
        if interrupted:
            raise UsageError(f"target {where} of tenant {name} holds files and drsync "
                             "did not create it, so it is not cleared for the retry; move "
                             "its files away (or give a new directory) and run again")
        # Not written into: a retry could neither resume in it nor clear it, and the
        # operator's files would be mixed with the tenant's.
        raise UsageError(f"target {where} of tenant {name} is not empty: give a new or "
                         "empty directory (or move its files away) and run again")

    def _pgdata(self, repo: Any, tenant: Tenant, target: Target, snapshot_id: str,
                resume: bool, out: TenantOutcome) -> None:
        from drsync.pgrestore import restore_command_for, restore_pgdata
        from drsync.sources.postgres import RecoveryTarget

        if not tenant.key_file:
            raise UsageError(f"tenant {tenant.name}: a pgdata target needs the tenant's "
                             "key_file (restore_command opens the repository on its own)")
        assert tenant.repo is not None
        command = restore_command_for(tenant.repo, key_file=tenant.key_file,
                                      password_file=None, drsync_command=self.drsync_command,
                                      config=self.settings.source or None)
        options = {"port": str(target.port)} if target.port else {}
        result = restore_pgdata(repo, snapshot_id, target.where, target=RecoveryTarget(),
                                restore_command=command, options=options,
                                start=target.port is not None,
                                pg_bindir=self.settings.pg_bindir, delta=resume)
        out.bytes = result.bytes_written + result.details["bytes_kept"]
        out.fetched_bytes = int(result.details.get("bytes_fetched", 0))

    def _finish(self, out: TenantOutcome, point: Point) -> None:
        now = datetime.now(UTC)
        out.rto_s = (now - self.state.started).total_seconds()
        out.rpo_s = (now - point.time).total_seconds()

