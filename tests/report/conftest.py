"""A real fleet for the report: local repositories with real backups and drills, a second
copy of one tenant on S3 (moto's threaded server) under Object Lock, and the catalog the
backups and drills reported into, with earlier nights' run records as agents report them.

The known mix (what each tenant shows is the golden file tests/report/golden/):

Kobayashi   compliant: nightly, an old point, escrow, an S3 copy under Object Lock in
            another zone, a drill that validated the data
Ebino       three nights missed in the period: an RPO gap
Kushima     backed up, never drilled; its tax dataset's source never backed up
Nichinan    its drill failed (a damaged pack)
Takachiho   never drilled, under a DRILL exemption that expired, and a ZERO-ERRORS one
            that has not
Shiiba      no repository configured, nothing ever reported
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.catalog.db import Catalog
from drsync.drill import run_drill
from drsync.repo import Repository, Secret
from drsync.repo.escrow import EscrowKeyPair
from drsync.repo.keys import KeyFile
from drsync.store import S3Options, StoreOptions, open_store
from drsync.testing import make_repository

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
LOCAL = ("Kobayashi", "Ebino", "Kushima", "Nichinan", "Takachiho")


@dataclass
class ReportFleet:
    exe: str
    base: Path
    fleet: Path
    catalog: Path
    signing_key: Path
    public_key: Path
    period: str
    now: dt.datetime
    endpoint: str

    def env(self) -> dict[str, str]:
        return {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "DRSYNC_CATALOG": str(self.catalog)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], capture_output=True, text=True,
                              env=self.env(), timeout=120)



@pytest.fixture(scope="module")
def aws_env(moto_endpoint: str) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        mp.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
        yield moto_endpoint


def _record(tenant: str, started: dt.datetime, status: str = "ok") -> dict[str, object]:
    return {"run_id": secrets.token_hex(16), "tenant": tenant, "host": f"{tenant}-db",
            "kind": "backup", "source": "files:/srv/registry", "status": status,
            "started": started.isoformat(),
            "finished": (started + dt.timedelta(minutes=12)).isoformat(),
            "bytes_read": 50_000_000, "bytes_added": 3_000_000, "bytes_sent": 2_000_000,
            "snapshot_id": secrets.token_hex(32) if status == "ok" else None,
            "error": None if status == "ok" else "store unreachable: connect timed out"}


def _backdate(repo: Repository, days: float) -> None:
    """A snapshot as the backup of ``days`` ago would have left it (same tree, its time)."""
    snap = repo.snapshots()[-1]
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()
    repo.save_snapshot(replace(snap, time=when, start_time=when, id=""))


def _damage_a_pack(repo_dir: Path) -> None:
    pack = max((p for p in (repo_dir / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


FLEET = """
[window]
start = "23:00"
minutes = 180

[[link]]
name = "lgwan"
mbit_per_s = 20

[defaults]
compress_mb_per_s = 40
compression_ratio = 3
daily_mb = 300
rpo_hours = 26
rto_hours = 4

[report]
primary_zone = "miyazaki-coast"
secondary_site = "Saga DC"
secondary_zone = "saga-inland"
retention_days = 30
require_immutable = false
attestations = "attestations.jsonl"
signing_key = "keys/report-signing.key"

[costs]
yearly_yen = 12000000
split = {{equal = 0.4, population = 0.6}}

[[tenant]]
name = "Kobayashi"
code = "452050"
population = 42000
repo = "repos/kobayashi"
key_file = "keys/kobayashi.key"
datasets = [{{name = "住民記録", business = "住民基本台帳事務", tier = 1, source = "/src"}}]
[tenant.report]
require_immutable = true
[[tenant.report.copies]]
name = "tokyo"
repo = "s3://{bucket}/kobayashi"
key_file = "keys/kobayashi-s3.key"
site = "Tokyo DC"
zone = "kanto"
media = "object storage (Object Lock)"

[[tenant]]
name = "Ebino"
code = "452092"
population = 17000
repo = "repos/ebino"
key_file = "keys/ebino.key"
datasets = [{{name = "税務", business = "課税事務", tier = 2}}]

[[tenant]]
name = "Kushima"
code = "452084"
population = 16000
repo = "repos/kushima"
key_file = "keys/kushima.key"
datasets = [{{name = "税務", business = "課税事務", tier = 2, source = "sqlite:/srv/tax.db"}}]

[[tenant]]
name = "Nichinan"
code = "452041"
population = 48000
repo = "repos/nichinan"
key_file = "keys/nichinan.key"

[[tenant]]
name = "Takachiho"
code = "454419"
population = 11000
repo = "repos/takachiho"
key_file = "keys/takachiho.key"
[[tenant.report.exempt]]
control = "DRILL"
approver = "総務課長 山田"
expires = {expired}
reason = "system replaced; drill after cut-over"
[[tenant.report.exempt]]
control = "ZERO-ERRORS"
approver = "総務課長 山田"
expires = {future}
reason = "no verification until the cut-over"

[[tenant]]
name = "Shiiba"
code = "454303"
population = 2500
"""


@pytest.fixture(scope="module")
def report_fleet(tmp_path_factory: pytest.TempPathFactory, aws_env: str) -> ReportFleet:
    """Built once per module (a few seconds): tests copy what they change."""
    import boto3

    tmp_path = tmp_path_factory.mktemp("report-fleet")

    now = dt.datetime.now(dt.UTC)
    first = (now - dt.timedelta(days=13)).date()
    bucket = f"report-{secrets.token_hex(5)}"
    boto3.client("s3", region_name="us-east-1").create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True)
    keys = tmp_path / "keys"
    keys.mkdir()
    escrow = EscrowKeyPair.generate()
    catalog = Catalog(str(tmp_path / "catalog.sqlite"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "registry.csv").write_text("id,name\n" + "".join(f"{i},住民{i}\n"
                                                             for i in range(2000)))
    (src / "notes.txt").write_bytes(os.urandom(50_000))
    for name in LOCAL:
        lower = name.lower()
        repo = make_repository(str(tmp_path / "repos" / lower),
                               key_file_path=keys / f"{lower}.key")
        repo.add_escrow(escrow.public)
        # Earlier nights, as the agents reported them (Ebino missed three).
        history = [_record(name, now - dt.timedelta(days=d, hours=1)) for d in range(1, 21)
                   if not (name == "Ebino" and d in (5, 6, 7))]
        catalog.import_runs(str(tmp_path / "repos" / lower), history)
        run_backup(repo, BackupRequest(paths=[str(src)], tenant=name, host=f"{lower}-db"),
                   catalog=catalog)
        _backdate(repo, 40)
    # Kobayashi's second copy: S3 in another zone, written under Object Lock.
    options = StoreOptions(s3=S3Options(object_lock_mode="GOVERNANCE", object_lock_days=30))
    url = f"s3://{bucket}/kobayashi"
    s3repo = make_repository(url, key_file_path=keys / "kobayashi-s3.key", options=options)
    s3repo.add_escrow(escrow.public)
    s3repo = Repository.open(open_store(url, options), Secret(
        key_file=KeyFile.load(keys / "kobayashi-s3.key")))
    run_backup(s3repo, BackupRequest(paths=[str(src)], tenant="Kobayashi", host="kobayashi-db"))

    def opened(lower: str) -> Repository:
        return Repository.open(open_store(str(tmp_path / "repos" / lower)), Secret(
            key_file=KeyFile.load(keys / f"{lower}.key")))

    for name in ("Kobayashi", "Ebino"):
        assert run_drill(opened(name.lower()), tenant=name, catalog=catalog).ok
    _damage_a_pack(tmp_path / "repos" / "nichinan")
    assert not run_drill(opened("nichinan"), tenant="Nichinan", catalog=catalog).ok
    catalog.close()
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET.format(bucket=bucket,
                                  expired=(now - dt.timedelta(days=1)).date().isoformat(),
                                  future=(now + dt.timedelta(days=60)).date().isoformat()))
    from drsync.report.seal import generate_key

    private, public = generate_key(keys)
    exe = shutil.which("drsync") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin"
                                        / "drsync")
    return ReportFleet(exe, tmp_path, fleet, tmp_path / "catalog.sqlite", private,
                       public, f"{first.isoformat()}..{now.date().isoformat()}", now,
                       aws_env)
