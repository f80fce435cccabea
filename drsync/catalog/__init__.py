"""The catalog: a record of runs, in SQLAlchemy (SQLite by default), fed by a journal.

A backup does not talk to the catalog database directly: it appends its
start and end to a local, fsynced journal (``RunJournal``), which costs no
SQLAlchemy import and keeps working when a central catalog on another host
is unreachable. The next time the catalog is opened (``drsync runs``, a
report, the demo) it ingests the journal. The store remains the truth; the
catalog is rebuildable from it.

``Catalog`` (in ``drsync.catalog.db``) is imported lazily: importing this
package does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drsync.catalog.journal import RunJournal, journal_path
from drsync.catalog.records import RunRecorder

if TYPE_CHECKING:
    from drsync.catalog.db import Catalog, RunRecord

__all__ = ["Catalog", "RunJournal", "RunRecord", "RunRecorder", "journal_path"]


def __getattr__(name: str) -> Any:
    if name in ("Catalog", "RunRecord"):
        from drsync.catalog import db

        return getattr(db, name)
    raise AttributeError(name)
