"""Create-if-absent on S3: ``If-None-Match: *`` where honoured, a claim protocol where not.

Conditional writes are probed once per store (``conditional_writes =
"auto"``): a hidden probe object is written twice with ``If-None-Match: *``;
a store that answers 412 to the second honours the header. One that
overwrites (it ignores the header, as older MinIO and Ceph RGW releases
do) or answers 501 does not, and then the claim protocol of docs/FORMAT.md
§9.1 is used:

1. If the key exists, it is taken.
2. Write a unique claim ``.claims/<key>/<ns time>-<random>``.
3. List ``.claims/<key>/``: a fresh claim of another writer means a race;
   withdraw ours. If the key now exists it is taken (ObjectExists); if not,
   the other writer is still at it, and the attempt fails as transient
   (StoreUnavailable): the retry wrapper tries again after a random backoff,
   so racing writers do not keep backing off in step. ObjectExists thus always
   means the key exists, which the lock and ``save_document`` rely on.
4. Check again that the key does not exist, then write it, then withdraw
   the claim.

A claim this process could not withdraw (the link dropped) is remembered
and never taken for a rival by its own retry.

Under the strong read-after-write and list consistency that S3 (since
December 2020), MinIO and Ceph RGW give, two racing writers cannot both pass
step 3 unless one's claim was withdrawn, which happens only after its object
was written, and then the other's step 4 sees it. Claims older than
``CLAIM_STALE`` are leftovers of a dead writer and are ignored.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from drsync.errors import ObjectExists, StoreUnavailable
from drsync.store.capabilities import warn_once
from drsync.store.s3_errors import error_code

if TYPE_CHECKING:
    from drsync.store.s3 import S3Store

__all__ = ["CLAIM_STALE", "ConditionalCreate"]

CLAIM_STALE = 600.0
CLAIMS = ".claims"


class ConditionalCreate:
    def __init__(self, store: S3Store) -> None:
        self._store = store
        self._supported: bool | None = {"on": True, "off": False}.get(
            store.options.conditional_writes)
        self._lock = threading.Lock()
        self._leftovers: set[str] = set()  # our claims whose withdrawal failed

    @property
    def supported(self) -> bool:
        with self._lock:
            if self._supported is None:
                self._supported = self._probe()
                if not self._supported:
                    url = self._store.url
                    warn_once(url, "if-none-match",
                              f"{url}: the store does not honour If-None-Match (conditional "
                              "writes): objects are created with the claim protocol "
                              "(docs/FORMAT.md 9.1); set [s3] conditional_writes = \"off\" "
                              "to skip the probe")
            return self._supported

    def _probe(self) -> bool:
        store = self._store
        probe = store.full_key(f".drsync-probe-{secrets.token_hex(8)}")
        client = store.client
        try:
            try:
                client.put_object(Bucket=store.bucket, Key=probe, Body=b"1", IfNoneMatch="*")
                client.put_object(Bucket=store.bucket, Key=probe, Body=b"2", IfNoneMatch="*")
            except ClientError as err:
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if error_code(err) == "PreconditionFailed" or status == 412:
                    return True
                if error_code(err) in ("NotImplemented", "InvalidArgument", "InvalidRequest") \
                        or status == 501:
                    return False
                raise store.error(err, "probing conditional writes") from None
            return False  # the second write replaced the first: the header was ignored
        except (BotoCoreError, OSError) as err:
            raise store.error(err, "probing conditional writes") from None
        finally:
            with contextlib.suppress(ClientError, BotoCoreError, OSError):
                client.delete_object(Bucket=store.bucket, Key=probe)

    def put_if_absent(self, key: str, data: bytes, sha: str) -> None:
        store = self._store
        if self.supported:
            store.write(key, data, sha, if_none_match=True)
            return
        self._put_by_claim(key, data, sha)

    def _taken(self, key: str) -> ObjectExists:
        return ObjectExists(f"{self._store.url}: object {key} already exists")

    def _put_by_claim(self, key: str, data: bytes, sha: str) -> None:
        store = self._store
        client = store.client
        if store.head(key) is not None:
            raise self._taken(key)
        claim_dir = store.full_key(f"{CLAIMS}/{key}/")
        mine = f"{claim_dir}{time.time_ns():020d}-{secrets.token_hex(8)}"
        try:
            client.put_object(Bucket=store.bucket, Key=mine, Body=b"")
            listed = client.list_objects_v2(Bucket=store.bucket, Prefix=claim_dir)
        except (ClientError, BotoCoreError, OSError) as err:
            self._withdraw(mine)
            raise store.error(err, f"claiming {key}") from None
        now = datetime.now(UTC)
        with self._lock:
            ours = set(self._leftovers)
        for leftover in ours & {o["Key"] for o in listed.get("Contents", [])}:
            self._withdraw(leftover)
        rivals = [o for o in listed.get("Contents", []) if o["Key"] != mine
                  and o["Key"] not in ours
                  and (now - o["LastModified"]).total_seconds() < CLAIM_STALE]
        if rivals:
            self._withdraw(mine)
            if store.head(key) is not None:
                raise self._taken(key)
            raise StoreUnavailable(f"{store.url}: object {key} is being created by another "
                                   "writer at the same time")
        try:
            if store.head(key) is not None:
                raise self._taken(key)
            store.write(key, data, sha)
        finally:
            self._withdraw(mine)

    def _withdraw(self, claim: str) -> None:
        # A claim left behind goes stale after CLAIM_STALE seconds; until then this
        # process knows it for its own.
        try:
            self._store.client.delete_object(Bucket=self._store.bucket, Key=claim)
        except (ClientError, BotoCoreError, OSError):
            with self._lock:
                self._leftovers.add(claim)
            return
        with self._lock:
            self._leftovers.discard(claim)
