"""S3 test fixtures: moto in process, moto's threaded server on loopback, a fault proxy,
and s3rver, a minimal second S3 implementation.

Network traffic goes only to 127.0.0.1. Credentials are fake and fixed, the
AWS config files and the EC2 metadata service are switched off, so boto3
never looks beyond the test. Small multipart parts (S3_UPLOAD_PART_MIN_SIZE, read by
moto when first imported) are set by tests/conftest.py, before any module imports moto.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import boto3
import pytest
from moto import mock_aws

from tests.helpers import unavailable
from tests.store.faultproxy import FaultProxy
from tests.store.minimal_s3 import MinimalS3

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE":
    "/nonexistent/aws-credentials",
}


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)



def new_bucket(endpoint: str | None, *, object_lock: bool = False) -> str:
    name = f"drsync-{secrets.token_hex(6)}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    if object_lock:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket_on(moto_endpoint: str) -> Callable[..., str]:
    """A new bucket on the threaded server: ``bucket_on(object_lock=True)``."""
    return lambda **kw: new_bucket(moto_endpoint, **kw)


@pytest.fixture
def in_process_s3() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    fault = FaultProxy((host, int(port)))
    yield fault
    fault.close()


@pytest.fixture(scope="session")
def minimal_endpoint() -> Iterator[str]:
    """s3rver on loopback: a second S3 implementation, one without If-None-Match,
    ListMultipartUploads, versioning or Object Lock (see minimal_s3.py)."""
    why = MinimalS3.missing()
    if why is not None:
        unavailable(why)
    server = MinimalS3()
    try:
        server.start()
    except RuntimeError as err:
        unavailable(str(err))
    yield server.url
    server.stop()


@pytest.fixture
def minimal_bucket(minimal_endpoint: str) -> str:
    """A new bucket on s3rver."""
    return new_bucket(minimal_endpoint)
