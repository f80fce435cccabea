"""[agent] settings (one ConfigError naming file and key) and the runner in-process."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from drsync.agent.config import agent_config
from drsync.agent.runner import RunContext, run_slot
from drsync.errors import ConfigError
from drsync.repo import Repository
from drsync.repo.keys import KeyFile, Secret
from drsync.settings import AgentJob, resolve
from drsync.store import open_store
from drsync.store.throttle import TokenBucket
from drsync.testing import make_repository


def _settings(tmp_path: Path, text: str) -> object:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return resolve(str(path), {}, {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "s")})


@pytest.mark.parametrize(("text", "message"), [
    ('[agent]\ntenant = 3\n', "key 'agent.tenant' must be a string"),
    ('[agent]\ntenantt = "x"\n', "unknown key 'agent.tenantt'"),
    ('[agent]\nrpo_hours = -1\n', "key 'agent.rpo_hours' must not be negative"),
    ('[agent]\ndrill_every_days = -7\n', "key 'agent.drill_every_days' must not be negative"),
    ('[agent]\ndrill_every_days = "weekly"\n', "key 'agent.drill_every_days' must be a number"),
    ('[[agent.job]]\nsource = "mysql"\ntarget = "x"\n', "'agent.job[0].source' must be one of"),
    ('[[agent.job]]\nsource = "sqlite"\ntarget = ["a", "b"]\n', "takes one target"),
    ('[[agent.job]]\nsource = "files"\n', "'agent.job[0].target' must be a non-empty"),
    ('[[agent.job]]\nsource = "files"\ntarget = "a"\nname = "x"\n', "'agent.job[0].name'"),
    ('[[agent.job]]\nsource = "files"\ntarget = "a"\nwhen = 1\n', "'agent.job[0].when'"),
    ('[agent]\njob = 3\n', "'agent.job' must be an array of tables"),
])
def test_bad_agent_settings_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path, text)
    assert str(tmp_path / "agent.toml") in str(info.value) and message in str(info.value)


def test_agent_settings_resolve_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    s = _settings(tmp_path, '[agent]\ntenant = "Saga"\nschedule = "sched.json"\nrpo_hours = 6\n'
                  'ship_wal = true\n[[agent.job]]\nsource = "files"\ntarget = ["a", "/b"]\n'
                  '[[agent.job]]\nsource = "stdin-command"\ntarget = "pg_dumpall"\n'
                  'name = "all.sql"\ntags = ["x"]\n')
    config = agent_config(s)  # type: ignore[arg-type]
    assert (config.tenant, config.schedule, config.rpo_hours, config.ship_wal) == \
        ("Saga", str(tmp_path / "sched.json"), 6.0, True)
    assert config.jobs == (AgentJob("files", (str(tmp_path / "a"), "/b")),
                           AgentJob("stdin-command", ("pg_dumpall",), "all.sql", ("x",)))


def test_agent_section_missing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[agent\] tenant is required"):
        agent_config(_settings(tmp_path, 'repo = "r"\n'))  # type: ignore[arg-type]


def test_runner_runs_jobs_in_order_and_a_failed_one_does_not_stop_the_next(
        tmp_path: Path) -> None:
    make_repository(str(tmp_path / "repo"), key_file_path=tmp_path / "k")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("hello")
    s = _settings(tmp_path, 'repo = "repo"\nkey_file = "k"\n[agent]\ntenant = "Saga"\n'
                  'schedule = "s.json"\n'
                  '[[agent.job]]\nsource = "stdin-command"\ntarget = "false"\n'
                  '[[agent.job]]\nsource = "stdin-command"\ntarget = "printf registry"\n'
                  'name = "dump.txt"\n'
                  '[[agent.job]]\nsource = "files"\ntarget = "f"\n')
    config = agent_config(s)  # type: ignore[arg-type]
    bucket = TokenBucket(1.0)
    bucket.set_rate(0)
    run = run_slot(config, RunContext.new(datetime.now().astimezone(), bucket, lambda: None))
    assert run.status == "failed" and "exited with 1" in (run.error or "")
    assert len(run.snapshot_ids) == 2 and run.bytes_read == len("registry") + 5
    assert run.bytes_sent == bucket.taken > 0
    repo = Repository.open(open_store(str(tmp_path / "repo")),
                           Secret(key_file=KeyFile.load(str(tmp_path / "k"))))
    assert sorted(repo.snapshot_ids()) == sorted(run.snapshot_ids)  # none of the failed one
    kinds = sorted(repo.load_snapshot(i).source_kind for i in run.snapshot_ids)
    assert kinds == ["files", "stdin"]
