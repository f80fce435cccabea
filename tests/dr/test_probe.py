"""Opening a tenant from the fleet file: the fleet's escrow key, S3 store options from the
config (moto's server over real HTTP), bytes to fetch."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from drsync.dr.probe import probe_tenant
from drsync.plan.fleetfile import load_fleet
from drsync.repo.escrow import EscrowKeyPair
from drsync.settings import resolve, store_options
from drsync.store import open_store
from drsync.testing import backup_bytes, make_repository

FLEET = """
[window]
minutes = 60
[[link]]
name = "wan"
mbit_per_s = 20
[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
{extra}
[[tenant]]
name = "Nobeoka"
repo = "{repo}"
"""


def _fleet(tmp_path: Path, repo: str, extra: str = "") -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.format(repo=repo, extra=extra))
    return path


def test_escrow_key_opens_a_tenant_without_key_file(tmp_path: Path) -> None:
    repo = make_repository(str(tmp_path / "repo"), key_file_path=tmp_path / "t.key")
    pair = EscrowKeyPair.generate()
    repo.add_escrow(pair.public)
    snap = backup_bytes(repo, b"registry" * 1000)
    (tmp_path / "op").mkdir()
    pair.write(tmp_path / "op")
    fleet = load_fleet(_fleet(tmp_path, "repo", '[keys]\nescrow_key = "op/escrow.key"\n'))
    settings = resolve(None, {}, {"HOME": str(tmp_path)})
    probe = probe_tenant(fleet, fleet.tenants[0], settings)
    assert probe.reason is None and probe.point is not None
    assert probe.point.snapshot_id == snap.id and probe.point.source_kind == "stdin"
    packs = sum(p.stat().st_size for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file())
    assert probe.point.bytes == packs

    other = tmp_path / "other"
    other.mkdir()
    EscrowKeyPair.generate().write(other)
    fleet = load_fleet(_fleet(tmp_path, "repo", '[keys]\nescrow_key = "other/escrow.key"\n'))
    probe = probe_tenant(fleet, fleet.tenants[0], settings)
    assert probe.point is None and "opens no wrapping" in str(probe.reason)

    fleet = load_fleet(_fleet(tmp_path, "repo"))
    probe = probe_tenant(fleet, fleet.tenants[0], settings)
    assert probe.point is None
    assert probe.reason == f"{tmp_path / 'fleet.toml'}: tenant.Nobeoka: no key_file and no " \
        "[keys] escrow_key"


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Imported here, not at collection: moto reads S3_UPLOAD_PART_MIN_SIZE when first
    # imported, and tests/store/conftest.py sets it during collection.
    from moto.server import ThreadedMotoServer

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_s3_tenant_opened_with_the_configs_store_options(tmp_path: Path,
                                                         moto_endpoint: str) -> None:
    bucket = f"drsync-{secrets.token_hex(6)}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket=bucket)
    (tmp_path / "s3.credentials").write_text(
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    config = tmp_path / "dc2.toml"
    config.write_text(f'[s3]\nendpoint_url = "{moto_endpoint}"\nregion = "us-east-1"\n'
                      'credentials_file = "s3.credentials"\naddressing_style = "path"\n')
    settings = resolve(str(config), {}, {"HOME": str(tmp_path)})
    url = f"s3://{bucket}/nobeoka"
    repo = make_repository(open_store(url, store_options(settings)),
                           key_file_path=tmp_path / "t.key")
    snap = backup_bytes(repo, os.urandom(50_000))
    path = _fleet(tmp_path, url)
    path.write_text(path.read_text() + 'key_file = "t.key"\n')
    fleet = load_fleet(path)
    probe = probe_tenant(fleet, fleet.tenants[0], settings)
    assert probe.reason is None and probe.point is not None
    assert probe.point.snapshot_id == snap.id and probe.point.bytes > 50_000
    # Without the config's store options the same tenant cannot be reached.
    bare = resolve(None, {}, {"HOME": str(tmp_path)})
    probe = probe_tenant(fleet, fleet.tenants[0], bare)
    assert probe.point is None and probe.reason
