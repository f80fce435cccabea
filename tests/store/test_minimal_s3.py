"""drsync on a minimal S3 implementation (s3rver): no If-None-Match, no ListMultipartUploads,
no versioning or Object Lock. Optional features are found missing, done without and warned
about once; nothing a backup, restore or check needs is lost with them."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from drsync.errors import ConfigError, ObjectExists
from drsync.repo.resume import abort_interrupted_uploads
from drsync.store import S3Options, Store, StoreOptions, open_store
from drsync.store.capabilities import CapabilityUnavailable, PendingUploads, capability
from drsync.store.s3 import S3Store
from tests.store.faultproxy import FaultProxy
from tests.store.test_s3_cli import S3Cli

PART = 64 * 1024
MiB = 1 << 20


def open_minimal(endpoint: str, bucket: str, **s3: object) -> Store:
    options = StoreOptions(s3=S3Options(endpoint_url=endpoint, part_size=PART, **s3),  # type: ignore[arg-type]
                           retry_deadline=20)
    return open_store(f"s3://{bucket}/tenant", options)


def warnings_about(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and words in r.getMessage()]


def test_missing_features_are_probed_and_degrade_with_one_warning_each(
        minimal_endpoint: str, minimal_bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="drsync")
    stores = [open_minimal(minimal_endpoint, minimal_bucket) for _ in range(2)]
    for i, store in enumerate(stores):
        store.put(f"snapshots/{i}", b"first", if_absent=True)
        with pytest.raises(ObjectExists):
            store.put(f"snapshots/{i}", b"second", if_absent=True)
        assert store.get(f"snapshots/{i}") == b"first"
        store.put("data/aa/big", os.urandom(3 * PART + 5))  # multipart
        uploads = capability(store, PendingUploads)
        for _ in range(2):
            with pytest.raises(CapabilityUnavailable, match="ListMultipartUploads"):
                uploads.pending_uploads()
            assert abort_interrupted_uploads(store) == []  # a backup's first step
        inner = capability(store, S3Store)
        assert inner.create.supported is False
    # One line per feature for the whole process, however many stores and requests.
    assert len(warnings_about(caplog, "does not honour If-None-Match")) == 1
    assert len(warnings_about(caplog, "does not implement ListMultipartUploads")) == 1
    assert sorted(i.key for i in stores[0].list("")) == ["data/aa/big", "snapshots/0",
                                                         "snapshots/1"]


def test_object_lock_asked_of_a_store_without_it_is_a_config_error(
        minimal_endpoint: str, minimal_bucket: str) -> None:
    store = open_minimal(minimal_endpoint, minimal_bucket, object_lock_mode="COMPLIANCE",
                         object_lock_days=7)
    for attempt in (lambda: store.put("snapshots/s", b"x", if_absent=True),
                    lambda: store.put("data/aa/p", os.urandom(2 * PART))):
        with pytest.raises(ConfigError, match=r"object_lock_mode = 'compliance' is set, but "
                           r"bucket .*does not implement Object Lock"):
            attempt()
    assert list(store.list("")) == []  # nothing was written without its retention
    store.put("lock", b"the writer lock is never retained")  # unlocked keys still work


def test_object_lock_on_a_bucket_created_without_it_is_a_config_error(
        moto_endpoint: str) -> None:
    from tests.store.conftest import new_bucket

    bucket = new_bucket(moto_endpoint)
    store = open_minimal(moto_endpoint, bucket, object_lock_mode="GOVERNANCE",
                         object_lock_days=1)
    with pytest.raises(ConfigError, match="Object Lock is not enabled on it"):
        store.put("index/i", b"index")
    assert list(store.list("")) == []


def race_for(key: str, stores: list[Store]) -> dict[int, str]:
    """Every store puts ``key`` if absent at the same moment: who won, who lost."""
    outcomes: dict[int, str] = {}
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].put(key, f"writer {i}".encode(), if_absent=True)
            outcomes[i] = "won"
        except ObjectExists:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_racing_creators_on_a_store_without_if_none_match_exactly_one_wins(
        minimal_endpoint: str, minimal_bucket: str) -> None:
    """The claim protocol: racers that meet a rival's claim retry rather than all backing
    off, so every round has exactly one winner and the others see its object."""
    for round_ in range(5):
        stores = [open_minimal(minimal_endpoint, minimal_bucket) for _ in range(4)]
        outcomes = race_for(f"lock-{round_}", stores)
        winners = [i for i, o in outcomes.items() if o == "won"]
        assert len(outcomes) == len(stores) and len(winners) == 1, outcomes
        assert stores[0].get(f"lock-{round_}") == f"writer {winners[0]}".encode()
        for store in stores:
            store.close()


@pytest.fixture
def minimal_cli(drsync_bin: str, tmp_path: Path, minimal_endpoint: str,
                minimal_bucket: str) -> S3Cli:
    cli = S3Cli(drsync_bin, tmp_path, minimal_endpoint, minimal_bucket)
    cli("init", "--pack-size-mib", "1")
    return cli


def test_init_asking_for_object_lock_on_a_store_without_it_stops_before_writing(
        drsync_bin: str, tmp_path: Path, minimal_endpoint: str, minimal_bucket: str) -> None:
    import boto3

    cli = S3Cli(drsync_bin, tmp_path, minimal_endpoint, minimal_bucket)
    cli.config.write_text(cli.config.read_text() + 'object_lock_mode = "governance"\n'
                          "object_lock_days = 30\n")
    done = cli("init", ok=False)
    assert done.returncode == 4
    assert done.stderr.decode().splitlines() == [
        f"drsync: error: [s3] object_lock_mode = 'governance' is set, but bucket "
        f"'{minimal_bucket}': the store does not implement Object Lock; create the bucket "
        "with Object Lock enabled, or remove object_lock_mode"]
    listed = boto3.client("s3", endpoint_url=minimal_endpoint).list_objects_v2(
        Bucket=minimal_bucket)
    assert listed.get("Contents", []) == []  # not even a probe or a claim


@pytest.mark.slow
def test_backup_restore_and_check_on_a_minimal_store(minimal_cli: S3Cli) -> None:
    data = os.urandom(3 * MiB) + b"municipal registry " * 50_000  # multipart packs
    backup = minimal_cli("backup", "--stdin-name", "registry.dump", "--json", stdin=data)
    assert json.loads(backup.stdout)["bytes_read"] == len(data)
    lines = backup.stderr.decode().splitlines()
    assert [line for line in lines if "If-None-Match" in line] == [
        f"drsync: warning: {minimal_cli.env['DRSYNC_REPO']}: the store does not honour "
        "If-None-Match (conditional writes): objects are created with the claim protocol "
        '(docs/FORMAT.md 9.1); set [s3] conditional_writes = "off" to skip the probe']
    assert len([line for line in lines if "ListMultipartUploads" in line]) == 1
    assert minimal_cli("restore", "latest", "--stdout").stdout == data
    check = minimal_cli("check", "--read-data", "--json")
    report = json.loads(check.stdout)
    assert report["ok"] and report["snapshots"] == 1 and report["errors"] == [], report
    assert "unfinished uploads cannot be listed on this store (it does not implement " \
           "ListMultipartUploads)" in report["notes"]
    plain = minimal_cli("check", "--cleanup-uploads")
    assert b"no errors" in plain.stdout
    assert b"unfinished uploads cannot be listed on this store" in plain.stdout


@pytest.mark.slow
def test_a_backup_cut_mid_upload_on_a_minimal_store_is_completed_by_the_next(
        drsync_bin: str, tmp_path: Path, minimal_endpoint: str, minimal_bucket: str) -> None:
    """No ListMultipartUploads: the cut upload cannot be found again, so none is spooled for
    resuming; the next run adopts the packs that arrived and sends the rest."""
    host, port = minimal_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy((host, int(port)))
    try:
        cli = S3Cli(drsync_bin, tmp_path, proxy.url, minimal_bucket)
        cli.config.write_text(cli.config.read_text().replace("retry_deadline_s = 20",
                                                             "retry_deadline_s = 1"))
        cli("init", "--pack-size-mib", "1")
        data = os.urandom(6 * MiB)
        proxy.cut_after_up = 3 * MiB  # half way, and the link stays down
        proxy.down_after_cut = True
        failed = cli("backup", "--stdin-name", "registry.dump", stdin=data, ok=False)
        assert failed.returncode == 14, failed.stderr.decode()
        spool = Path(os.environ["XDG_STATE_HOME"]) / "drsync" / "s3-spool"  # the default
        assert not spool.exists() or list(spool.iterdir()) == []  # nothing kept for nobody
        proxy.heal()
        proxy.down_after_cut = False
        cli("backup", "--stdin-name", "registry.dump", stdin=data)
        assert cli("restore", "latest", "--stdout").stdout == data
        report = json.loads(cli("check", "--read-data", "--json").stdout)
        assert report["ok"] and report["snapshots"] == 1, report
    finally:
        proxy.close()


@pytest.mark.slow
def test_concurrent_backups_on_a_minimal_store_lose_and_duplicate_nothing(
        minimal_cli: S3Cli, tmp_path: Path) -> None:
    """Two `drsync backup` processes at once into one repository on a store without
    If-None-Match: the lock (claim protocol) lets one run and refuses the other with exit
    12, or both run one after the other. Snapshots listed are exactly the successful
    backups, each restores byte-identical, and `check --read-data` is clean."""
    rng = random.Random(8)
    succeeded: dict[str, bytes] = {}
    refused = 0
    started = time.monotonic()

    def backup(name: str, data: bytes, delay: float,
               done: dict[str, subprocess.CompletedProcess[bytes]]) -> None:
        time.sleep(delay)
        # Paced, so that an overlapping start meets a held lock, not a finished run.
        done[name] = subprocess.run([minimal_cli.exe, "--limit-upload", "3MB/s", "backup",
                                     "--stdin-name", name],
                                    input=data, capture_output=True, env=minimal_cli.env,
                                    timeout=240)

    for round_ in range(5):
        inputs = {f"r{round_}-w{w}.dump": os.urandom(2 * MiB) + f"r{round_}w{w} ".encode()
                  * 20_000 for w in range(2)}
        delays = [0.0, rng.choice([0.0, 0.0, 0.2, 4.0])]  # overlapping, mostly
        done: dict[str, subprocess.CompletedProcess[bytes]] = {}
        threads = [threading.Thread(target=backup, args=(name, data, delay, done))
                   for (name, data), delay in zip(inputs.items(), delays, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert sorted(done) == sorted(inputs)
        for name, result in done.items():
            err = result.stderr.decode()
            if result.returncode == 0:
                succeeded[name] = inputs[name]
            else:
                # A clean refusal, one line, nothing written: the lock seen taken (12), or,
                # on a heavily loaded machine, the retry deadline spent racing the other
                # writer's claims for the lock (14); the invariants below hold either way.
                line = err.strip().splitlines()[-1]
                assert (result.returncode == 12 and line.startswith("drsync: error: repository ")
                        and "is locked by" in line) or (
                    result.returncode == 14 and "gave up writing lock" in line), \
                    (name, result.returncode, err)
                refused += 1
    assert time.monotonic() - started < 600
    assert len(succeeded) >= 5  # at least one writer of every round ran
    listed = json.loads(minimal_cli("snapshots", "--json").stdout)
    names = sorted(s["source"]["spec"]["name"] for s in listed)
    assert names == sorted(succeeded)  # none lost, none twice
    runs = sorted((s["start_time"], s["time"]) for s in listed)
    overlapping = [(a, b) for a, b in itertools.pairwise(runs) if a[1] > b[0]]
    assert overlapping == []  # the lock let no two of them write at once
    for snap in listed:
        restored = minimal_cli("restore", snap["id"], "--stdout").stdout
        assert restored == succeeded[snap["source"]["spec"]["name"]]
    report = json.loads(minimal_cli("check", "--read-data", "--json").stdout)
    assert report["ok"] and report["snapshots"] == len(succeeded), report
    assert refused + len(succeeded) == 10
