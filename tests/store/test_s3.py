"""The S3 store's own promises, against moto over real HTTP (and a fault proxy)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import boto3
import pytest

from drsync.errors import ObjectExists, ObjectLocked, StoreError, StoreUnavailable
from drsync.store import S3Options, Store, StoreOptions, open_store
from drsync.store.capabilities import ContentDigests, PendingUploads, capability
from drsync.store.retry import RetryStore
from drsync.store.s3 import S3Store
from tests.store.faultproxy import FaultProxy

PART = 64 * 1024


def open_s3(endpoint: str, bucket: str, *, deadline: float = 10, **s3: object) -> Store:
    options = StoreOptions(
        s3=S3Options(endpoint_url=endpoint, part_size=PART, read_timeout=5,  # type: ignore[arg-type]
                     **s3),
        retry_deadline=deadline)
    return open_store(f"s3://{bucket}/tenant", options)


def inner(store: Store) -> S3Store:
    found = capability(store, ContentDigests)
    assert isinstance(found, S3Store)
    return found


def raw_client(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


# -- permanent failures: one line naming the bucket, no retrying ---------------------------

def test_no_such_bucket_is_one_line_at_once(moto_endpoint: str) -> None:
    store = open_s3(moto_endpoint, "no-such-bucket-here", deadline=300)
    with pytest.raises(StoreError) as info:
        store.put("config", b"x")
    message = str(info.value)
    assert "no-such-bucket-here" in message and "no such bucket" in message
    assert "\n" not in message
    assert isinstance(store, RetryStore) and store.retries == 0


class _Deny(http.server.BaseHTTPRequestHandler):
    """A store that refuses everything, as a bucket policy does."""

    def _deny(self) -> None:
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _deny

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_access_denied_is_one_line_at_once(denying_endpoint: str) -> None:
    store = open_s3(denying_endpoint, "tenant-bucket", deadline=300)
    for action in (lambda: store.get("config"), lambda: store.put("data/x", b"1")):
        with pytest.raises(StoreError) as info:
            action()
        assert "'tenant-bucket'" in str(info.value) and "access denied" in str(info.value)
    assert isinstance(store, RetryStore) and store.retries == 0


# -- transient failures through the fault proxy ----------------------------------------------

def test_cut_multipart_upload_resumes_from_completed_parts(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    store = open_s3(proxy.url, bucket_on())
    data = os.urandom(4 * PART)
    proxy.cut_after_up = int(2.5 * PART)  # mid-way through the third part
    store.put("data/aa/pack", data)
    assert store.get("data/aa/pack") == data
    s3 = inner(store)
    assert isinstance(store, RetryStore) and store.retries >= 1
    assert s3.stats.resumed >= 2 * PART  # the first two parts were not sent again
    assert s3.stats.sent <= len(data) + PART  # at most the cut part twice
    assert capability(store, PendingUploads).pending_uploads() == []


def test_reset_connections_and_delays_are_ridden_out(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    store = open_s3(proxy.url, bucket_on())
    proxy.delay = 0.002
    for i in range(3):
        proxy.cut_after_up = 100 + i * 5000
        store.put(f"index/{i}", os.urandom(20_000))
    proxy.cut_after_down = 3000
    assert len(store.get("index/1")) == 20_000
    assert isinstance(store, RetryStore) and store.retries >= 3


def test_corrupted_download_is_retried_never_returned(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    store = open_s3(proxy.url, bucket_on())
    data = os.urandom(100_000)
    store.put("snapshots/s", data)
    proxy.corrupt_down_after = 50_000  # well inside the body
    assert store.get("snapshots/s") == data
    assert proxy.corrupt_down_after is None  # the fault did fire


def test_truncated_ranged_read_is_retried(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    store = open_s3(proxy.url, bucket_on())
    data = os.urandom(200_000)
    store.put("data/bb/p", data)
    proxy.cut_after_down = 20_000
    assert store.get("data/bb/p", 1000, 150_000) == data[1000:151_000]
    assert isinstance(store, RetryStore) and store.retries >= 1


def test_a_paced_download_is_paced_within_the_object_an_unpaced_one_read_whole(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    store = open_s3(moto_endpoint, bucket_on())
    s3 = inner(store)
    data = os.urandom(3 << 20)
    store.put("data/ee/p", data)
    taken: list[int] = []
    s3.set_pacing(None, taken.append)
    assert store.get("data/ee/p", 100, len(data) - 100) == data[100:]
    assert store.get("data/ee/p") == data  # the whole object: its SHA-256 checked too
    # Every byte passed the limit, a block at a time, never one object at once.
    assert sum(taken) == 2 * len(data) - 100 and max(taken) <= 256 * 1024
    s3.set_pacing(None, None)
    received, asked = s3.stats.received, len(taken)
    assert store.get("data/ee/p", 5, 1 << 20) == data[5:5 + (1 << 20)]
    assert s3.stats.received - received == 1 << 20  # counted, if read in one go
    assert len(taken) == asked


def test_link_down_past_the_deadline_fails_with_one_final_line(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    store = open_s3(proxy.url, bucket_on(), deadline=1.5)
    proxy.down = True
    with pytest.raises(StoreError) as info:
        store.put("data/cc/p", os.urandom(1000))
    assert not isinstance(info.value, StoreUnavailable)
    assert "gave up" in str(info.value) and "\n" not in str(info.value)
    proxy.heal()
    store.put("data/cc/p", b"after the link came back")


# -- unfinished uploads -----------------------------------------------------------------------

def test_unfinished_uploads_are_listed_and_aborted(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    bucket = bucket_on()
    client = raw_client(moto_endpoint)
    up = client.create_multipart_upload(Bucket=bucket, Key="tenant/data/dd/cut")  # type: ignore[attr-defined]
    client.upload_part(Bucket=bucket, Key="tenant/data/dd/cut", UploadId=up["UploadId"],  # type: ignore[attr-defined]
                       PartNumber=1, Body=b"x" * PART)
    store = open_s3(moto_endpoint, bucket)
    uploads = capability(store, PendingUploads)
    pending = uploads.pending_uploads()
    assert [(p.key, p.bytes_stored) for p in pending] == [("data/dd/cut", PART)]
    assert "unfinished upload of data/dd/cut" in pending[0].describe()
    uploads.abort_upload(pending[0])
    assert uploads.pending_uploads() == []
    assert list(store.list("")) == []


# -- conditional writes ----------------------------------------------------------------------

def test_conditional_writes_are_detected_on_moto(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    store = open_s3(moto_endpoint, bucket_on())
    store.put("lock", b"a", if_absent=True)
    assert inner(store).create.supported is True
    assert list(store.list("")) == [store.stat("lock")]  # the probe left nothing


def test_a_store_that_ignores_if_none_match_is_detected_and_the_claim_protocol_used(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    proxy.strip_if_none_match = True  # an older MinIO/Ceph: the header never arrives
    store = open_s3(proxy.url, bucket_on())
    store.put("lock", b"first", if_absent=True)
    assert inner(store).create.supported is False
    with pytest.raises(ObjectExists):
        store.put("lock", b"second", if_absent=True)
    assert store.get("lock") == b"first"


def test_a_retried_claim_is_not_its_own_rival(
        proxy: FaultProxy, bucket_on: Callable[..., str]) -> None:
    """The link drops while a snapshot is written by the claim protocol and again while its
    claim is withdrawn: the retry must not take the claim left behind for another writer's
    (which made a lost snapshot look 'already there')."""
    import re

    bucket = bucket_on()
    store = open_s3(proxy.url, bucket, conditional_writes="off")
    proxy.reset_requests = [re.compile(rb"PUT /%s/tenant/snapshots/s1 " % bucket.encode()),
                            re.compile(rb"DELETE /%s/tenant/\.claims/snapshots/s1/" %
                                       bucket.encode())]
    store.put("snapshots/s1", b"snapshot one", if_absent=True)
    assert proxy.reset_requests == []  # both faults fired
    assert store.get("snapshots/s1") == b"snapshot one"
    claims = raw_client(proxy.url).list_objects_v2(  # type: ignore[attr-defined]
        Bucket=bucket, Prefix="tenant/.claims/")
    assert claims.get("Contents", []) == []  # the leftover claim was withdrawn by the retry


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_racing_creators_one_wins(mode: str, moto_endpoint: str,
                                  bucket_on: Callable[..., str]) -> None:
    bucket = bucket_on()
    stores = [open_s3(moto_endpoint, bucket, conditional_writes=mode) for _ in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].put("lock", f"writer {i}".encode(), if_absent=True)
            outcomes.append(f"won {i}")
        except ObjectExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    # Claimants that meet a rival's claim retry (a transient failure), so one always wins.
    assert len(outcomes) == len(stores) and len(winners) == 1, outcomes
    assert stores[0].get("lock") == f"writer {winners[0].split()[1]}".encode()


# -- object lock ---------------------------------------------------------------------------

def test_object_lock_retains_and_refuses_delete_and_replace(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    bucket = bucket_on(object_lock=True)
    store = open_s3(moto_endpoint, bucket, object_lock_mode="COMPLIANCE", object_lock_days=7)
    pack = os.urandom(3 * PART)  # multipart: the retention is set at creation
    store.put("data/ee/pack", pack)
    store.put("snapshots/s", b"snapshot")
    store.put("lock", b"writer lock")
    head = raw_client(moto_endpoint).head_object(Bucket=bucket, Key="tenant/data/ee/pack")  # type: ignore[attr-defined]
    # moto answers get_object_retention with a 500; HEAD carries the lock.
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days >= 6
    with pytest.raises(ObjectLocked, match=r"data/ee/pack is locked \(COMPLIANCE retention"):
        store.delete("data/ee/pack")
    with pytest.raises(ObjectLocked, match="refuses to replace"):
        store.put("snapshots/s", b"tampered")
    store.put("data/ee/pack", pack)  # the same bytes again (a retry): nothing to replace
    assert store.get("data/ee/pack") == pack and store.get("snapshots/s") == b"snapshot"
    store.delete("lock")  # the writer lock is never retained
    assert not store.exists("lock")


def test_locked_versions_cannot_be_deleted_behind_drsyncs_back(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    """The store's own refusal: deleting the retained version itself is a 403."""
    bucket = bucket_on(object_lock=True)
    store = open_s3(moto_endpoint, bucket, object_lock_mode="GOVERNANCE", object_lock_days=1)
    store.put("index/i", b"index")
    client = raw_client(moto_endpoint)
    version = client.head_object(Bucket=bucket, Key="tenant/index/i")["VersionId"]  # type: ignore[attr-defined]
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):  # type: ignore[attr-defined]
        client.delete_object(Bucket=bucket, Key="tenant/index/i", VersionId=version)  # type: ignore[attr-defined]


# -- adoption without reading packs back -------------------------------------------------------

def test_content_digest_is_recorded_for_single_and_multipart_objects(
        moto_endpoint: str, bucket_on: Callable[..., str]) -> None:
    import hashlib

    store = open_s3(moto_endpoint, bucket_on())
    for size in (1000, 3 * PART + 7):
        data = os.urandom(size)
        store.put(f"data/ff/{size}", data)
        assert inner(store).content_sha256(f"data/ff/{size}") == hashlib.sha256(data).hexdigest()
