"""What an S3 failure means: transient (retry it) or permanent (stop, in one line).

Kept apart from the store so the classification can be read, and tested, as
one table.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSLError,
)

from drsync.errors import ObjectExists, ObjectLocked, ObjectNotFound, StoreError, StoreUnavailable

__all__ = ["error_code", "translate", "unsupported"]

# Codes S3 (and MinIO, Ceph RGW) answer for conditions that pass.
TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "RequestTimeout", "RequestTimeTooSkewed", "OperationAborted", "ConditionalRequestConflict",
    "BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", "RequestLimitExceeded",
    "TooManyRequests", "ServerBusy",
})
# Codes that will not pass by waiting, with the words a person needs.
PERMANENT_REASONS = {
    "AccessDenied": "access denied",
    "AllAccessDisabled": "all access to this bucket has been disabled",
    "InvalidAccessKeyId": "the access key id is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match (signature mismatch)",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is invalid",
    "NoSuchBucket": "no such bucket",
    "PermanentRedirect": "the bucket is in another region (set the region or endpoint)",
    "AuthorizationHeaderMalformed": "wrong region for this bucket (set the region)",
    "IllegalLocationConstraintException": "wrong region for this bucket (set the region)",
    "InvalidBucketName": "invalid bucket name",
    "AccountProblem": "the account has a problem (billing or suspension)",
    "InvalidObjectState": "the object is archived and must be restored first",
    "EntityTooSmall": "a multipart part is smaller than the store allows (raise part_size_mib)",
    "InvalidRequest": "the store refused the request",
    "NotImplemented": "the store does not implement this request",
}


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


# What a store answers to a request it does not implement at all: 501 (s3rver, older
# Ceph RGW), or a 405 for a verb on a resource it has no handler for.
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "MethodNotAllowed"})


def unsupported(err: BaseException) -> bool:
    """True when the store does not implement the request (an optional S3 feature)."""
    return isinstance(err, ClientError) and (
        error_code(err) in _UNSUPPORTED_CODES or _status(err) in (501, 405))


def translate(err: BaseException, bucket: str, url: str, what: str) -> StoreError:
    """The StoreError (or subclass) that ``err`` means; ``what`` is e.g. 'writing data/..'."""
    if isinstance(err, StoreError):
        return err
    if isinstance(err, ClientError):
        code = error_code(err)
        status = _status(err)
        message = str(err.response.get("Error", {}).get("Message", "")).strip()
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFound(f"{url}: object {what.split(' ', 1)[-1]} not found")
        if code == "PreconditionFailed" or status == 412:
            return ObjectExists(f"{url}: {what}: the object already exists")
        if unsupported(err):  # a 501 does not pass by waiting
            return StoreError(f"bucket {bucket!r}: the store does not implement this request "
                              f"({code or status}) {what}")
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return StoreUnavailable(f"{url}: {what}: {code or status} {message}".rstrip())
        reason = PERMANENT_REASONS.get(code) or (message or code or f"HTTP {status}")
        if code == "AccessDenied" and "lock" in message.lower():
            return ObjectLocked(f"{url}: {what}: refused by the bucket's object lock: {message}")
        return StoreError(f"bucket {bucket!r}: {reason} ({code or status}) {what}")
    if isinstance(err, SSLError):
        return StoreError(f"bucket {bucket!r}: TLS verification failed ({err}); "
                          "set ca_bundle for a private CA")
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return StoreError(f"bucket {bucket!r}: no usable credentials ({err}); set "
                          "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or the config file")
    if isinstance(err, ProfileNotFound):
        return StoreError(f"bucket {bucket!r}: {err}")
    if isinstance(err, ConnectionError | HTTPClientError | IncompleteReadError
                  | FlexibleChecksumError | ChecksumError):
        return StoreUnavailable(f"{url}: {what}: {type(err).__name__}: {err}")
    if isinstance(err, BotoCoreError):
        return StoreError(f"bucket {bucket!r}: {what}: {err}")
    if isinstance(err, OSError):
        return StoreUnavailable(f"{url}: {what}: {err}")
    return StoreError(f"{url}: {what}: {err!r}")
