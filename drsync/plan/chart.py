"""A picture of the night: a Gantt row per tenant, each link's load beneath.

matplotlib is imported here, lazily, with the Agg backend, so that plain
``drsync plan`` (and every other command) never pays for it.
"""

from __future__ import annotations

from pathlib import Path

from drsync.plan.schedule import Plan

__all__ = ["CHART_SUFFIXES", "link_load", "write_chart"]

CHART_SUFFIXES = (".png", ".svg")


def link_load(plan: Plan, link: str) -> tuple[list[float], list[float]]:
    """The link's total send rate (Mbit/s) as a step function: (times, rates after each)."""
    deltas: dict[float, float] = {0.0: 0.0, plan.window_s: 0.0}
    for slot in plan.slots:
        if slot.tenant.link != link:
            continue
        for s in slot.sends:
            deltas[s.from_s] = deltas.get(s.from_s, 0.0) + s.mbit_per_s
            deltas[s.to_s] = deltas.get(s.to_s, 0.0) - s.mbit_per_s
    times, rates, level = [], [], 0.0
    for t in sorted(deltas):
        level += deltas[t]
        times.append(t)
        rates.append(max(0.0, level))
    return times, rates


def write_chart(plan: Plan, path: str | Path, title: str | None = None) -> Path:
    """Draw ``plan`` to ``path`` (.png or .svg, by suffix) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    slots = sorted(plan.slots, key=lambda s: (s.tenant.link, s.end_s))
    links = plan.fleet.links
    rows = max(1, len(slots))
    gantt_h = min(0.22 * rows + 1.0, 30.0)
    fig, axes = plt.subplots(
        1 + len(links), 1, sharex=True, squeeze=False,
        figsize=(11, gantt_h + 1.8 * len(links)),
        gridspec_kw={"height_ratios": [gantt_h] + [1.8] * len(links)},
    )
    to_h = 1 / 3600.0
    gantt = axes[0][0]
    colours = {lk.name: f"C{i}" for i, lk in enumerate(links)}
    for row, slot in enumerate(slots):
        y = rows - 1 - row
        prep = slot.ready_s - slot.start_s
        gantt.barh(y, prep * to_h, left=slot.start_s * to_h, height=0.6, color="0.85")
        cap = plan.fleet.link(slot.tenant.link).mbit_per_s
        for s in slot.sends:
            alpha = 0.35 + 0.65 * min(1.0, s.mbit_per_s / cap)
            gantt.barh(y, (s.to_s - s.from_s) * to_h, left=s.from_s * to_h, height=0.6,
                       color=colours[slot.tenant.link], alpha=alpha)
    gantt.set_yticks(range(rows))
    labels = [s.tenant.name for s in reversed(slots)] or [""]
    gantt.set_yticklabels(labels, fontsize=7 if rows < 60 else 4)
    gantt.set_ylim(-1, rows)
    window_h = plan.window_s * to_h
    gantt.axvline(window_h, color="red", linewidth=1)
    gantt.set_title(title or f"{plan.fleet.source}: {plan.fits} of "
                    f"{len(plan.fleet.tenants)} tenants fit "
                    f"(grey: preparing; colour: sending, darker = faster)")
    for ax, link in zip((row[0] for row in axes[1:]), links, strict=True):
        times, rates = link_load(plan, link.name)
        ax.fill_between([t * to_h for t in times], rates, step="post",
                        color=colours[link.name], alpha=0.6)
        ax.axhline(link.mbit_per_s, color="red", linewidth=1, linestyle="--")
        ax.set_ylim(0, link.mbit_per_s * 1.1)
        ax.set_ylabel(f"{link.name}\nMbit/s", fontsize=8)
    axes[-1][0].set_xlim(0, window_h * 1.02)
    axes[-1][0].set_xlabel(f"hours after {plan.fleet.window.start}")
    fig.tight_layout()
    fig.savefig(path, format=path.suffix.lstrip(".").lower())
    plt.close(fig)
    return path
