"""forget and prune on S3 (moto's server over HTTP), with objects under Object Lock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from drsync.repo import RepoConfig
from drsync.store import S3Options, StoreOptions
from drsync.testing import make_repository
from tests.store.test_s3_cli import S3Cli

pytestmark = pytest.mark.slow


def test_forget_and_prune_skip_and_report_what_object_lock_retains(
        drsync_bin: str, tmp_path: Path, moto_endpoint: str,
        bucket_on: Callable[..., str]) -> None:
    bucket = bucket_on(object_lock=True)
    cli = S3Cli(drsync_bin, tmp_path, moto_endpoint, bucket)
    make_repository(f"s3://{bucket}/registry", "correct horse",
                    config=RepoConfig(chunk_avg=4096, chunk_min=1024, chunk_max=16384,
                                      pack_size=1 << 20),
                    options=StoreOptions(s3=S3Options(endpoint_url=moto_endpoint)))
    locked = tmp_path / "locked.toml"
    locked.write_text(cli.config.read_text()
                      + 'object_lock_mode = "governance"\nobject_lock_days = 1\n')
    versions = [os.urandom(300 << 10) for _ in range(3)]
    # The first night is written under retention; the next two are not.
    cli("--config", str(locked), "backup", "--stdin-name", "db.dump", stdin=versions[0])
    for data in versions[1:]:
        cli("backup", "--stdin-name", "db.dump", stdin=data)
    forgot = json.loads(cli("forget", "--keep-last", "1", "--json").stdout)
    first, second = (s["id"] for s in forgot["groups"][0]["removed"][::-1])
    assert forgot["locked"] == [first] and forgot["removed"] == [second]
    human = cli("forget", "--keep-last", "1").stderr.decode()
    assert f"snapshot {first[:8]} is retained by the store's object lock" in human
    done = cli("prune", "--max-unused", "0%", "--json")
    report = json.loads(done.stdout)
    assert report["packs_deleted"] >= 1  # the second night's, not retained
    assert report["locked"] and all(k.startswith("index/") for k in report["locked"])
    assert report["index_files_written"] >= 1
    assert cli("check", "--read-data").returncode == 0
    snaps = json.loads(cli("snapshots", "--json").stdout)
    assert [s["id"] for s in snaps] == [first, snaps[1]["id"]]
    assert cli("restore", first, "--stdout").stdout == versions[0]
    assert cli("restore", "latest", "--stdout").stdout == versions[2]
    again = json.loads(cli("prune", "--json").stdout)
    assert again["packs_deleted"] == 0 and cli("check", "--read-data").returncode == 0
