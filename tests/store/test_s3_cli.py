"""drsync end to end on S3: the installed executable, moto's server on loopback, and the fault
proxy between them (boto3 finds the endpoint in AWS_ENDPOINT_URL, as in production)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drsync.repo import RepoConfig
from drsync.store import S3Options, StoreOptions
from drsync.testing import make_repository
from tests.store.faultproxy import FaultProxy

MiB = 1 << 20


class S3Cli:
    def __init__(self, exe: str, base: Path, endpoint: str, bucket: str) -> None:
        self.exe = exe
        config = base / "drsync.toml"
        config.write_text("[store]\nconnections = 2\nretry_deadline_s = 20\n\n"
                          "[s3]\npart_size_mib = 1\n")
        self.env = {**os.environ, "DRSYNC_REPO": f"s3://{bucket}/registry",
                    "DRSYNC_PASSWORD": "correct horse", "DRSYNC_CONFIG": str(config),
                    "DRSYNC_CATALOG": str(base / "catalog.sqlite"),
                    "AWS_ENDPOINT_URL": endpoint}
        self.config = config

    def __call__(self, *args: str, stdin: bytes | None = None,
                 ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([self.exe, *args], input=stdin, capture_output=True,
                              env=self.env, timeout=240)
        if ok:
            assert done.returncode == 0, done.stderr.decode()
        return done


@pytest.fixture
def s3cli(drsync_bin: str, tmp_path: Path, proxy: FaultProxy,
          bucket_on: Callable[..., str]) -> S3Cli:
    bucket = bucket_on()
    cli = S3Cli(drsync_bin, tmp_path, proxy.url, bucket)
    make_repository(f"s3://{bucket}/registry", "correct horse",
                    config=RepoConfig(pack_size=1 << 20),
                    options=StoreOptions(s3=S3Options(endpoint_url=proxy.url)))
    return cli


def test_init_refuses_a_non_empty_prefix_that_is_no_repository(
        drsync_bin: str, tmp_path: Path, moto_endpoint: str,
        bucket_on: Callable[..., str]) -> None:
    import boto3

    bucket = bucket_on()
    boto3.client("s3", endpoint_url=moto_endpoint).put_object(
        Bucket=bucket, Key="registry/someone-elses-file", Body=b"x")
    cli = S3Cli(drsync_bin, tmp_path, moto_endpoint, bucket)
    done = cli("init", ok=False)
    assert done.returncode == 2
    assert "is not empty and is not a drsync repository" in done.stderr.decode()
    again = S3Cli(drsync_bin, tmp_path, moto_endpoint, bucket)
    again.env["DRSYNC_REPO"] = f"s3://{bucket}/other-tenant"
    again("init")
    assert again("init", ok=False).returncode == 10  # exists
    # A prefix inside that repository is refused: its objects would lie in the other's.
    inner = S3Cli(drsync_bin, tmp_path, moto_endpoint, bucket)
    inner.env["DRSYNC_REPO"] = f"s3://{bucket}/other-tenant/sub"
    nested = inner("init", ok=False)
    assert nested.returncode == 2
    assert nested.stderr.decode().strip() == (
        f"drsync: error: s3://{bucket}/other-tenant/sub lies inside the repository "
        f"s3://{bucket}/other-tenant: choose a directory or bucket prefix outside every "
        "repository")


@pytest.mark.slow
def test_backup_and_restore_through_a_faulty_link_are_byte_identical(
        s3cli: S3Cli, proxy: FaultProxy, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB) + b"municipal registry " * 100_000
    proxy.delay = 0.001
    proxy.cut_after_up = 2 * MiB  # the link drops mid-pack; the retry rides it out
    backup = s3cli("backup", "--stdin-name", "registry.dump", "--json", stdin=data)
    assert json.loads(backup.stdout)["bytes_read"] == len(data)
    assert proxy.cut_after_up is None  # the fault fired
    proxy.cut_after_down = 1 * MiB
    restored = s3cli("restore", "latest", "--stdout").stdout
    assert restored == data
    check = s3cli("check", "--read-data")
    assert b"no errors" in check.stdout


@pytest.mark.slow
def test_a_cut_that_outlasts_the_deadline_fails_cleanly_and_resumes(
        s3cli: S3Cli, proxy: FaultProxy, tmp_path: Path) -> None:
    s3cli.config.write_text(s3cli.config.read_text().replace("retry_deadline_s = 20",
                                                             "retry_deadline_s = 1"))
    data = os.urandom(12 * MiB)
    proxy.cut_after_up = 6 * MiB  # half way, and the link stays down
    proxy.down_after_cut = True
    failed = s3cli("backup", "--stdin-name", "registry.dump", stdin=data, ok=False)
    assert failed.returncode == 14
    lines = failed.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drsync: error:"), lines
    assert "gave up" in lines[0]
    first_run_up = proxy.bytes_up

    proxy.heal()
    proxy.down_after_cut = False
    report = json.loads(s3cli("check", "--json").stdout)
    assert report["ok"], report
    assert report["uploads"] and all(u["stale"] for u in report["uploads"])
    before = proxy.bytes_up
    s3cli("backup", "--stdin-name", "registry.dump", stdin=data)
    resumed_up = proxy.bytes_up - before
    # Packs that arrived are adopted, cut uploads finished from the spool: what is sent
    # twice is at most the part each connection had in flight (1 MiB parts, 2
    # connections), plus requests and the small index and snapshot objects.
    resent = first_run_up + resumed_up - len(data)
    assert first_run_up >= 6 * MiB
    assert resent < 2.5 * MiB, (first_run_up, resumed_up, resent)
    assert s3cli("restore", "latest", "--stdout").stdout == data
    after = json.loads(s3cli("check", "--json").stdout)
    assert after["ok"] and after["uploads"] == []
