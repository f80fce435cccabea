"""Every command reaches an S3 store whose endpoint, credentials and CA bundle are only in
the config file: no AWS_* variable, no ~/.aws, moto over HTTPS with a private CA."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from drsync.errors import ConfigError
from drsync.settings import resolve, store_for, store_options
from drsync.store.s3_credentials import read_credentials_file
from drsync.testing import make_repository
from tests.store.tls_moto import tls_moto_server

SEG = "000000010000000000000001"
ACCESS_KEY = "AKIADRSYNCFROMFILE"
CREDENTIALS = ("[default]\naws_access_key_id = AKIANOTTHISONE\naws_secret_access_key = no\n\n"
               f"[drsync]\naws_access_key_id = {ACCESS_KEY}\n"
               "aws_secret_access_key = secret-from-the-file\n")


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with tls_moto_server(tmp_path_factory.mktemp("tls")) as server:
        yield server


class Host:
    """A host's config directory and a command runner with no AWS_* in its environment."""

    def __init__(self, base: Path, endpoint: str, ca: Path, bucket: str,
                 extra: str = "") -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        shutil.copy(ca, base / "ca.pem")
        (base / "s3.credentials").write_text(CREDENTIALS)
        self.config = base / "drsync.toml"
        self.config.write_text(
            f'repo = "s3://{bucket}/tenant"\nkey_file = "tenant.key"\n'
            f'catalog = "catalog.sqlite"\n{extra}'
            f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
            'credentials_file = "s3.credentials"\nprofile = "drsync"\nca_bundle = "ca.pem"\n')
        (base / "home").mkdir(exist_ok=True)
        self.env = {**{k: v for k, v in os.environ.items()
                       if not k.startswith(("AWS_", "DRSYNC_"))},
                    "HOME": str(base / "home"), "XDG_STATE_HOME": str(base / "state")}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from drsync.entry import main; main()",
                               *args], env=self.env, capture_output=True, text=True,
                              timeout=120, cwd=self.base)


@pytest.fixture
def tenant(tls_s3: tuple[str, Path], tmp_path: Path) -> Host:
    endpoint, ca = tls_s3
    bucket = "drsync-" + os.urandom(6).hex()
    boto3.client("s3", endpoint_url=endpoint, verify=str(ca), region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="x").create_bucket(Bucket=bucket)
    host = Host(tmp_path / "tenant", endpoint, ca, bucket)
    settings = resolve(str(host.config), {}, host.env)
    assert settings.repo is not None
    make_repository(settings.repo, "pw", host.base / "tenant.key",
                    options=store_options(settings))
    return host


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_archive_ship_fetch_runs_and_pitr_range_use_the_config_files_store_settings(
        tenant: Host, tls_s3: tuple[str, Path], tmp_path: Path) -> None:
    import json

    segment = tenant.base / SEG
    segment.write_bytes(os.urandom(8192) * 4)
    # The first push into a new (default) spool fetches the key wrapping from the store.
    _ok(tenant("wal-push", "--config", str(tenant.config), str(segment)))
    spooled = list((tenant.base / "state" / "drsync" / "wal-spool").glob(f"*/{SEG}"))
    assert len(spooled) == 1
    # pitr-range counts what is still in the default spool.
    doc = json.loads(_ok(tenant("--config", str(tenant.config), "pitr-range", "--json")))
    assert (doc["wal_in_spool"], doc["wal_in_store"]) == (1, 0)
    _ok(tenant("wal-ship", "--config", str(tenant.config)))
    assert json.loads(_ok(tenant("--config", str(tenant.config), "runs", "--json"))) == []

    # A restore host: same store settings, and a [wal] spool that cannot be created there.
    endpoint, ca = tls_s3
    bucket = tenant.config.read_text().split("s3://")[1].split("/")[0]
    restore = Host(tmp_path / "restore", endpoint, ca, bucket,
                   extra='[wal]\nspool = "/proc/drsync-no-such-dir/spool"\n')
    shutil.copy(tenant.base / "tenant.key", restore.base / "tenant.key")
    _ok(restore("wal-fetch", "--config", str(restore.config), SEG, str(restore.base / "got")))
    assert (restore.base / "got").read_bytes() == segment.read_bytes()
    assert not Path("/proc/drsync-no-such-dir").exists()
    # A WAL file that does not exist: exit 1 and nothing in PostgreSQL's log.
    done = restore("wal-fetch", "--config", str(restore.config), "00000002.history",
                   str(restore.base / "history"))
    assert (done.returncode, done.stderr) == (1, "")
    assert not (restore.base / "history").exists()


def test_without_the_ca_bundle_the_store_is_not_trusted(tenant: Host) -> None:
    tenant.config.write_text(tenant.config.read_text().replace('ca_bundle = "ca.pem"\n', ""))
    done = tenant("--config", str(tenant.config), "--key-file", "tenant.key", "snapshots")
    assert done.returncode == 14
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate" in lines[0].lower(), lines


def test_requests_are_signed_with_the_credentials_files_profile(tenant: Host) -> None:
    store: Any = store_for(resolve(str(tenant.config), {}, tenant.env))
    seen: list[str] = []

    def capture(request: Any, **_kw: Any) -> None:
        auth = request.headers.get("Authorization")
        seen.append(auth.decode() if isinstance(auth, bytes) else str(auth))

    from drsync.store.capabilities import capability
    from drsync.store.s3 import S3Store

    inner = capability(store, S3Store)  # inside the cache and retry wrappers
    inner.client.meta.events.register("before-send.s3", capture)
    assert [info.key for info in store.list("keys/")]
    assert seen and all(f"Credential={ACCESS_KEY}/" in auth for auth in seen), seen


@pytest.mark.parametrize(("text", "profile", "message"), [
    (None, None, "does not exist"),
    (CREDENTIALS, "other", "has no profile [other]"),
    ("[drsync]\naws_access_key_id = A\n", "drsync", "profile [drsync]: no aws_secret_access_key"),
    ("aws_access_key_id = A\n", None, "is malformed"),
    (b"[default]\naws_access_key_id = \xff\n", None, "is not UTF-8"),
])
def test_credentials_file_problems_name_the_file_and_profile(
        tmp_path: Path, text: str | bytes | None, profile: str | None, message: str) -> None:
    path = tmp_path / "creds"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_credentials_file(str(path), profile)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_broken_credentials_file_is_one_config_error_line(tenant: Host) -> None:
    (tenant.base / "s3.credentials").write_text("[drsync]\naws_access_key_id = A\n")
    done = tenant("--config", str(tenant.config), "--key-file", "tenant.key", "snapshots")
    assert done.returncode == 4
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tenant.base / "s3.credentials") in lines[0], lines
