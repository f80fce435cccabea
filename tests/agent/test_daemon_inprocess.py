"""The daemon's wiring in-process (the scheduler is built, never started): one slot job
with max_instances=1, rate and deadline jobs at the schedule's times, the overlap guard."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from drsync.agent.daemon import Agent
from drsync.settings import Settings, resolve
from tests.agent.conftest import Tenant


def _agent(tenant: Tenant) -> Agent:
    def load() -> Settings:
        return resolve(str(tenant.config), {}, tenant.env)

    return Agent(load)


def test_plan_schedules_the_slot_rates_and_deadline(tenant: Tenant) -> None:
    opening = tenant.write_schedule(opens_in_s=600, start_s=60, end_s=120, deadline_s=300,
                                    sends=[(60, 90, 8.0), (90, 120, 4.0)], max_mbit=8.0)
    tenant.write_config()
    agent = _agent(tenant)
    agent.plan()
    jobs = {job.id: job for job in agent.scheduler.get_jobs()}
    assert set(jobs) == {"slot", "rate-60.0", "rate-90.0", "rate-120.0", "deadline"}
    slot = jobs["slot"]
    assert slot.max_instances == 1 and slot.func_ref == "drsync.agent.daemon:slot_job"
    assert slot.trigger.run_date == (opening + timedelta(seconds=60)).astimezone()
    assert jobs["deadline"].trigger.run_date == (opening + timedelta(seconds=300)).astimezone()
    assert jobs["rate-90.0"].trigger.run_date == (opening + timedelta(seconds=90)).astimezone()


def test_a_second_run_never_starts_while_one_is_going(
        tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    tenant.write_schedule(opens_in_s=600)
    tenant.write_config()
    agent = _agent(tenant)
    agent.plan()
    with agent._guard, caplog.at_level(logging.WARNING, logger="drsync.agent"):
        agent.run_now()
    assert "a run is still going" in caplog.text
    assert agent.state.last_run is None and not Path(agent.state.path).exists()
    assert tenant.snapshots() == []


def test_reload_with_a_bad_schedule_keeps_the_old_one(
        tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    tenant.write_schedule(opens_in_s=600)
    tenant.write_config()
    agent = _agent(tenant)
    old = agent.slot
    tenant.schedule.write_text('{"format": "drsync-schedule", "version": 7}')
    with caplog.at_level(logging.ERROR, logger="drsync.agent"):
        agent.reload()
    assert agent.slot == old and "reload refused" in caplog.text
    assert "version: 7 is not supported" in caplog.text
    opening = tenant.write_schedule(opens_in_s=900)
    agent.reload()
    assert agent.slot.window_start == opening.strftime("%H:%M:%S") != old.window_start


def test_a_due_drill_runs_after_the_slot_and_is_recorded(tenant: Tenant) -> None:
    from datetime import datetime

    from drsync.agent.runner import drill_if_due
    from drsync.repo import Repository
    from drsync.repo.drills import load_drills
    from drsync.repo.keys import KeyFile, Secret
    from drsync.store import open_store

    tenant.write_schedule(opens_in_s=600)
    tenant.write_config(extra="")
    text = tenant.config.read_text().replace("[agent]\n", "[agent]\ndrill_every_days = 7\n")
    tenant.config.write_text(text)
    agent = _agent(tenant)
    assert agent.config.drill_every_days == 7
    agent.plan()
    agent.run_now()  # no drill on record: one runs after the backup
    repo = Repository.open(open_store(str(tenant.repo)),
                           Secret(key_file=KeyFile.load(str(tenant.key))))
    (drill,) = load_drills(repo)
    assert drill["status"] == "ok" and drill["tenant"] == "Nobeoka"
    assert drill["snapshot_id"] == tenant.snapshots()[-1]
    assert [c["name"] for c in drill["checks"]] == [
        "snapshot", "restore", "sqlite integrity_check", "table counts"]
    drills_in_catalog = [r for r in tenant.catalog_runs() if r["kind"] == "drill"]
    assert [r["id"] for r in drills_in_catalog] == [drill["drill_id"]]

    agent.run_now()  # the last drill is minutes old: none is due
    assert len(load_drills(repo)) == 1 and len(tenant.snapshots()) == 2
    # A week later it is due again.
    assert drill_if_due(agent.config, datetime.now().astimezone() + timedelta(days=6)) is None
    later = drill_if_due(agent.config, datetime.now().astimezone() + timedelta(days=7))
    assert later is not None and later.ok
    assert len(load_drills(repo)) == 2


def test_a_job_whose_target_cannot_be_read_is_refused_at_start_and_fails_alone_at_night(
        tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    """A MariaDB job naming a defaults file that is not there: the agent started without a
    word, and at the slot the error escaped the run: the other jobs never ran, nothing
    was recorded, and no later night was planned. Found by an edge hunt."""
    from drsync.errors import ConfigError

    cnf = tenant.root / "mariadb.cnf"
    jobs = (f'[[agent.job]]\nsource = "mariadb-dump"\ntarget = "mariadb:///registry"\n'
            f'defaults_file = "{cnf}"\n\n'
            f'[[agent.job]]\nsource = "sqlite"\ntarget = "{tenant.db}"\n')
    tenant.write_schedule(opens_in_s=600)
    tenant.write_config(jobs=jobs)
    with pytest.raises(ConfigError) as refused:
        _agent(tenant)
    assert str(refused.value).startswith(f"config file {tenant.config}: agent.job[0] "
                                         f"(mariadb-dump): --defaults-file {cnf}")
    cnf.write_text("[client]\nuser = nobody\n")
    agent = _agent(tenant)
    agent.plan()
    cnf.unlink()  # gone by the night (a config management run, a wrong mount)
    with caplog.at_level(logging.ERROR, logger="drsync.agent"):
        agent.run_now()
    last = agent.state.last_run
    assert last is not None and last.status == "failed"
    assert last.error is not None and "--defaults-file" in last.error
    assert len(last.snapshot_ids) == 1 and tenant.snapshots() == last.snapshot_ids  # SQLite's
    assert {job.id for job in agent.scheduler.get_jobs()} >= {"slot"}  # the next night
    runs = tenant.catalog_runs()
    assert [r["status"] for r in runs if r["kind"] == "backup"] == ["ok"]


def test_a_reload_that_changes_the_tenant_is_refused(
        tenant: Tenant, caplog: pytest.LogCaptureFixture) -> None:
    """The state, lock and slot job are the tenant's: after such a reload the slot failed
    with a KeyError and no night ran again. Found by an edge hunt."""
    import json

    tenant.write_schedule(opens_in_s=600)
    doc = json.loads(tenant.schedule.read_text())
    doc["tenants"]["Saga"] = doc["tenants"]["Nobeoka"]  # a slot for both: only the tenant
    tenant.schedule.write_text(json.dumps(doc))
    tenant.write_config()
    agent = _agent(tenant)
    tenant.config.write_text(tenant.config.read_text().replace('tenant = "Nobeoka"',
                                                               'tenant = "Saga"'))
    with caplog.at_level(logging.ERROR, logger="drsync.agent"):
        agent.reload()
    assert agent.config.tenant == "Nobeoka"
    assert "tenant changed from 'Nobeoka' to 'Saga'; restart the agent" in caplog.text
