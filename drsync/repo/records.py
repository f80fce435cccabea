"""Sealed records under a prefix (run records ``runs/``, drill records ``drills/``):
validated before they are sealed, validated again when read, and an unreadable one
skipped with a warning naming the object, as for snapshots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drsync.errors import IntegrityError, UsageError
from drsync.repo.objects import FormatError
from drsync.repo.repository import Repository, Warn

__all__ = ["load_records", "record_names", "save_record"]

Validate = Callable[[dict[str, Any]], dict[str, Any]]


def save_record(repo: Repository, kind: bytes, prefix: str, what: str, validate: Validate,
                record: dict[str, Any]) -> str:
    """Seal and store one record; return its object id. UsageError for a bad record."""
    try:
        doc = validate(record)
    except ValueError as err:
        raise UsageError(f"{what}: {err}") from None
    oid, _size = repo.save_document(kind, prefix, doc, if_absent=True)
    return oid


def record_names(repo: Repository, prefix: str) -> list[str]:
    return sorted(info.key for info in repo.store.list(f"{prefix}/"))


def load_records(repo: Repository, kind: bytes, prefix: str, what: str, validate: Validate,
                 warn: Warn | None = None) -> list[dict[str, Any]]:
    """Every readable record under ``prefix``, in object-name order; an unreadable one is
    skipped and ``warn`` is told (default: the repository's warning)."""
    warn = warn or repo.warn
    records = []
    for name in record_names(repo, prefix):
        try:
            records.append(validate(repo.load_document(kind, name)))
        except IntegrityError as err:
            warn(f"{str(err).removeprefix(repo.url + ': ')}: skipped")
        except (FormatError, ValueError) as err:
            warn(f"object {name}: malformed {what}: {err}: skipped")
    return records
