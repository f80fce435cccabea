"""The BCP audit report: per municipality and for the fleet, from recorded evidence.

Modules, by idea::

    settings   [report], [costs] and the tenants' report keys of the fleet file
    evidence   the evidence as plain dataclasses (what was recorded, no verdicts)
    collect    gathering it: the catalog, each copy's store, the planner (the I/O)
    controls   judging it: PASS / WARN / FAIL / NOT_EVALUATED / EXEMPT (pure)
    costs      sharing the secondary site's yearly cost (pure, largest remainder)
    attest     human attestations (who, what, when), recorded, never computed
    document   the canonical JSON document, the source of truth
    csvout, html, charts, pdf   renderings of that document
    seal       the SHA-256 manifest, its Ed25519 signature and the chain
    build      making a sealed report directory
"""

from drsync.report.controls import STATUSES
from drsync.report.settings import CONTROLS

__all__ = ["CONTROLS", "STATUSES"]
