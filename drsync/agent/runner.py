"""One slot's run: the configured jobs in order through the backup service, then wal-ship,
then the ``[retention]`` policy (forget) when one is set; each job recorded by the backup
service itself, in the catalog's journal and as a sealed run record in the store (tenant,
planned slot, deadline), summed up as one ``LastRun``. A missed slot is recorded the same
two ways.

A job stopped by the deadline is ``overrun`` and ends the run; one stopped by SIGTERM is
``failed`` ("stopped by SIGTERM"); either way its finished packs stay for the next run.
A job that fails does not keep the next job from running.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, BinaryIO

from drsync.agent.config import AgentConfig
from drsync.agent.policy import NightChoice, choose_night
from drsync.agent.state import LastRun
from drsync.backup import BackupRequest, estimate_backup, run_backup
from drsync.catalog import RunJournal
from drsync.errors import ConfigError, DrsyncError, RunInterrupted, SourceError
from drsync.repo import Repository
from drsync.repo.keys import KeyFile, Secret, read_password_file
from drsync.settings import AgentJob, Settings, store_for
from drsync.store.throttle import TokenBucket

__all__ = ["RunContext", "check_jobs", "open_agent_repo", "recompress_between_slots",
           "run_slot"]

log = logging.getLogger("drsync.agent")


def open_agent_repo(settings: Settings, upload: TokenBucket | None = None) -> Repository:
    """The tenant's repository, opened unattended: a key file, else a password file."""
    if settings.key_file:
        secret = Secret(key_file=KeyFile.load(settings.key_file), source=settings.key_file)
    elif settings.password_file:
        secret = Secret(passphrase=read_password_file(settings.password_file),
                        source=settings.password_file)
    else:
        raise ConfigError("the agent runs unattended: set key_file (or password_file) in "
                          "the config")
    return Repository.open(store_for(settings, upload=upload), secret, warn=log.warning)


@dataclass
class RunContext:
    run_id: str
    window: datetime
    bucket: TokenBucket
    should_stop: Callable[[], str | None]
    planned_start: datetime | None = None  # the schedule's slot start, recorded with each run
    deadline: datetime | None = None
    statuses: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_read: int = 0

    @staticmethod
    def new(window: datetime, bucket: TokenBucket, should_stop: Callable[[], str | None], *,
            planned_start: datetime | None = None,
            deadline: datetime | None = None) -> RunContext:
        return RunContext(uuid.uuid4().hex, window, bucket, should_stop, planned_start,
                          deadline)


class _CommandOutput(io.RawIOBase):
    """A stdin-command job's stdout; at its end, the command's exit status is checked,
    so a command that failed fails the job before any snapshot is written."""

    def __init__(self, command: str, proc: subprocess.Popen[bytes]) -> None:
        self._command = command
        self._proc = proc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        stdout: Any = self._proc.stdout  # a BufferedReader (bufsize -1)
        n: int = stdout.readinto(buffer)
        if not n:
            code = self._proc.wait()
            if code != 0:
                raise SourceError(f"command {self._command!r} exited with {code}")
        return n


@contextmanager
def _command_stdout(command: str) -> Iterator[BinaryIO]:
    try:
        proc = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE)
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot run {command!r}: {err}") from None
    try:
        yield io.BufferedReader(_CommandOutput(command, proc))
    finally:
        if proc.poll() is None:
            proc.kill()  # stopped before the end of its output
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()


def _request(job: AgentJob, cfg: AgentConfig, ctx: RunContext | None,
             spec_extra: dict[str, Any] | None = None) -> BackupRequest:
    kind = {"files": "paths", "sqlite": "sqlite", "pg-dump": "pg_dump", "pg-base": "pg_base",
            "mariadb-dump": "mariadb_dump",
            "stdin-command": "stdin_name"}[job.source]
    value: Any = list(job.targets) if kind == "paths" else job.targets[0]
    if kind == "stdin_name":
        value = job.name or "stdin"
    settings = cfg.settings
    return BackupRequest(**{kind: value}, tags=[*settings.tags, *job.tags], host=settings.host,
                         compression_level=settings.compression_level,
                         workers=settings.workers, pg_bindir=settings.pg_bindir,
                         pg_base_method=settings.pg_base_method,
                         pg_base_reread=settings.pg_base_reread,
                         should_stop=ctx.should_stop if ctx else None, tenant=cfg.tenant,
                         mariadb_defaults_file=job.defaults_file,
                         planned_start=ctx.planned_start if ctx else None,
                         deadline=ctx.deadline if ctx else None,
                         spec_extra=dict(spec_extra or {}))


def check_jobs(cfg: AgentConfig) -> None:
    """Each job's target as its backup will read it (a MariaDB DSN, a defaults file that
    is there...): ConfigError naming the job, at start and on reload, not at 2 a.m."""
    where = f"config file {cfg.settings.source}" if cfg.settings.source else "the settings"
    for i, job in enumerate(cfg.jobs):
        try:
            _request(job, cfg, None).describe()
        except DrsyncError as err:
            raise ConfigError(f"{where}: agent.job[{i}] ({job.source}): {err}") from None


def _label(job: AgentJob) -> str:
    return f"{job.source} {' '.join(job.targets)}"


def _job_status(err: BaseException) -> tuple[str, str]:
    if isinstance(err, RunInterrupted):
        if err.reason == "deadline":
            return "overrun", "the tenant's deadline passed; " + str(err)
        return "failed", str(err)
    return "failed", str(err) if isinstance(err, DrsyncError) else repr(err)


def _run_job(job: AgentJob, cfg: AgentConfig, repo: Repository, ctx: RunContext,
             journal: RunJournal, spec_extra: dict[str, Any] | None = None) -> bool:
    """One job, recorded; False when the run must end (interrupted). A job whose target
    cannot be read is one failed job: the others run, the night is recorded."""
    read = [0]
    label = _label(job)

    def progress(n: int) -> None:
        read[0] += n

    try:
        req = _request(job, cfg, ctx, spec_extra)
        label = req.describe()
        log.info("job %s started", label, extra={"event": "job_started"})
        if job.source == "stdin-command":
            with _command_stdout(job.targets[0]) as stream:
                req.stdin = stream
                result = run_backup(repo, req, catalog=journal, progress=progress)
        else:
            result = run_backup(repo, req, catalog=journal, progress=progress)
    except Exception as err:
        status, message = _job_status(err)
        ctx.statuses.append(status)
        ctx.errors.append(f"{label}: {message}")
        ctx.bytes_read += read[0]
        log.error("job %s %s: %s", label, status, message,
                  extra={"event": "job_finished", "status": status})
        return not isinstance(err, RunInterrupted)
    status = "partial" if result.partial else "ok"
    ctx.statuses.append(status)
    ctx.snapshots.append(result.snapshot_id)
    ctx.bytes_read += result.bytes_read
    problems = "; ".join(f"{p.path}: {p.reason}" for p in result.problems if p.partial)
    if problems:
        ctx.errors.append(problems)
    log.info("job %s %s: snapshot %s, %d bytes read, %.3g MB/s", label, status,
             result.snapshot_id[:8], result.bytes_read, result.mb_per_s,
             extra={"event": "job_finished", "status": status,
                    "snapshot_id": result.snapshot_id})
    return True


def _ship_wal(cfg: AgentConfig, repo: Repository, ctx: RunContext, journal: RunJournal) -> None:
    from drsync.wal.ship import ship_spool
    from drsync.wal.spool import Spool

    spool = Spool.if_present(cfg.settings.wal_spool())
    if spool is None:
        return
    record = journal.start_run(repo.url, "wal-ship", str(spool.dir),
                               cfg.settings.host or socket.gethostname(), tenant=cfg.tenant)
    try:
        result = ship_spool(spool, repo.store, repo.key)
    except DrsyncError as err:
        ctx.statuses.append("failed")
        ctx.errors.append(f"wal-ship: {err}")
        journal.finish_run(record, "failed", error=str(err))
        log.error("wal-ship failed: %s", err, extra={"event": "wal_ship"})
        return
    journal.finish_run(record, "ok", bytes_read=result.raw_bytes,
                       bytes_added=result.bytes)
    log.info("wal-ship: %d WAL file(s) shipped", len(result.shipped), extra={"event": "wal_ship"})


def ship_between_slots(cfg: AgentConfig, bucket: TokenBucket) -> int:
    """One pass of wal-ship outside the slot (``[agent] wal_interval_s``), at the rate the
    daemon set for this moment; a pass that shipped something, or failed, is on record.
    Returns how many WAL files were shipped."""
    from drsync.wal.ship import ship_spool
    from drsync.wal.spool import Spool

    spool = Spool.if_present(cfg.settings.wal_spool())
    if spool is None or not spool.names():
        return 0
    journal = RunJournal(cfg.settings.catalog or "", cfg.settings.state_dir)
    host = cfg.settings.host or socket.gethostname()
    started = datetime.now().astimezone()
    try:
        repo = open_agent_repo(cfg.settings, bucket)
        result = ship_spool(spool, repo.store, repo.key)
    except DrsyncError as err:
        record = journal.start_run(cfg.settings.repo or "", "wal-ship", str(spool.dir), host,
                                   tenant=cfg.tenant, started=started)
        journal.finish_run(record, "failed", error=str(err))
        log.error("wal-ship between slots failed: %s", err, extra={"event": "wal_ship"})
        return 0
    if result.shipped:
        record = journal.start_run(repo.url, "wal-ship", str(spool.dir), host,
                                   tenant=cfg.tenant, started=started)
        journal.finish_run(record, "ok", bytes_read=result.raw_bytes,
                           bytes_added=result.bytes)
        log.info("wal-ship between slots: %d WAL file(s) shipped", len(result.shipped),
                 extra={"event": "wal_ship"})
    return len(result.shipped)


def recompress_between_slots(cfg: AgentConfig,
                             on_start: Callable[[subprocess.Popen[str]], None] | None = None,
                             ) -> dict[str, Any] | None:
    """One ``wal-recompress`` pass over the spool outside the slot (``[agent]
    recompress_every_s``), as a child process: nice 19 and the idle I/O class then apply
    to it alone, and the daemon can end it at once when the slot starts (the reseal is
    safe to kill at any moment). A pass that recompressed something, or failed, is on
    record; one ended by the slot is not a failure. Returns its JSON summary."""
    from drsync.wal.spool import Spool

    spool = Spool.if_present(cfg.settings.wal_spool())
    if spool is None or not spool.names():
        return None
    argv = [sys.executable, "-m", "drsync"]
    if cfg.settings.source:
        argv += ["--config", str(cfg.settings.source)]
    argv += ["wal-recompress", "--json", "--spool", str(spool.dir),
             "--cpu-budget", str(cfg.recompress_cpu_budget)]
    journal = RunJournal(cfg.settings.catalog or "", cfg.settings.state_dir)
    host = cfg.settings.host or socket.gethostname()
    started = datetime.now().astimezone()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if on_start is not None:
        on_start(proc)
    out, err = proc.communicate()
    if proc.returncode < 0:  # ended by the daemon (the slot starts, SIGTERM)
        log.info("wal-recompress ended for the slot", extra={"event": "wal_recompress"})
        return None
    if proc.returncode != 0:
        line = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        record = journal.start_run(cfg.settings.repo or "", "wal-recompress", str(spool.dir),
                                   host, tenant=cfg.tenant, started=started)
        journal.finish_run(record, "failed", error=line)
        log.error("wal-recompress failed: %s", line, extra={"event": "wal_recompress"})
        return None
    doc: dict[str, Any] = json.loads(out)
    if doc.get("recompressed"):
        record = journal.start_run(cfg.settings.repo or "", "wal-recompress", str(spool.dir),
                                   host, tenant=cfg.tenant, started=started)
        journal.finish_run(record, "ok", bytes_read=doc["bytes_before"],
                           bytes_added=doc["bytes_after"])
        log.info("wal-recompress: %d WAL file(s), %d bytes saved", doc["recompressed"],
                 doc["saved_bytes"], extra={"event": "wal_recompress"})
    return doc


def _apply_retention(cfg: AgentConfig, repo: Repository, ctx: RunContext) -> None:
    """``[retention]`` after the night's jobs (forget only: prune, which deletes, runs
    from the secondary side); a failure is logged and reported, never the backup's."""
    from drsync.repo.forget import forget

    try:
        policy = cfg.settings.retention_policy()
        if policy.empty:
            return
        journal = RunJournal(cfg.settings.catalog or "", cfg.settings.state_dir)
        # Removed on purpose: the catalog's rollback check must not report them missing.
        result = forget(repo, policy,
                        on_removed=lambda sid: journal.record_forgotten(repo.url, [sid]))
    except DrsyncError as err:
        ctx.errors.append(f"forget: {err}")
        log.error("forget failed: %s", err, extra={"event": "forget"})
        return
    kept = sum(len(g.kept) for g in result.groups)
    log.info("forget: %d snapshot(s) kept, %d removed", kept, len(result.removed),
             extra={"event": "forget"})


def overall(statuses: list[str]) -> str:
    for status in ("overrun", "failed", "partial"):
        if status in statuses:
            return status
    return "ok"


def run_slot(cfg: AgentConfig, ctx: RunContext) -> LastRun:
    """Every job in order, then wal-ship (when configured and not stopped)."""
    started, clock = datetime.now().astimezone(), time.monotonic()
    journal = RunJournal(cfg.settings.catalog or "", cfg.settings.state_dir)
    sent_before = ctx.bucket.taken
    try:
        repo = open_agent_repo(cfg.settings, ctx.bucket)
    except DrsyncError as err:
        ctx.statuses.append("failed")
        ctx.errors.append(str(err))
        repo = None
        _record_not_run(cfg, ctx, journal, err)
    night: NightChoice | None = None
    if repo is not None:
        night = _choose_night(cfg, repo, ctx, journal)
        base_snapshots: list[str] = []
        for job in cfg.jobs:
            if ctx.should_stop():
                break
            base = job.source == "pg-base"
            if base and night is not None and night.ship == "wal":
                log.info("job %s skipped: %s", _request(job, cfg, ctx).describe(),
                         night.reason, extra={"event": "job_skipped"})
                continue
            extra = ({"wal_restarts": True}
                     if base and night is not None and night.ship == "delta" else None)
            before = len(ctx.snapshots)
            if not _run_job(job, cfg, repo, ctx, journal, extra):
                break
            if base and len(ctx.snapshots) > before:
                base_snapshots.append(ctx.snapshots[-1])
        if cfg.ship_wal and not ctx.should_stop():
            if night is not None and night.ship == "delta" and base_snapshots:
                _drop_superseded_wal(cfg, repo, base_snapshots[-1])
            _ship_wal(cfg, repo, ctx, journal)
        if not ctx.should_stop():
            _apply_retention(cfg, repo, ctx)
    duration = time.monotonic() - clock
    return LastRun(run_id=ctx.run_id, status=overall(ctx.statuses), window=ctx.window.isoformat(),
                   started=started.isoformat(),
                   finished=datetime.now().astimezone().isoformat(),
                   snapshot_ids=ctx.snapshots, bytes_read=ctx.bytes_read,
                   bytes_sent=ctx.bucket.taken - sent_before, duration_s=round(duration, 3),
                   error=ctx.errors[0][:500] if ctx.errors else None,
                   night=night.to_json() if night is not None else None)


def _record_not_run(cfg: AgentConfig, ctx: RunContext, journal: RunJournal,
                    err: DrsyncError) -> None:
    """The repository did not open (the store is down, the key is wrong): each job of the
    slot is still a run on record, failed, so that the catalog, the fleet view and the
    next plan see the night (in the journal only: the store took nothing)."""
    host = cfg.settings.host or socket.gethostname()
    line = (str(err).strip().splitlines() or [repr(err)])[0]
    for job in cfg.jobs:
        try:
            source = _request(job, cfg, ctx).describe()
        except DrsyncError:
            source = job.source
        try:
            run_id = journal.start_run(cfg.settings.repo or "", "backup", source, host,
                                       tenant=cfg.tenant, planned_start=ctx.planned_start,
                                       deadline=ctx.deadline)
            journal.finish_run(run_id, "failed",
                               error=f"not run: the repository did not open: {line}"[:500])
        except DrsyncError as journal_err:
            log.error("run not recorded: %s", journal_err, extra={"event": "journal"})
            return


def _spooled_bytes(cfg: AgentConfig) -> int:
    from drsync.wal.spool import Spool

    spool = Spool.if_present(cfg.settings.wal_spool())
    return spool.usage()[1] if spool is not None else 0


def _choose_night(cfg: AgentConfig, repo: Repository, ctx: RunContext,
                  journal: RunJournal) -> NightChoice | None:
    """For a tenant without PITR that ships WAL: the day's WAL or a new base backup's delta
    (a dry run of its job), whichever puts fewer bytes on the link; on record as a run of
    kind ``night`` (its source says the choice, bytes read the WAL, bytes added the
    delta). None: the tenant ships both, as configured, and nothing is estimated."""
    if cfg.pitr or not cfg.ship_wal:
        return None
    base_jobs = [j for j in cfg.jobs if j.source == "pg-base"]
    wal_bytes = _spooled_bytes(cfg)
    has_base = _has_base(repo)
    delta: int | None = None
    if base_jobs and wal_bytes and cfg.rpo_hours >= 24 and has_base:
        try:
            delta = estimate_backup(repo, _request(base_jobs[0], cfg, ctx)).bytes_to_add
        except DrsyncError as err:
            log.warning("estimating the base backup's delta failed: %s", err,
                        extra={"event": "night_choice"})
    choice = choose_night(pitr=cfg.pitr, rpo_hours=cfg.rpo_hours,
                          has_base_job=bool(base_jobs), wal_bytes=wal_bytes,
                          delta_bytes=delta, has_base=has_base)
    log.info("tonight ships %s: %s", choice.ship, choice.reason,
             extra={"event": "night_choice", "ship": choice.ship,
                    "wal_bytes": choice.wal_bytes, "delta_bytes": choice.delta_bytes})
    record = journal.start_run(repo.url, "night", f"ships {choice.ship}: {choice.reason}",
                               cfg.settings.host or socket.gethostname(), tenant=cfg.tenant,
                               planned_start=ctx.planned_start, deadline=ctx.deadline)
    journal.finish_run(record, "ok", bytes_read=choice.wal_bytes or 0,
                       bytes_added=choice.delta_bytes or 0)
    return choice


def _has_base(repo: Repository) -> bool:
    return any(s.source_kind == "pg_base" for s in repo.snapshots())


def _drop_superseded_wal(cfg: AgentConfig, repo: Repository, snapshot_id: str) -> None:
    """After tonight's base backup, the spooled WAL from before its start is not needed
    by a tenant without PITR (the base restores on its own, with the WAL from its start):
    removed from the spool, and said so in the log."""
    from drsync.wal.spool import Spool

    spool = Spool.if_present(cfg.settings.wal_spool())
    if spool is None:
        return
    start_wal = str(repo.find_snapshot(snapshot_id).source_spec.get("start_wal") or "")
    if len(start_wal) < 24:
        return
    dropped = [n for n in spool.names()
               if not n.endswith(".history") and n[:24] < start_wal[:24]]
    freed = 0
    for name in dropped:
        with contextlib.suppress(FileNotFoundError):
            freed += spool.path(name).stat().st_size
        spool.remove(name)
    log.info("dropped %d spooled WAL file(s), %d bytes, from before base backup %s "
             "(starts at %s)", len(dropped), freed, snapshot_id[:8], start_wal,
             extra={"event": "wal_superseded", "files": len(dropped), "bytes": freed})


def drill_if_due(cfg: AgentConfig, now: datetime | None = None) -> Any:
    """After a slot: a restore drill (drsync.drill) when ``policy.drill_due`` says one is
    due, recorded in the store and the catalog; the DrillResult, or None (not due, drills
    off, or the repository could not be read: logged)."""
    from drsync.agent.policy import drill_due
    from drsync.drill import run_drill
    from drsync.repo.drills import load_drills

    if cfg.drill_every_days <= 0:
        return None
    now = now or datetime.now().astimezone()
    try:
        # A drill proves what the store holds, not the local cache's copies of documents.
        repo = open_agent_repo(replace(cfg.settings, cache=False))
        drills = load_drills(repo)
    except DrsyncError as err:
        log.error("drill not considered: %s", err, extra={"event": "drill"})
        return None
    last = datetime.fromisoformat(drills[-1]["started"]) if drills else None
    reason = drill_due(now, last, cfg.drill_every_days)
    if reason is None:
        return None
    log.info("drill due: %s", reason, extra={"event": "drill_started"})
    catalog = _open_catalog(cfg.settings)
    try:
        result = run_drill(repo, tenant=cfg.tenant, host=cfg.settings.host,
                           pg_bindir=cfg.settings.pg_bindir, catalog=catalog)
    finally:
        if catalog is not None:
            catalog.close()
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.ok]
    log.log(logging.INFO if result.ok else logging.ERROR, "drill %s: RTO %.1f s%s",
            result.status, result.rto_s, f" ({failed[0]})" if failed else "",
            extra={"event": "drill_finished", "status": result.status,
                   "drill_id": result.drill_id})
    return result


def _open_catalog(settings: Settings) -> Any:
    """The catalog, or None (logged) when it cannot be opened: the drill record in the
    store stands, and ``catalog rebuild`` imports it."""
    from drsync.catalog.db import Catalog

    if not settings.catalog:
        return None
    try:
        return Catalog(settings.catalog, state_dir=settings.state_dir)
    except DrsyncError as err:
        log.error("drill not recorded in the catalog: %s", err, extra={"event": "drill"})
        return None


def record_missed(cfg: AgentConfig, window: datetime, reason: str, *,
                  planned_start: datetime | None = None,
                  deadline: datetime | None = None) -> LastRun:
    """A slot that never ran, on record like any run: in the catalog's journal and, when
    the store can be reached, as a sealed run record there."""
    from drsync import __version__
    from drsync.repo.runs import save_run

    run_id = uuid.uuid4().hex
    now = datetime.now().astimezone().isoformat()
    host = cfg.settings.host or socket.gethostname()
    record: dict[str, Any] = {
        "run_id": run_id, "tenant": cfg.tenant, "host": host, "kind": "backup",
        "source": f"agent slot {window.isoformat()}", "status": "missed",
        "planned_start": (planned_start or window).isoformat(),
        "deadline": deadline.isoformat() if deadline else None,
        "started": now, "finished": now, "error": reason, "drsync_version": __version__,
    }
    repo_url = cfg.settings.repo or ""
    try:
        repo = open_agent_repo(cfg.settings)
        repo_url = repo.url
        save_run(repo, record)
    except DrsyncError as err:
        log.error("missed slot not recorded in the store: %s", err,
                  extra={"event": "run_record"})
    RunJournal(cfg.settings.catalog or "", cfg.settings.state_dir).record_run(repo_url, record)
    return LastRun(run_id=run_id, status="missed", window=window.isoformat(), started=now,
                   finished=now, error=reason)
