"""Helpers shared by tests that need something from the machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine that lacks it; fail under CI, where everything runs."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@contextmanager
def mounted(options: list[str], target: Path, what: str) -> Iterator[Path]:
    """``mount OPTIONS TARGET`` for the duration (needs root)."""
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount {what} (needs root): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)
