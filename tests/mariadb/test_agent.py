"""The agent's mariadb-dump job, with its option file, and the binlogs shipped in the slot."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from drsync.agent.config import agent_config
from drsync.agent.runner import RunContext, run_slot
from drsync.errors import ConfigError
from drsync.settings import resolve
from drsync.store.throttle import TokenBucket
from drsync.testing_mariadb import MariadbServer
from tests.mariadb.tenant import MariadbTenant, poll


def _config(tmp_path: Path, text: str) -> object:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return agent_config(resolve(str(path), {}, {"HOME": str(tmp_path),  # type: ignore[arg-type]
                                                 "XDG_STATE_HOME": str(tmp_path / "s")}))


def test_a_defaults_file_belongs_to_a_mariadb_dump_job(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'agent.job\[0\].defaults_file' is the option file"):
        _config(tmp_path, '[agent]\ntenant = "Saga"\nschedule = "s.json"\n[[agent.job]]\n'
                'source = "sqlite"\ntarget = "a.db"\ndefaults_file = "m.cnf"\n')


def test_the_agent_dumps_mariadb_and_ships_its_binlogs(mariadb: MariadbServer, drsync_bin: str,
                                                       tmp_path: Path) -> None:
    tenant = MariadbTenant(mariadb, drsync_bin, tmp_path)
    mariadb.sql("CREATE DATABASE registry; CREATE TABLE registry.t (id INT) ENGINE=InnoDB")
    tenant.start_receiver()
    try:
        mariadb.sql("INSERT INTO registry.t VALUES (1); FLUSH BINARY LOGS")
        poll("a binlog sealed", tenant.spooled)
        tenant.stop_receiver()
    finally:
        tenant.kill_receiver()
    (tmp_path / "mariadb.cnf").write_text(f"[client]\nuser=root\nhost=127.0.0.1\n"
                                          f"port={mariadb.port}\n")
    config = _config(tmp_path, 'repo = "repo"\nkey_file = "tenant.key"\n[wal]\nspool = "spool"\n'
                     '[agent]\ntenant = "Saga"\nschedule = "s.json"\nship_wal = true\n'
                     '[[agent.job]]\n'
                     'source = "mariadb-dump"\ntarget = "mariadb:///registry"\n'
                     'defaults_file = "mariadb.cnf"\n')
    bucket = TokenBucket(1.0)
    bucket.set_rate(0)
    run = run_slot(config, RunContext.new(datetime.now().astimezone(), bucket,  # type: ignore[arg-type]
                                          lambda: None))
    assert run.status == "ok", run.error
    (snap,) = tenant.repository.snapshots()
    assert snap.source_kind == "mariadb_dump" and snap.source_spec["databases"] == ["registry"]
    assert tenant.spooled() == []  # shipped in the slot
    assert any(i.key.startswith("wal/binlog.") for i in tenant.repository.store.list("wal/"))
    # A change after the dump, its binlog sealed and shipped: the newest restorable point
    # is its end, for `agent status` and the RPO metric as for `pitr-range` (they took the
    # dump's age: a tenant shipping binlogs every minute looked hours behind). Edge hunt.
    import time

    from drsync.agent.status import newest_restorable
    from drsync.wal.spool import Spool

    time.sleep(1.2)  # binlog times have one-second resolution: a change after the dump's
    tenant.start_receiver()
    try:
        mariadb.sql("INSERT INTO registry.t VALUES (2); FLUSH BINARY LOGS")
        poll("a binlog after the dump sealed", tenant.spooled)
        tenant.stop_receiver()
    finally:
        tenant.kill_receiver()
    point, basis = newest_restorable(tenant.repository, Spool.if_present(tenant.spool))
    assert basis == "binlog" and point is not None and point >= snap.time[:19]
    doc = tenant.drsync_json("pitr-range")
    assert doc["rpo_s"] is not None and doc["rpo_s"] < 300
