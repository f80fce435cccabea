"""PITR from an S3 repository whose endpoint, credentials and CA bundle are only in the
config file: archiving through `wal-push --config` from the first segment on, recovery
through the restore_command drsync writes (which carries `--config`), every drsync process
running as the `postgres` user with no AWS_* variable and no ~/.aws."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

from drsync.testing_postgres import PG_USER, chown_to_cluster_user, make_cluster_dir
from tests.pg.pitr import restore_between, restored_ids, stamped_inserts
from tests.store.tls_moto import tls_moto_server

pytestmark = pytest.mark.slow


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_pitr_from_s3_with_every_store_setting_only_in_the_config(
        tenant_factory: Any, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)  # the clusters inherit this process's environment
    side = make_cluster_dir("drs3-")
    monkeypatch.setenv("HOME", str(side))  # no ~/.aws for anyone
    try:
        with tls_moto_server(side) as (endpoint, ca):
            bucket = "drsync-" + os.urandom(6).hex()
            boto3.client("s3", endpoint_url=endpoint, verify=str(ca), region_name="us-east-1",
                         aws_access_key_id="x", aws_secret_access_key="x"
                         ).create_bucket(Bucket=bucket)
            creds = side / "s3.credentials"
            creds.write_text("[tenant]\naws_access_key_id = AKIATENANT\n"
                             "aws_secret_access_key = from-the-config-only\n")
            creds.chmod(0o600)
            chown_to_cluster_user(side)
            if os.geteuid() == 0:
                assert creds.stat().st_uid == pwd.getpwnam(PG_USER).pw_uid
            tenant = tenant_factory(
                {"track_commit_timestamp": "on"}, repo_url=f"s3://{bucket}/tenant",
                config_extra=f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
                             f'credentials_file = "{creds}"\nprofile = "tenant"\n'
                             f'ca_bundle = "{ca}"\n')
            postmaster = int((tenant.cluster.data / "postmaster.pid").read_text().split()[0])
            assert not [k for k in _environment_of(postmaster) if k.startswith("AWS_")]

            tenant.cluster.psql("CREATE TABLE stamped (id serial PRIMARY KEY, note text)")
            base = tenant.drsync_json("backup", "--pg-base", tenant.cluster.dsn)
            rows = stamped_inserts(tenant, 12)
            tenant.switch_and_ship()
            stored = {o["Key"].rsplit("/", 1)[-1] for o in boto3.client(
                "s3", endpoint_url=endpoint, verify=str(ca), region_name="us-east-1",
                aws_access_key_id="x", aws_secret_access_key="x").list_objects_v2(
                Bucket=bucket, Prefix="tenant/wal/").get("Contents", [])}
            assert "000000010000000000000001" in stored  # archived from the first segment on

            # The config is given as a flag, not in the environment the server inherits:
            # only the restore_command's own --config can bring the store settings to it.
            expected, restored = restore_between(
                tenant, base["snapshot_id"], rows, 5, scratch_dir,
                global_args=("--config", str(tenant.config)), env={"DRSYNC_CONFIG": ""})
            try:
                assert restored_ids(restored) == expected
                auto = (scratch_dir / "data" / "postgresql.auto.conf").read_text()
                command = next(ln for ln in auto.splitlines()
                               if ln.startswith("restore_command"))
                assert f"--config {tenant.config} " in command
                assert "AWS_" not in command and "--spool" in command
                restored_env = _environment_of(
                    int((scratch_dir / "data" / "postmaster.pid").read_text().split()[0]))
                assert not [k for k in restored_env if k.startswith("AWS_")]
                assert not restored_env.get("DRSYNC_CONFIG")
            finally:
                restored.stop()
    finally:
        shutil.rmtree(side, ignore_errors=True)
