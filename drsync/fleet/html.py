"""The fleet status as one self-contained HTML page: inline CSS, no script, no external
asset, every value escaped. Rows come sorted (problems first, then priority)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from drsync.fleet.status import FleetStatus, TenantRow

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;
background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}
p.meta{margin:0 0 16px;color:#57606a}
.summary span{display:inline-block;margin-right:12px;padding:2px 10px;border-radius:10px;
font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:6px 10px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top;
font-size:14px}
th{background:#eaeef2;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.health{font-weight:700;white-space:nowrap}
tr.no-report td.health,span.no-report{background:#6e7781;color:#fff}
tr.rpo-exceeded td.health,span.rpo-exceeded{background:#cf222e;color:#fff}
tr.degraded td.health,span.degraded{background:#d4a72c;color:#1b1f24}
tr.ok td.health,span.ok{background:#2da44e;color:#fff}
tr.rpo-exceeded{background:#ffebe9}
tr.no-report{background:#f6f8fa}
tr.degraded{background:#fff8c5}
.problems{color:#82071e;font-size:13px}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
"""


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "&mdash;"


def _bytes(n: int | None) -> str:
    if n is None:
        return "&mdash;"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _row(row: TenantRow) -> str:
    rpo = "&mdash;" if row.rpo_now_hours is None else f"{row.rpo_now_hours:.1f} h"
    planned = "&mdash;"
    if row.planned is not None:
        planned = ("unscheduled" if row.planned.start is None
                   else f"{row.planned.start}&ndash;{row.planned.deadline}")
    actual = "&mdash;"
    if row.last_started is not None:
        actual = _t(row.last_started) + " &rarr; " + (
            row.last_finished.strftime("%H:%M UTC") if row.last_finished else "running")
    good = _t(row.last_good_time)
    if row.last_good_snapshot:
        good += f" <code>{escape(row.last_good_snapshot[:8])}</code>"
    problems = "".join(f"<div>{escape(p)}</div>" for p in row.problems)
    cells = [
        f'<td class="tenant">{escape(row.tenant)}</td>',
        f'<td class="num">{row.priority}</td>',
        f'<td class="health">{escape(row.health)}</td>',
        f"<td>{good}</td>",
        f'<td class="num">{rpo} / {row.rpo_hours:g} h</td>',
        f"<td>{escape(row.last_status or '') or '&mdash;'}"
        f'<div class="problems">{problems}</div></td>',
        f'<td class="num">{_bytes(row.bytes_read)}</td>',
        f'<td class="num">{_bytes(row.bytes_sent)}</td>',
        f"<td>{planned}</td>",
        f"<td>{actual}</td>",
    ]
    return (f'<tr class="{escape(row.health)}" data-tenant="{escape(row.tenant)}">'
            + "".join(cells) + "</tr>")


def render_html(status: FleetStatus, title: str = "drsync fleet status") -> str:
    counts = status.counts()
    summary = "".join(f'<span class="{h}">{n} {h}</span>' for h, n in counts.items() if n)
    unknown = ""
    if status.unknown_tenants:
        unknown = ("<p class=\"meta\">Reports from tenants not in the fleet file: "
                   + escape(", ".join(status.unknown_tenants)) + "</p>")
    header = "".join(f"<th>{h}</th>" for h in (
        "tenant", "prio", "health", "last good point", "RPO now / target", "last run",
        "read", "sent", "planned slot", "actual run"))
    body = "\n".join(_row(row) for row in status.rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">Generated <time datetime="{status.generated.isoformat()}">\
{_t(status.generated)}</time>: {len(status.rows)} tenants, problems first, then by priority.</p>
<p class="summary">{summary}</p>
{unknown}
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
