"""Drill records in the store: one sealed document per drill, so a lost catalog keeps them.

``drills/<sha256>`` holds a sealed document of type ``D`` (docs/FORMAT.md
§13) written once, when the drill (drsync.drill) has its result: which
snapshot was restored, the measured RTO and RPO, and every check. Sealed
with the repository's key, like run records (drsync.repo.runs), and read
the same way: an unreadable record is skipped with a warning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drsync.repo.objects import TYPE_DRILL
from drsync.repo.records import load_records, save_record
from drsync.repo.repository import Repository, Warn

__all__ = ["DRILL_FIELDS", "load_drills", "save_drill"]

PREFIX = "drills"
DRILL_STATUSES = ("ok", "failed")
# field -> (types allowed, required)
DRILL_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "drill_id": ((str,), True),
    "tenant": ((str,), True),
    "host": ((str,), True),
    "status": ((str,), True),
    "started": ((str,), True),
    "finished": ((str,), True),
    "snapshot_id": ((str, type(None)), True),
    "snapshot_time": ((str, type(None)), True),
    "source_kind": ((str, type(None)), True),
    "rto_s": ((float, int), True),
    "rpo_s": ((float, int, type(None)), True),
    "bytes_restored": ((int,), True),
    "checks": ((list,), True),
    "drsync_version": ((str,), True),
}


def _validated(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its fields in order; ValueError naming the first bad field."""
    unknown = set(record) - set(DRILL_FIELDS) - {"version"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    if record.get("version", 1) != 1:
        raise ValueError(f"record version {record.get('version')!r} is not supported (1)")
    doc: dict[str, Any] = {"version": 1}
    for name, (types, _required) in DRILL_FIELDS.items():
        if name not in record:
            raise ValueError(f"field {name!r} is missing")
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
        doc[name] = value
    for name in ("started", "finished"):
        if datetime.fromisoformat(doc[name]).tzinfo is None:
            raise ValueError(f"field {name!r} has no time zone: {doc[name]!r}")
    if doc["status"] not in DRILL_STATUSES:
        raise ValueError(f"field 'status' is {doc['status']!r}, not ok or failed")
    for check in doc["checks"]:
        if (not isinstance(check, dict) or set(check) != {"name", "ok", "detail"}
                or not isinstance(check["ok"], bool) or not isinstance(check["name"], str)
                or not isinstance(check["detail"], str)):
            raise ValueError("field 'checks' holds an entry that is not {name, ok, detail}")
    return doc


def save_drill(repo: Repository, record: dict[str, Any]) -> str:
    """Seal and store one drill record; return its object id. UsageError for a bad record."""
    return save_record(repo, TYPE_DRILL, PREFIX, "drill record", _validated, record)


def load_drills(repo: Repository, warn: Warn | None = None) -> list[dict[str, Any]]:
    """Every readable drill record, one per drill id, oldest start first."""
    found = {doc["drill_id"]: doc
             for doc in load_records(repo, TYPE_DRILL, PREFIX, "drill record", _validated, warn)}
    return sorted(found.values(), key=lambda d: (datetime.fromisoformat(d["started"]),
                                                 d["drill_id"]))
