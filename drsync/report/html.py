"""The report document as one self-contained HTML file (Jinja2, autoescaped): inline
CSS, every chart an embedded data URI, no script and no external asset, readable
printed (A4, a page per tenant). Labels are Japanese with the English beside them."""

from __future__ import annotations

from typing import Any

__all__ = ["render_html"]


def render_html(doc: dict[str, Any], *, charts: bool = True) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("drsync.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    images: dict[str, dict[str, str]] = {}
    if charts:
        from drsync.report.charts import render_charts

        images = render_charts(doc)
    template = env.get_template("report.html.j2")
    return template.render(doc=doc, s=doc["summary"], labels=doc["labels"], order=doc["order"],
                           charts=images)
