"""Human attestations: what a person states (a policy approved, an exercise held), with
who said so, when it happened and when it was recorded. Never computed: the report
shows them as statements.

The file is JSON lines, one attestation a line, appended with O_APPEND and
fsynced; the report seals a copy of it with the rest of its evidence::

    {"version": 1, "item": "exercise", "tenant": "Nobeoka", "by": "総務課 山田",
     "date": "2026-11-12", "statement": "tabletop, report R-12", "recorded": "2026-...Z"}

``tenant`` is null for a fleet-wide statement.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drsync.errors import ConfigError, UsageError
from drsync.report.labels import ATTEST_ITEMS

__all__ = ["Attestation", "append_attestation", "load_attestations"]


@dataclass(frozen=True)
class Attestation:
    item: str
    tenant: str | None
    by: str
    date: dt.date
    statement: str
    recorded: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "item": self.item, "tenant": self.tenant, "by": self.by,
                "date": self.date.isoformat(), "statement": self.statement,
                "recorded": self.recorded.astimezone(dt.UTC).isoformat()}


def _parse(doc: Any) -> Attestation:
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ValueError("not a version 1 attestation")
    item, by = doc.get("item"), doc.get("by")
    if item not in ATTEST_ITEMS:
        raise ValueError(f"unknown item {item!r}")
    if not isinstance(by, str) or not by.strip():
        raise ValueError("'by' is missing")
    tenant = doc.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ValueError("'tenant' must be a name or null")
    recorded = dt.datetime.fromisoformat(str(doc.get("recorded")))
    if recorded.tzinfo is None:
        raise ValueError("'recorded' has no time zone")
    return Attestation(item, tenant, by, dt.date.fromisoformat(str(doc.get("date"))),
                       str(doc.get("statement") or ""), recorded)


def load_attestations(path: str | Path) -> list[Attestation]:
    """Every attestation of the file (none when it does not exist yet); ConfigError naming
    the line of a malformed one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read attestations: {err}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(_parse(json.loads(line)))
        except ValueError as err:
            raise ConfigError(f"{path}:{number}: malformed attestation: {err}") from None
    return out


def append_attestation(path: str | Path, attestation: Attestation) -> None:
    """Append one attestation durably: the line whole, fsynced."""
    if attestation.item not in ATTEST_ITEMS:
        raise UsageError(f"unknown attestation item {attestation.item!r} (known: "
                         f"{', '.join(ATTEST_ITEMS)})")
    if not attestation.by.strip():
        raise UsageError("--by: who attests is required")
    line = (json.dumps(attestation.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise UsageError(f"{path}: cannot write attestations: {err.strerror}") from None
