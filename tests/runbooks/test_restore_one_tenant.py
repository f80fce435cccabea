"""restore-one-tenant.md: PostgreSQL from S3 (moto over HTTPS) configured only by a config
file, restore_command running as postgres with its own credentials, and a first start that
fails because the port is taken."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest

from drsync.testing_postgres import PG_USER, Cluster, free_port, make_cluster_dir
from tests.runbooks.conftest import run_book
from tests.store.tls_moto import tls_moto_server

pytestmark = pytest.mark.slow


def test_restore_one_tenant_runbook(tenant_factory: Any, scratch_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    side = make_cluster_dir("drrb-")
    monkeypatch.setenv("HOME", str(side))  # no ~/.aws for anyone
    try:
        with tls_moto_server(side) as (endpoint, ca):
            bucket = "drsync-" + os.urandom(6).hex()
            boto3.client("s3", endpoint_url=endpoint, verify=str(ca), region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x"
                         ).create_bucket(Bucket=bucket)
            creds = side / "agent.credentials"
            creds.write_text("[tenant]\naws_access_key_id = AKIATENANT\n"
                             "aws_secret_access_key = agent-side\n")
            s3 = (f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
                  f'profile = "tenant"\nca_bundle = "{ca}"\n')
            from drsync.testing_postgres import chown_to_cluster_user

            chown_to_cluster_user(side)
            tenant = tenant_factory(repo_url=f"s3://{bucket}/nobeoka",
                                    config_extra=s3 + f'credentials_file = "{creds}"\n')
            tenant.cluster.psql("CREATE TABLE resident (id serial PRIMARY KEY, name text)")
            tenant.drsync("backup", "--pg-base", tenant.cluster.dsn)
            tenant.cluster.psql("INSERT INTO resident (name) SELECT 'resident ' || g "
                                "FROM generate_series(1, 500) g")
            tenant.cluster.psql("INSERT INTO resident (name) VALUES ('the last commit')")
            tenant.switch_and_ship()

            # The restore host's copy of the tenant's config: root's files, relative paths.
            host = side / "restore-host"
            host.mkdir(mode=0o755)
            shutil.copy(tenant.key, host / "nobeoka.key")
            (host / "s3.credentials").write_text("[tenant]\naws_access_key_id = AKIADC2\n"
                                                 "aws_secret_access_key = restore-side\n")
            for secret in ("nobeoka.key", "s3.credentials"):
                os.chown(host / secret, 0, 0)
                (host / secret).chmod(0o600)
            config = host / "nobeoka.toml"
            config.write_text(f'repo = "s3://{bucket}/nobeoka"\nkey_file = "nobeoka.key"\n'
                              f'tenant = "Nobeoka"\n{s3}credentials_file = "s3.credentials"\n')
            config.chmod(0o600)

            taken, retry = free_port(), free_port()
            occupant = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            occupant.bind(("127.0.0.1", taken))
            occupant.listen()
            exe_dir = str(Path(tenant.exe).parent)
            env = {"PATH": f"{exe_dir}:{tenant.bindir}:{os.environ['PATH']}",
                   "HOME": str(side), "LANG": "C.UTF-8",
                   "XDG_STATE_HOME": str(side / "state"),
                   "DRSYNC_CONFIG": str(config), "PGDATA_NEW": str(scratch_dir / "data"),
                   "PGPORT_NEW": str(taken), "PGPORT_RETRY": str(retry),
                   "PGSOCKET_NEW": str(scratch_dir)}
            incident = side / "incident"
            incident.mkdir()
            try:
                done = run_book("restore-one-tenant.md", env, incident, timeout=600)
            finally:
                occupant.close()
            assert done.returncode == 0, done.stdout + done.stderr
            out = done.stdout
            assert out.splitlines()[:2] == [str(host / "nobeoka.key"),
                                            str(host / "s3.credentials")]
            postgres = pwd.getpwnam(PG_USER).pw_uid
            assert all((host / f).stat().st_uid == postgres
                       for f in ("nobeoka.key", "s3.credentials"))
            assert "restore exit 0" not in out and "restore exit " in out
            assert "Address already in use" in out  # the reason, from PostgreSQL's log
            assert f"port {taken} is taken: moving the restored server to {retry}" in out
            assert "in recovery: false" in out and f"port: {retry}" in out
            auto = (scratch_dir / "data" / "postgresql.auto.conf").read_text()
            command = next(ln for ln in auto.splitlines() if ln.startswith("restore_command"))
            assert f"--config {config} " in command and "AWS_" not in command
            restored = Cluster(scratch_dir, tenant.bindir, retry)
            try:
                assert restored.psql("SELECT count(*) FROM resident") == "501"
                assert restored.psql("SELECT name FROM resident ORDER BY id DESC LIMIT 1") \
                    == "the last commit"
            finally:
                restored.stop()
    finally:
        shutil.rmtree(side, ignore_errors=True)
