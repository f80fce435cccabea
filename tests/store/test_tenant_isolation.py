"""Two tenants in one bucket, each under its own prefix: neither key opens the other's
repository (one line, exit 11), and neither repository's objects leave its prefix.

moto does not enforce IAM or bucket policies by default, so the example policy in the README
(each agent Put/Get/List on its own prefix, no DeleteObject) is not exercised here; what is
tested is the cryptographic half: the key.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import boto3

from drsync.settings import resolve, store_options
from drsync.testing import make_repository


def _tenant(base: Path, endpoint: str, bucket: str, name: str) -> Path:
    base.mkdir()
    config = base / "drsync.toml"
    config.write_text(f'repo = "s3://{bucket}/{name}"\nkey_file = "{name}.key"\n'
                      f'catalog = "catalog.sqlite"\n'
                      f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n')
    settings = resolve(str(config), {}, os.environ)
    assert settings.repo is not None
    make_repository(settings.repo, f"{name} passphrase", base / f"{name}.key",
                    options=store_options(settings))
    return config


def _run(drsync_bin: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([drsync_bin, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, cwd=config.parent,
                          env={**os.environ, "XDG_STATE_HOME": str(config.parent / "state")})


def test_each_tenants_key_fails_cleanly_on_the_others_repository(
        drsync_bin: str, moto_endpoint: str, bucket_on: Callable[..., str],
        tmp_path: Path) -> None:
    bucket = bucket_on()
    configs = {name: _tenant(tmp_path / name, moto_endpoint, bucket, name)
               for name in ("nobeoka", "saga")}
    data = tmp_path / "registry.csv"
    data.write_bytes(b"resident,address\n" * 2000)
    for config in configs.values():
        done = _run(drsync_bin, config, "backup", str(data))
        assert done.returncode == 0, done.stderr
    for name, other in (("nobeoka", "saga"), ("saga", "nobeoka")):
        own = configs[name]
        # This tenant's config (store, credentials) with the other tenant's repository URL.
        crossed = _run(drsync_bin, own, "--repo", f"s3://{bucket}/{other}", "snapshots")
        lines = crossed.stderr.strip().splitlines()
        assert crossed.returncode == 11, crossed.stderr
        assert len(lines) == 1 and "wrong key file" in lines[0] and other in lines[0]
        # The other way in: this tenant's passphrase (an empty --key-file overrides the
        # config's key file, so the passphrase is what is tried).
        guessed = subprocess.run(
            [drsync_bin, "--config", str(own), "--repo", f"s3://{bucket}/{other}",
             "--key-file", "", "snapshots"], capture_output=True, text=True, timeout=120,
            cwd=own.parent, env={**os.environ, "DRSYNC_PASSWORD": f"{name} passphrase",
                                 "XDG_STATE_HOME": str(own.parent / "state")})
        assert guessed.returncode == 11 and "wrong passphrase" in guessed.stderr
        assert len(guessed.stderr.strip().splitlines()) == 1
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    assert keys and all(k.split("/", 1)[0] in configs for k in keys)
    assert {k.split("/", 1)[0] for k in keys if "/data/" in k} == set(configs)
