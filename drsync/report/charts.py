"""The report's charts, drawn with matplotlib (Agg) from the report document and returned
as PNG data URIs for the HTML (and so the PDF): nothing is written to disk.

``heatmap``         tenant x control, coloured by status
``rpo_age``         each tenant's recovery-point age over the period as a share of its RPO
                    (the sawtooth; above the 100 % line the RPO was exceeded)
``tenant_rpo_<i>``  the same sawtooth for one tenant, in hours, against its RPO
``restore_vs_rto``  the last successful drill's restore time as a share of the RTO
``drill_recency``   days since the last successful drill against the tenant's limit
``job_success``     backup runs per night across the fleet, ok and not ok
``window``          the planner's night: each tenant's slot (Gantt) in the window
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import warnings
from typing import Any

__all__ = ["STATUS_COLOURS", "render_charts"]

STATUS_COLOURS = {"PASS": "#2da44e", "WARN": "#d4a72c", "FAIL": "#cf222e",
                  "NOT_EVALUATED": "#6e7781", "EXEMPT": "#0969da"}
FONTS = ["IPAPGothic", "IPAGothic", "Noto Sans CJK JP", "DejaVu Sans"]
PER_TENANT_LIMIT = 60  # more tenants: the fleet sawtooth only, to keep the page light


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _sawtooth(tenant: dict[str, Any], first: dt.datetime,
              as_of: dt.datetime) -> tuple[list[dt.datetime], list[float]]:
    """Times and the newest good point's age (hours) at each: up until each new point,
    back to zero at it."""
    points = sorted(_time(r["started"]) for r in tenant["backup_runs"] if r["status"] == "ok")
    before = [p for p in points if p < first]
    newest = before[-1] if before else None
    xs: list[dt.datetime] = [first]
    ys: list[float] = [float("nan") if newest is None else (first - newest).total_seconds()
                       / 3600]
    for p in points:
        if p < first or p >= as_of:
            continue
        if newest is not None:
            xs.append(p)
            ys.append((p - newest).total_seconds() / 3600)
        xs.append(p)
        ys.append(0.0)
        newest = p
    xs.append(as_of)
    ys.append(float("nan") if newest is None else (as_of - newest).total_seconds() / 3600)
    return xs, ys


def render_charts(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: dict[str, dict[str, str]] = {}
    tenants = doc["tenants"]
    if not tenants:
        return charts
    with warnings.catch_warnings(), plt.rc_context({"font.family": "sans-serif",
                                                    "font.sans-serif": FONTS,
                                                    "font.size": 8}):
        warnings.simplefilter("ignore")  # a glyph no installed font has: drawn as a box
        charts["heatmap"] = _heatmap(plt, doc)
        first = _time(doc["period"]["start"])
        as_of = _time(doc["as_of"])
        charts["rpo_age"] = _rpo_age(plt, tenants, first, as_of)
        if len(tenants) <= PER_TENANT_LIMIT:
            for i, t in enumerate(tenants):
                charts[f"tenant_rpo_{i}"] = _tenant_rpo(plt, t, first, as_of)
        charts["restore_vs_rto"] = _restore_vs_rto(plt, tenants)
        charts["drill_recency"] = _drill_recency(plt, tenants, as_of)
        charts["job_success"] = _job_success(plt, tenants, first, as_of)
        window = doc["summary"].get("window")
        if window and window.get("slots") is not None:
            charts["window"] = _window(plt, window)
    return charts


def _height(n: int) -> float:
    return min(1.2 + 0.28 * n, 24.0)


def _heatmap(plt: Any, doc: dict[str, Any]) -> dict[str, str]:
    from matplotlib.colors import ListedColormap

    controls = doc["order"]["controls"]
    statuses = list(STATUS_COLOURS)
    tenants = doc["tenants"]
    grid = [[statuses.index(t["controls"][c]["status"]) for c in controls] for t in tenants]
    fig, ax = plt.subplots(figsize=(8, _height(len(tenants)) + 0.6))
    ax.imshow(grid, cmap=ListedColormap([STATUS_COLOURS[s] for s in statuses]), vmin=0,
              vmax=len(statuses) - 1, aspect="auto")
    ax.set_xticks(range(len(controls)), controls, fontsize=7)
    ax.set_yticks(range(len(tenants)), [t["name"] for t in tenants])
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            ax.text(x, y, statuses[value].replace("NOT_EVALUATED", "N/E"), ha="center",
                    va="center", color="white" if statuses[value] != "WARN" else "black",
                    fontsize=6)
    ax.set_title("統制ヒートマップ / tenant x control")
    fig.tight_layout()
    return {"uri": _uri(fig), "alt": "Heatmap of every tenant's status per control"}


def _rpo_age(plt: Any, tenants: list[dict[str, Any]], first: dt.datetime,
             as_of: dt.datetime) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(8, 2.8))
    for t in tenants:
        xs, ys = _sawtooth(t, first, as_of)
        target = float(t["targets"]["rpo_hours"])
        ax.plot(xs, [100 * y / target for y in ys], linewidth=0.9, label=t["name"])
    ax.axhline(100, color="red", linestyle="--", linewidth=1)
    ax.set_ylabel("% of RPO")
    ax.set_title("復旧点の経過時間 (RPO比) / recovery-point age as a share of the RPO")
    if len(tenants) <= 12:
        ax.legend(fontsize=6, ncols=4, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return {"uri": _uri(fig), "alt": "Recovery-point age of every tenant against its RPO"}


def _tenant_rpo(plt: Any, t: dict[str, Any], first: dt.datetime,
                as_of: dt.datetime) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(7, 1.8))
    xs, ys = _sawtooth(t, first, as_of)
    ax.plot(xs, ys, color="#0969da", linewidth=1)
    ax.axhline(float(t["targets"]["rpo_hours"]), color="red", linestyle="--", linewidth=1)
    ax.set_ylabel("hours")
    ax.set_title(f"{t['name']}: 復旧点の経過時間 / recovery-point age vs RPO", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return {"uri": _uri(fig), "alt": f"{t['name']}: recovery-point age against the RPO"}


def _bars(plt: Any, names: list[str], values: list[float | None], limit: list[float] | float,
          title: str, xlabel: str) -> Any:
    fig, ax = plt.subplots(figsize=(8, _height(len(names))))
    ys = range(len(names))
    shown = [0.0 if v is None else v for v in values]
    limits = limit if isinstance(limit, list) else [limit] * len(names)
    colours = ["#6e7781" if v is None else ("#cf222e" if v > lim else "#2da44e")
               for v, lim in zip(values, limits, strict=True)]
    ax.barh(list(ys), shown, color=colours)
    for y, v in zip(ys, values, strict=True):
        if v is None:
            ax.text(0, y, " none", va="center", fontsize=7)
    if isinstance(limit, list):
        for y, lim in zip(ys, limit, strict=True):
            ax.plot([lim, lim], [y - 0.4, y + 0.4], color="red", linewidth=1.5)
    else:
        ax.axvline(limit, color="red", linestyle="--", linewidth=1)
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def _restore_vs_rto(plt: Any, tenants: list[dict[str, Any]]) -> dict[str, str]:
    values: list[float | None] = []
    for t in tenants:
        d = t["last_drill"]
        values.append(None if d is None or d["status"] != "ok" else
                      100 * d["rto_s"] / (t["targets"]["rto_hours"] * 3600))
    fig = _bars(plt, [t["name"] for t in tenants], values, 100.0,
                "復旧時間 (RTO比) / last drill's restore time as a share of the RTO",
                "% of RTO")
    return {"uri": _uri(fig), "alt": "Restore time of the last drill against the RTO"}


def _drill_recency(plt: Any, tenants: list[dict[str, Any]],
                   as_of: dt.datetime) -> dict[str, str]:
    values: list[float | None] = []
    for t in tenants:
        d = t["last_drill"]
        values.append(None if d is None else (as_of - _time(d["started"])).total_seconds()
                      / 86400)
    fig = _bars(plt, [t["name"] for t in tenants], values,
                [float(t["targets"]["drill_max_age_days"]) for t in tenants],
                "最終訓練からの日数 / days since the last drill (red mark: the limit)", "days")
    return {"uri": _uri(fig), "alt": "Days since each tenant's last drill against its limit"}


def _job_success(plt: Any, tenants: list[dict[str, Any]], first: dt.datetime,
                 as_of: dt.datetime) -> dict[str, str]:
    days = [(first + dt.timedelta(days=i)).date()
            for i in range(max(1, (as_of - first).days + (1 if as_of.time() else 0)))]
    ok = dict.fromkeys(days, 0)
    bad = dict.fromkeys(days, 0)
    for t in tenants:
        for r in t["backup_runs"]:
            day = _time(r["started"]).date()
            if day in ok and r["status"] != "running":
                if r["status"] == "ok":
                    ok[day] += 1
                else:
                    bad[day] += 1
    fig, ax = plt.subplots(figsize=(8, 2.4))
    ax.bar(days, [ok[d] for d in days], color="#2da44e", label="ok")
    ax.bar(days, [bad[d] for d in days], bottom=[ok[d] for d in days], color="#cf222e",
           label="failed / missed / overrun")
    ax.set_ylabel("backup runs")
    ax.set_title("夜間ジョブの成否 / backup runs per night")
    ax.legend(fontsize=6)
    fig.autofmt_xdate()
    fig.tight_layout()
    return {"uri": _uri(fig), "alt": "Backup runs per night, ok and not ok"}


def _window(plt: Any, window: dict[str, Any]) -> dict[str, str]:
    slots = window["slots"]
    fig, ax = plt.subplots(figsize=(8, _height(len(slots) + len(window["unfit"]))))
    names = []
    for y, s in enumerate(slots):
        ax.barh(y, (s["ready_s"] - s["start_s"]) / 3600, left=s["start_s"] / 3600,
                color="0.8", height=0.6)
        ax.barh(y, (s["end_s"] - s["ready_s"]) / 3600, left=s["ready_s"] / 3600,
                color="#0969da", height=0.6)
        names.append(s["tenant"])
    for u in window["unfit"]:
        names.append(f"{u['tenant']} (does not fit)")
    ax.axvline(window["minutes"] / 60, color="red", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"hours after {window['start']}")
    ax.set_title("夜間枠の計画 / the planner's night window (grey: preparing; blue: sending)")
    fig.tight_layout()
    return {"uri": _uri(fig), "alt": "Gantt chart of the planner's night window"}
