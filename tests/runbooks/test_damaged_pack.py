"""damaged-pack.md, against a local directory and an S3 bucket (moto's threaded server),
each configured by a file: a pack rots at rest, the dry run names it and changes nothing,
repair salvages and quarantines it, the backup heals, check and a drill verify."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.runbooks.conftest import RUNBOOKS, blocks, operator_env, run_book

pytestmark = pytest.mark.slow
KEYS = {"aws_access_key_id": "AKIADC2", "aws_secret_access_key": "dc2-secret"}



class _Where:
    """The tenant's repository, local or in a bucket, read and damaged from outside drsync."""

    def __init__(self, kind: str, tmp_path: Path, endpoint: str | None) -> None:
        self.kind = kind
        if kind == "local":
            self.url = str(tmp_path / "dc2" / "hyuga")
            self.config_extra = ""
            return
        self.bucket = "drsync-" + os.urandom(6).hex()
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEYS)
        self.client.create_bucket(Bucket=self.bucket)
        self.url = f"s3://{self.bucket}/hyuga"
        creds = tmp_path / "s3.credentials"
        creds.write_text("[dc2]\n" + "".join(f"{k} = {v}\n" for k, v in KEYS.items()))
        creds.chmod(0o600)
        self.config_extra = (f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
                             f'profile = "dc2"\ncredentials_file = "{creds}"\n')

    def packs(self) -> dict[str, bytes]:
        if self.kind == "local":
            root = Path(self.url) / "data"
            return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        found = {}
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix="hyuga/data/")
        for obj in listing.get("Contents", []):
            body = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
            found[obj["Key"].rsplit("/", 1)[-1]] = body
        return found

    def rot(self, pack_id: str, offset: int) -> None:
        """One bit flipped at rest: on S3 the object keeps the metadata of its upload."""
        data = bytearray(self.packs()[pack_id])
        data[offset] ^= 0x01
        key = f"data/{pack_id[:2]}/{pack_id}"
        if self.kind == "local":
            path = Path(self.url) / key
            path.chmod(0o600)
            path.write_bytes(bytes(data))
            return
        full = f"hyuga/{key}"
        meta = self.client.head_object(Bucket=self.bucket, Key=full)["Metadata"]
        self.client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data), Metadata=meta)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_damaged_pack_runbook(kind: str, drsync_bin: str, tmp_path: Path,
                              request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    endpoint = request.getfixturevalue("moto_endpoint") if kind == "s3" else None
    where = _Where(kind, tmp_path, endpoint)
    config = tmp_path / "tenant.toml"
    key_file = tmp_path / "hyuga.key"
    config.write_text(f'repo = "{where.url}"\nkey_file = "{key_file}"\ntenant = "Hyuga"\n'
                      f'catalog = "{tmp_path / "catalog.sqlite"}"\n'
                      + where.config_extra)
    env = operator_env(drsync_bin, HOME=str(tmp_path), TENANT_CONFIG=str(config),
                       QUARANTINE_DIR=str(tmp_path / "quarantine"),
                       SCRATCH_DIR=str(tmp_path / "scratch"),
                       TENANT_DB=str(tmp_path / "registry.db"))
    (tmp_path / "scratch").mkdir()

    def drsync(*args: str, ok: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([drsync_bin, "--config", str(config), *args],
                              env={**env, **extra}, capture_output=True, text=True, timeout=300)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done

    drsync("init", "--new-key-file", str(key_file), DRSYNC_PASSWORD="escrowed elsewhere")
    with sqlite3.connect(tmp_path / "registry.db") as conn:
        conn.execute("CREATE TABLE resident (id INTEGER PRIMARY KEY, name TEXT, note BLOB)")
        conn.executemany("INSERT INTO resident (name, note) VALUES (?, randomblob(300))",
                         [(f"住民 {i}",) for i in range(6000)])
    conn.close()
    first = json.loads(drsync("backup", "--sqlite", str(tmp_path / "registry.db"),
                              "--json").stdout)

    drsync("restore", first["snapshot_id"], "--target", str(tmp_path / "before"))
    # Rot in the middle of the largest pack: inside a sealed blob (its header is at the end).
    packs = where.packs()
    pack_id = max(packs, key=lambda p: len(packs[p]))
    where.rot(pack_id, len(packs[pack_id]) // 2)
    damaged = where.packs()[pack_id]
    found = drsync("check", "--read-data", ok=False)
    # The flipped byte is named by offset and blob, from S3 as from a directory (a whole
    # read from S3 refuses the rotten object: check reads it ranged to say where).
    [blob_line] = [x for x in found.stdout.splitlines()
                   if x.startswith(f"error: object data/{pack_id[:2]}/{pack_id} offset ")]
    assert "authentication failed" in blob_line
    assert f" in damaged pack {pack_id[:12]}…" in found.stdout
    listed = json.loads(drsync("check", "--read-data", "--json", ok=False).stdout)
    assert listed["damaged_packs"] == [pack_id]

    before = where.packs()
    dry = run_book("damaged-pack.md", env, tmp_path, only=slice(0, 1))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"pack {pack_id[:12]}: damaged: " in dry.stdout
    assert f"snapshot {first['snapshot_id'][:8]} (" in dry.stdout
    assert where.packs() == before and not (tmp_path / "quarantine").exists()

    done = run_book("damaged-pack.md", env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pack {pack_id[:12]}: repaired, " in done.stdout
    assert f"saved to {tmp_path / 'quarantine' / pack_id}" in done.stdout
    assert f"snapshot {first['snapshot_id'][:8]} needs a backup to heal" in done.stdout
    assert "verified: the repository reads whole and the tenant is restorable" in done.stdout
    assert pack_id not in where.packs()
    assert (tmp_path / "quarantine" / pack_id).read_bytes() == damaged
    # The first snapshot restores byte-identical again: healed by the runbook's backup.
    restored = tmp_path / "restored"
    drsync("restore", first["snapshot_id"], "--target", str(restored))
    assert (next(restored.rglob("registry.db")).read_bytes()
            == next((tmp_path / "before").rglob("registry.db")).read_bytes())
    kinds = [(r["kind"], r["status"]) for r in json.loads(drsync("runs", "--json").stdout)]
    assert kinds[:4] == [("restore", "ok"), ("drill", "ok"), ("check", "ok"), ("backup", "ok")]


def test_every_block_of_the_runbook_is_run() -> None:
    assert len(blocks(RUNBOOKS / "damaged-pack.md")) == 4

