"""start_cluster's wait for the end of recovery, on a real server that stops in it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from drsync.errors import SourceError
from drsync.sources.postgres.physical import start_cluster
from drsync.sources.postgres.tools import PgTools
from drsync.testing_postgres import Cluster, as_cluster_user, chown_to_cluster_user


def test_a_server_that_stops_after_taking_connections_in_recovery_ends_the_wait(
        cluster: Cluster, tmp_path: Path) -> None:
    """pg_ctl -w returns once a hot standby takes connections; a server that then stops
    before its recovery ends (as one whose target lies past the archived WAL) ends the
    wait with one line naming it, instead of probing until the timeout."""
    cluster.stop()
    with open(cluster.data / "postgresql.conf", "a") as fh:
        fh.write("restore_command = 'false'\nhot_standby = on\n")
    (cluster.data / "standby.signal").touch()
    chown_to_cluster_user(cluster.data / "standby.signal")
    # Every command start_cluster runs goes through this prefix, which notes it: the
    # server is stopped only once a probe has run, i.e. after pg_ctl -w has returned.
    calls = tmp_path / "calls"
    wrapper = tmp_path / "as-cluster-user"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec "$@"\n')
    wrapper.chmod(0o755)
    prefix = [str(wrapper), *as_cluster_user([])]

    def stop_after_the_first_probe() -> None:
        for _ in range(600):
            if calls.exists() and "pg_is_in_recovery" in calls.read_text():
                cluster.stop("immediate")
                return
            time.sleep(0.1)

    stopper = threading.Thread(target=stop_after_the_first_probe)
    stopper.start()
    try:
        with pytest.raises(SourceError) as info:
            start_cluster(cluster.data, run_as=prefix, tools=PgTools(cluster.bindir),
                          timeout=600)
    finally:
        stopper.join()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"PostgreSQL did not start in {cluster.data} (it stopped in "
                              "recovery): ")
    assert message.endswith(f"(log: {cluster.data / 'drsync-restore.log'})")
    assert "still recovering" not in message  # the wait ended on the dead postmaster
    assert not (cluster.data / "postmaster.pid").exists() or not os.path.exists(
        f"/proc/{(cluster.data / 'postmaster.pid').read_text().split()[0]}")
