"""``drsync agent run``: the runner wired to an APScheduler BlockingScheduler.

The slot job lives in a SQLAlchemy job store (a SQLite file in the tenant's
state directory), referenced by name so it survives restarts; it is
re-planned by ``policy.decide`` at every start, reload and run. The rate
changes at ``send`` boundaries and the deadline are volatile jobs in a
memory store. Two runs never overlap: the slot job has ``max_instances=1``
and the runner is guarded by a lock besides. After a slot's run, a restore
drill runs when ``[agent] drill_every_days`` says one is due
(policy.drill_due). SIGTERM asks the run to stop after its current pack and
exits 0 once it has (the window is not counted as handled: started again before
its deadline, with room for the planned run, the agent runs it at once); SIGHUP
reloads the config and the schedule (a bad one is logged and the old one kept).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from drsync.agent.config import AgentConfig, TenantSlot, agent_config, tenant_slot
from drsync.agent.metrics import MetricsInput, write_metrics
from drsync.agent.policy import Decision, boundaries, bytes_per_s, decide, rate_at
from drsync.agent.runner import (
    RunContext,
    check_jobs,
    drill_if_due,
    open_agent_repo,
    recompress_between_slots,
    record_missed,
    run_slot,
    ship_between_slots,
)
from drsync.agent.state import AgentState, LastRun, agent_dir
from drsync.errors import DrsyncError, RepositoryLocked
from drsync.settings import Settings, store_options
from drsync.store.throttle import TokenBucket

__all__ = ["Agent", "slot_job"]

log = logging.getLogger("drsync.agent")
_AGENTS: dict[str, Agent] = {}


def slot_job(tenant: str) -> None:
    """The job store's reference to the running agent of ``tenant`` (picklable by name)."""
    _AGENTS[tenant].run_now()


def _now() -> datetime:
    return datetime.now().astimezone()


class Agent:
    def __init__(self, load_settings: Callable[[], Settings]) -> None:
        self._load_settings = load_settings
        self.config, self.slot = self._load()
        # Waits for upload tokens end early at SIGTERM (see stop), so the pack in flight
        # is finished at once rather than at the slot's rate.
        self._released = threading.Event()
        self.bucket = TokenBucket(1.0, sleep=self._wait_for_tokens)
        self.bucket.set_rate(0)
        self.run_id = "-"
        self._stop_reason: str | None = None
        self._stopping: str | None = None
        self._run_window: datetime | None = None
        self._guard = threading.Lock()
        self._recompressing: subprocess.Popen[str] | None = None
        self.idle = threading.Event()
        self.idle.set()
        self.pending: Decision | None = None
        home = agent_dir(self.config.settings.state_dir, self.config.tenant)
        self.state = AgentState.load(home / "state.json")
        home.mkdir(parents=True, exist_ok=True)
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.scheduler = BlockingScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{home / 'jobs.sqlite'}"),
                       "volatile": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def _load(self) -> tuple[AgentConfig, TenantSlot]:
        config = agent_config(self._load_settings())
        check_jobs(config)
        return config, tenant_slot(config)

    def fields(self) -> tuple[str, str]:
        return self.config.tenant, self.run_id

    # -- planning ------------------------------------------------------------------

    def plan(self) -> None:
        """Schedule the slot the policy chooses (recording a missed one first)."""
        decision = decide(_now(), self.slot, self.state.last_window)
        if decision.action == "missed":
            run = record_missed(self.config, decision.window, decision.reason,
                                planned_start=decision.at, deadline=decision.deadline)
            self.run_id = run.run_id
            log.warning("slot missed: %s", decision.reason,
                        extra={"event": "run_finished", "status": "missed"})
            self._finish(run, decision.window)
            decision = decide(_now(), self.slot, self.state.last_window)
        run_date = _now() if decision.action == "run" else decision.at
        if decision.action == "run":
            log.info("running at once: %s", decision.reason, extra={"event": "catch_up"})
        self.pending = decision
        self.scheduler.add_job("drsync.agent.daemon:slot_job", "date", run_date=run_date,
                               args=[self.config.tenant], id="slot", replace_existing=True,
                               max_instances=1, coalesce=True, misfire_grace_time=None)
        for offset in boundaries(self.slot):
            at = decision.window + timedelta(seconds=offset)
            if at > _now():
                self.scheduler.add_job(self.apply_rate, "date", run_date=at, id=f"rate-{offset}",
                                       jobstore="volatile", replace_existing=True)
        self.scheduler.add_job(self._deadline, "date", run_date=decision.deadline,
                               args=[decision.window], id="deadline", jobstore="volatile",
                               replace_existing=True)
        if self.config.ship_wal and self.config.wal_interval_s > 0:
            self.scheduler.add_job(self.ship_between, "interval",
                                   seconds=self.config.wal_interval_s, id="wal-between",
                                   jobstore="volatile", replace_existing=True)
        if self.config.recompress_every_s > 0:
            self.scheduler.add_job(self.recompress_between, "interval",
                                   seconds=self.config.recompress_every_s, id="wal-recompress",
                                   jobstore="volatile", replace_existing=True)
        log.info("next run at %s (%s)", run_date.isoformat(timespec="seconds"), decision.reason,
                 extra={"event": "planned", "next_run": run_date.isoformat()})

    def apply_rate(self) -> None:
        """The bucket's rate for this moment of the window (the schedule's send segments)."""
        window = self._run_window or (self.pending.window if self.pending else None)
        if window is None or self._stopping:
            return
        offset = (_now() - window).total_seconds()
        cap = store_options(self.config.settings).limit_upload
        rate = bytes_per_s(rate_at(self.slot, offset), cap)
        self.bucket.set_rate(rate)
        log.info("upload rate %s", f"{rate * 8 / 1e6:.3f} Mbit/s" if rate else "unlimited",
                 extra={"event": "rate", "bytes_per_s": rate, "offset_s": round(offset, 3)})

    def ship_between(self) -> None:
        """wal-ship outside the slot, at ``max_mbit_per_s``; never during a run (which ships
        WAL itself, in the slot)."""
        if self._stopping or not self._guard.acquire(blocking=False):
            return
        try:
            self.apply_rate()
            ship_between_slots(self.config, self.bucket)
        finally:
            self._guard.release()

    def recompress_between(self) -> None:
        """wal-recompress outside the slot; never while a run goes, and ended at once when
        one starts (see run_now): the slot's CPU and I/O come first."""
        if self._stopping or self._guard.locked():
            return
        recompress_between_slots(self.config, on_start=self._set_recompressing)
        self._recompressing = None

    def _set_recompressing(self, proc: subprocess.Popen[str]) -> None:
        self._recompressing = proc
        if self._stopping or self._guard.locked():  # a run (or SIGTERM) came first
            self._end_recompress()

    def _end_recompress(self) -> None:
        proc = self._recompressing
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _deadline(self, window: datetime) -> None:
        if self._run_window == window and not self.idle.is_set():
            log.warning("deadline reached: stopping after the current pack",
                        extra={"event": "deadline"})
            self._stop_reason = "deadline"

    # -- running ---------------------------------------------------------------------

    def run_now(self) -> None:
        """The slot job: one run, never two at once, then the next plan."""
        if not self._guard.acquire(blocking=False):
            log.warning("a run is still going; not starting another", extra={"event": "skip"})
            return
        try:
            self.idle.clear()
            self._end_recompress()
            assert self.pending is not None
            window = self.pending.window
            self._run_window = window
            self._stop_reason = self._stopping  # a SIGTERM just before the start counts
            ctx = RunContext.new(window, self.bucket, lambda: self._stop_reason,
                                 planned_start=self.pending.at,
                                 deadline=self.pending.deadline)
            self.run_id = ctx.run_id
            self.apply_rate()
            log.info("run started", extra={"event": "run_started",
                                           "window": window.isoformat()})
            run = run_slot(self.config, ctx)
            log.info("run %s: %d bytes read, %d sent in %.1f s%s", run.status, run.bytes_read,
                     run.bytes_sent, run.duration_s, f" ({run.error})" if run.error else "",
                     extra={"event": "run_finished", "status": run.status,
                            "snapshot_ids": run.snapshot_ids})
            # Stopped by SIGTERM (a restart, a host going down), the night is not done
            # with: started again before the deadline, the agent runs it again at once,
            # reusing the packs this run stored. The deadline's stop (overrun) is final.
            self._finish(run, window, handled=self._stop_reason != "SIGTERM")
            if self._stop_reason is None:
                drill_if_due(self.config)  # after the night's backup, still one at a time
        except Exception as err:  # a bug must not end the nights: logged, and planned on
            log.error("run failed unexpectedly: %r", err, exc_info=True,
                      extra={"event": "run_finished", "status": "failed"})
        finally:
            self._run_window = None
            self.run_id = "-"
            self._guard.release()
            self.idle.set()
        if self._stop_reason != "SIGTERM":
            self.plan()

    def _finish(self, run: LastRun, window: datetime, *, handled: bool = True) -> None:
        self.state.record(run, window, handled=handled)
        self.write_metrics()

    def write_metrics(self) -> None:
        if not self.config.metrics_file:
            return
        from drsync.agent.status import age_s, newest_restorable, spool_depth
        from drsync.wal.spool import Spool

        try:
            spool = Spool.if_present(self.config.settings.wal_spool())
            rpo_s = None
            try:
                point, _basis = newest_restorable(open_agent_repo(self.config.settings), spool)
                rpo_s = age_s(point, _now())
            except DrsyncError as err:  # the store is down: the run's failure still shows
                log.warning("metrics: RPO unknown: %s", err, extra={"event": "metrics"})
            depth = spool_depth(spool)
            write_metrics(self.config.metrics_file, MetricsInput(
                self.config.tenant, self.state, depth.files, depth.bytes, rpo_s))
        except DrsyncError as err:
            log.error("metrics not written: %s", err, extra={"event": "metrics"})

    # -- signals and the main loop -----------------------------------------------------

    def reload(self) -> None:
        try:
            config, slot = self._load()
        except DrsyncError as err:
            log.error("reload refused, keeping the old config: %s", err,
                      extra={"event": "reload"})
            return
        if config.tenant != self.config.tenant:  # its state, lock and jobs are the old one's
            log.error("reload refused, keeping the old config: [agent] tenant changed from "
                      "%r to %r; restart the agent to run as another tenant",
                      self.config.tenant, config.tenant, extra={"event": "reload"})
            return
        self.config, self.slot = config, slot
        log.info("reloaded config and schedule", extra={"event": "reload"})
        if self.idle.is_set():
            self.plan()

    def _wait_for_tokens(self, seconds: float) -> None:
        self._released.wait(seconds)

    def stop(self) -> None:
        from apscheduler.schedulers import SchedulerNotRunningError

        log.info("SIGTERM: stopping after the current pack", extra={"event": "stop"})
        self._stop_reason = self._stopping = "SIGTERM"
        # The pack in flight is finished without the slot's rate limit: at 2 Mbit/s a
        # 16 MiB pack would take over a minute, past systemd's stop timeout; one pack at
        # link speed is the price of stopping within seconds.
        self.bucket.set_rate(0)
        self._released.set()
        self._end_recompress()
        with contextlib.suppress(SchedulerNotRunningError):  # not started: _on_start stops it
            self.scheduler.shutdown(wait=False)

    def _on_start(self, _event: Any) -> None:
        if self._stopping:
            self.scheduler.shutdown(wait=False)

    def _hold_the_tenant(self) -> None:
        """One agent a tenant and state directory: a second one (the same config started
        twice) would run the slot again and share the job store. Held (flock) until exit."""
        home = agent_dir(self.config.settings.state_dir, self.config.tenant)
        path = home / "agent.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RepositoryLocked(f"another agent (pid {holder}) already runs tenant "
                                   f"{self.config.tenant} with state in {home}; not starting "
                                   "a second one") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd  # kept open: the lock lasts as long as this process

    def run_forever(self) -> int:
        """Plan, then block in the scheduler until SIGTERM; 0 once the run in flight ended."""
        def in_thread(action: Callable[[], None]) -> Any:
            # handlers only start a thread: the scheduler's locks are never taken in a handler
            return lambda _sig, _frame: threading.Thread(target=action, daemon=True).start()

        self._hold_the_tenant()
        signal.signal(signal.SIGTERM, in_thread(self.stop))
        signal.signal(signal.SIGINT, in_thread(self.stop))
        signal.signal(signal.SIGHUP, in_thread(self.reload))
        _AGENTS[self.config.tenant] = self
        log.info("agent started for tenant %s, schedule %s", self.config.tenant,
                 self.config.schedule, extra={"event": "started"})
        from apscheduler.events import EVENT_SCHEDULER_START

        self.scheduler.add_listener(self._on_start, EVENT_SCHEDULER_START)
        self.plan()
        self.scheduler.start()
        self.idle.wait()
        log.info("agent stopped", extra={"event": "stopped"})
        return 0
