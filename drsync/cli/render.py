"""Rendering for people (rich) and for scripts (one JSON document on stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["human_bytes", "print_json", "progress_bar"]


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@contextmanager
def progress_bar(description: str, total: int | None = None,
                 enabled: bool = True) -> Iterator[tuple[Callable[[int], None],
                                                         Callable[[int], None]]]:
    """Yield (advance, set_total); a live bar on stderr only when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda _n: None), (lambda _t: None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield ((lambda n: progress.advance(task, n)),
               (lambda t: progress.update(task, total=t or None)))
