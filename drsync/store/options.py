"""Typed options for opening a store: what the settings say, in the store's terms.

The CLI builds one ``StoreOptions`` from the settings and hands it to
``open_store``; nothing above the store reads the S3 fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drsync.errors import UsageError

__all__ = ["MiB", "S3Options", "StoreOptions"]

MiB = 1 << 20
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None  # None: boto3's own (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)
    region: str | None = None  # None: boto3's chain (AWS_REGION, the profile, ...)
    addressing_style: str = "auto"  # auto | path | virtual
    profile: str | None = None  # a profile in the AWS config/credentials files
    credentials_file: str | None = None  # an AWS shared-credentials file; profile: its section
    verify_tls: bool = True
    ca_bundle: str | None = None  # PEM file of CAs to trust instead of the system's
    part_size: int = 8 * MiB  # multipart part size; objects larger than one part go multipart
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    conditional_writes: str = "auto"  # auto (probe the store) | on | off (claim protocol)
    object_lock_mode: str | None = None  # GOVERNANCE | COMPLIANCE: retain what is written
    object_lock_days: int = 0
    unlocked_keys: tuple[str, ...] = ("lock",)  # never retained: the writer lock is deleted
    spool_dir: str | None = None  # local copies of multipart objects in flight, for resuming

    def validate(self) -> S3Options:
        if self.endpoint_url is not None:
            from drsync.settings import endpoint_problem

            problem = endpoint_problem(self.endpoint_url)
            if problem:
                raise UsageError(f"S3 endpoint URL {problem}")
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise UsageError(f"S3 addressing style must be auto, path or virtual "
                             f"(got {self.addressing_style!r})")
        if self.conditional_writes not in ("auto", "on", "off"):
            raise UsageError(f"conditional_writes must be auto, on or off "
                             f"(got {self.conditional_writes!r})")
        if self.object_lock_mode is not None:
            if self.object_lock_mode.upper() not in LOCK_MODES:
                raise UsageError(f"object lock mode must be governance or compliance "
                                 f"(got {self.object_lock_mode!r})")
            if self.object_lock_days <= 0:
                raise UsageError("object lock needs a retention of at least 1 day")
        if self.part_size < 64 * 1024:
            raise UsageError(f"S3 part size {self.part_size} is too small")
        return self


@dataclass(frozen=True)
class StoreOptions:
    s3: S3Options = field(default_factory=S3Options)
    connections: int = 4  # parallel transfers (pack uploads) for network stores
    retry_deadline: float = 300.0  # seconds one request may spend retrying transient failures
    limit_upload: float = 0.0  # bytes per second for all uploads of the process; 0: none
    limit_download: float = 0.0
    # Where a remote store's documents are cached (drsync.store.cache); "": not cached.
    cache_dir: str = ""

    def validate(self) -> StoreOptions:
        self.s3.validate()
        if not 1 <= self.connections <= 64:
            raise UsageError(f"connections must be 1..64 (got {self.connections})")
        if self.retry_deadline < 0:
            raise UsageError("the retry deadline must not be negative")
        return self
