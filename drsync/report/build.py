"""Making a report directory: collect, assess, share costs, render, seal.

The directory appears whole or not at all: everything is written into a
temporary sibling, sealed there, then renamed to ``out``. ``out`` must not
exist yet (a signed report is never rewritten in place).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drsync.errors import UsageError
from drsync.report.attest import load_attestations
from drsync.report.controls import assess
from drsync.report.costs import Sharing, share_costs
from drsync.report.document import build_document, canonical_json
from drsync.report.evidence import Evidence, Period, evidence_to_json
from drsync.report.seal import key_id, load_private_key, previous_link, seal_report
from drsync.report.settings import ReportSettings

if TYPE_CHECKING:
    from drsync.catalog.db import Catalog
    from drsync.plan.fleet import Fleet
    from drsync.settings import Settings

__all__ = ["FORMATS", "BuiltReport", "make_report", "parse_formats", "parse_period",
           "write_report"]

FORMATS = ("json", "csv", "html", "pdf")


@dataclass(frozen=True)
class BuiltReport:
    directory: Path
    report_id: str
    files: tuple[str, ...]
    document: dict[str, Any]


def parse_period(text: str, timezone: str = "UTC") -> Period:
    """``2026-11-01..2026-11-30`` (whole days of ``timezone``, inclusive); UsageError
    naming the flag."""
    first, sep, last = text.partition("..")
    try:
        if not sep:
            raise ValueError("expected FIRST..LAST")
        period = Period(dt.date.fromisoformat(first.strip()), dt.date.fromisoformat(last.strip()),
                        timezone)
    except ValueError as err:
        raise UsageError(f"--period {text}: {err} (e.g. --period 2026-11-01..2026-11-30)"
                         ) from None
    if period.last < period.first:
        raise UsageError(f"--period {text}: the last day is before the first")
    return period


def parse_formats(text: str) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise UsageError(f"--format {text}: unknown format {unknown[0]!r} (known: "
                         f"{', '.join(FORMATS)})")
    return ("json", *(f for f in wanted if f != "json"))  # JSON is the source of truth


def _sharing(report: ReportSettings, evidence: Evidence, stored: dict[str, int],
             sent: dict[str, int]) -> Sharing | None:
    if report.costs is None:
        return None
    names = [t.name for t in report.tenants]
    measures = {"population": {t.name: t.population for t in report.tenants},
                "stored_bytes": stored, "sent_bytes": sent}
    return share_costs(report.costs, names, measures)


def make_report(fleet: Fleet, report: ReportSettings, catalog: Catalog, settings: Settings,
                period: Period, out: str | Path, *, formats: Sequence[str],
                signing_key: str, previous: str | None = None,
                now: dt.datetime | None = None) -> BuiltReport:
    """Collect the evidence and write the sealed report directory ``out``."""
    from drsync.report.collect import collect

    out = Path(out)
    if out.exists():
        raise UsageError(f"--out {out}: exists; a signed report is never rewritten (choose "
                         "a new directory)")
    key = load_private_key(signing_key)
    link = previous_link(previous, out) if previous else None
    now = now or dt.datetime.now(dt.UTC)
    if period.start > now:
        raise UsageError(f"--period {period}: starts in the future")
    evidence = collect(fleet, report, catalog, settings, period, now)
    return write_report(evidence, report, out, formats=formats, key=key, previous=link)


def write_report(evidence: Evidence, report: ReportSettings, out: str | Path, *,
                 formats: Sequence[str], key: Any, previous: dict[str, Any] | None,
                 report_id: str | None = None) -> BuiltReport:
    """Assess, render and seal ``evidence`` into the new directory ``out``."""
    out = Path(out)
    report_id = report_id or uuid.uuid4().hex
    assessments = assess(evidence, report)
    stored = {a.tenant: a.facts.stored_bytes for a in assessments}
    sent = {a.tenant: a.facts.sent_bytes for a in assessments}
    sharing = _sharing(report, evidence, stored, sent)
    attestations = load_attestations(report.attestations) if report.attestations else []
    fleet_bytes = Path(report.source).read_bytes()
    doc = build_document(evidence, report, assessments, sharing, attestations,
                         report_id=report_id,
                         config_sha256=hashlib.sha256(fleet_bytes).hexdigest(),
                         signer_key_id=key_id(key.public_key()), previous=previous)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "evidence").mkdir()
        (tmp / "evidence" / "evidence.json").write_bytes(canonical_json(
            evidence_to_json(evidence)))
        (tmp / "evidence" / "fleet.toml").write_bytes(fleet_bytes)
        if report.attestations and Path(report.attestations).exists():
            shutil.copyfile(report.attestations, tmp / "evidence" / "attestations.jsonl")
        _render(doc, tmp, formats)
        seal_report(tmp, key, report_id=report_id, created=str(doc["generated"]["utc"]),
                    previous=previous)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = tuple(sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()))
    return BuiltReport(out, report_id, files, doc)


def _render(doc: dict[str, Any], directory: Path, formats: Sequence[str]) -> None:
    (directory / "report.json").write_bytes(canonical_json(doc))
    # The other renderings read the JSON back: they see exactly what was sealed.
    doc = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    if "csv" in formats:
        from drsync.report.csvout import write_csv

        write_csv(doc, directory)
    html = None
    if "html" in formats or "pdf" in formats:
        from drsync.report.html import render_html

        html = render_html(doc)
        if "html" in formats:
            (directory / "report.html").write_text(html, encoding="utf-8")
    if "pdf" in formats:
        from drsync.report.pdf import write_pdf

        assert html is not None
        write_pdf(html, directory / "report.pdf",
                  attachments=[directory / "report.json", *sorted(directory.glob("*.csv"))])
