"""Run records in the store: one sealed document per run, the truth the catalog rebuilds from.

``runs/<sha256>`` holds a sealed document of type ``R`` (docs/FORMAT.md §12)
written once, when the run's outcome is known (ok, partial, failed, missed,
overrun). Records are sealed with the repository's (the tenant's) key, so the
secondary side learns how every run went, including the ones that wrote no
snapshot, without anyone but the key holder reading them. ``load_runs``
skips an unreadable record with a warning, as ``Repository.snapshots`` does.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from drsync import atomic, outbox
from drsync.errors import UsageError
from drsync.repo.objects import TYPE_RUN
from drsync.repo.records import load_records, record_names, save_record
from drsync.repo.repository import Repository, Warn

log = logging.getLogger(__name__)

__all__ = ["RUN_FIELDS", "RUN_STATUSES", "flush_outbox", "keep_for_later", "load_runs",
           "run_names", "save_run", "save_run_or_warn"]

RUN_STATUSES = ("ok", "partial", "failed", "missed", "overrun")
PREFIX = "runs"
# field -> (types allowed, required): every record carries every field (None when unknown).
RUN_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "run_id": ((str,), True),
    "tenant": ((str,), True),
    "host": ((str,), True),
    "kind": ((str,), True),
    "source": ((str,), False),
    "status": ((str,), True),
    "planned_start": ((str, type(None)), False),
    "deadline": ((str, type(None)), False),
    "started": ((str,), True),
    "finished": ((str, type(None)), False),
    "bytes_read": ((int,), False),
    "bytes_added": ((int,), False),
    "bytes_sent": ((int,), False),
    "snapshot_id": ((str, type(None)), False),
    "error": ((str, type(None)), False),
    "drsync_version": ((str,), False),
}
_TIMES = ("planned_start", "deadline", "started", "finished")
_DEFAULTS: dict[str, Any] = {"source": "", "bytes_read": 0, "bytes_added": 0, "bytes_sent": 0,
                             "drsync_version": ""}


def _validated(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every field, in order; ValueError naming the first bad field."""
    unknown = set(record) - set(RUN_FIELDS) - {"version"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    doc: dict[str, Any] = {"version": 1}
    for name, (types, required) in RUN_FIELDS.items():
        if name not in record:
            if required:
                raise ValueError(f"field {name!r} is missing")
            value = _DEFAULTS.get(name)
        else:
            value = record[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"field {name!r} is negative")
        if name in _TIMES and value is not None:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"field {name!r} is not an ISO 8601 time: {value!r}") from None
            if parsed.tzinfo is None:
                raise ValueError(f"field {name!r} has no time zone: {value!r}")
        doc[name] = value
    if doc["status"] not in RUN_STATUSES:
        raise ValueError(f"field 'status' is {doc['status']!r}, not one of "
                         f"{', '.join(RUN_STATUSES)}")
    if record.get("version", 1) != 1:
        raise ValueError(f"record version {record.get('version')!r} is not supported (1)")
    return doc


def save_run(repo: Repository, record: dict[str, Any]) -> str:
    """Seal and store one run record; return its object id. UsageError for a bad record."""
    return save_record(repo, TYPE_RUN, PREFIX, "run record", _validated, record)


def save_run_or_warn(repo: Repository, record: dict[str, Any], *,
                     quiet: bool = False, store_failed: bool = False) -> None:
    """Seal the run record into the store; a failure is a warning, never the run's result
    (the store is down, full or read-only: the catalog still has the run), and the record
    waits in the outbox (drsync.outbox) for the next run that reaches the store. ``quiet``:
    only logged, for runs that must work with read-only access (restore, check).
    ``store_failed``: the run failed because the store did, whose retry deadline is spent
    already: the record goes to the outbox without another try."""
    if store_failed:
        log.info("run record %s kept for later: the store failed", record["run_id"][:8])
        keep_for_later(repo.url, record)
        return
    try:
        save_run(repo, record)
    except Exception as err:
        message = f"run record {record['run_id'][:8]} not written to the store: {err}"
        if quiet:
            log.info("%s", message)
        else:
            repo.warn(message)
        keep_for_later(repo.url, record)
        return
    flush_outbox(repo)


# The outbox: run records that could not be stored when their run ended (the store was
# down, or the run was found interrupted later), one JSON file each, under a directory
# per repository URL, sent by the next run that stores its own record. Without it, a run
# that failed because the store was down would be missing from a catalog rebuilt from
# the store, and a night that failed would look ok to the secondary side.
def keep_for_later(url: str, record: dict[str, Any]) -> None:
    """Put ``record`` in the outbox of the repository at ``url`` (quietly, at worst lost
    as before: the catalog has the run)."""
    box = outbox.box(url)
    if box is None:
        return
    try:
        box.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic.write_atomic(box / f"{record['run_id']}.json", json.dumps(record))
    except (OSError, KeyError, TypeError, ValueError) as err:
        log.info("run record not kept for later: %s", err)


def flush_outbox(repo: Repository) -> int:
    """Store what waits in the outbox of ``repo``; stops at the first failure (the rest
    waits on). Returns how many records were stored."""
    box = outbox.box(repo.url)
    if box is None or not box.is_dir():
        return 0
    sent = 0
    for path in sorted(box.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            save_run(repo, record)
        except (OSError, ValueError, TypeError, KeyError, UsageError) as err:  # not a record
            log.info("outbox record %s set aside: %s", path.name, err)
            path.replace(path.with_suffix(".bad"))
            continue
        except Exception as err:
            log.info("outbox not sent yet: %s", err)
            break
        path.unlink(missing_ok=True)
        sent += 1
    return sent


def run_names(repo: Repository) -> list[str]:
    return record_names(repo, PREFIX)


def load_runs(repo: Repository, warn: Warn | None = None) -> list[dict[str, Any]]:
    """Every readable run record, one per run id, oldest start first; an unreadable one
    is skipped and ``warn`` is told (naming the object), as for snapshots."""
    records = load_records(repo, TYPE_RUN, PREFIX, "run record", _validated, warn)
    # A record saved twice (a retry) is two objects (fresh nonces): one run, the later end.
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        seen = newest.get(record["run_id"])
        if seen is None or _end(record) >= _end(seen):
            newest[record["run_id"]] = record
    return sorted(newest.values(),
                  key=lambda r: (datetime.fromisoformat(r["started"]), r["run_id"]))


def _end(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["finished"] or record["started"])
