"""Shared fixtures: isolated environment for every test, a fast KDF for the CLI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DRSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DRSYNC_INSECURE_TEST_KDF", "1")
    yield


@pytest.fixture
def drsync_bin() -> str:
    path = shutil.which("drsync")
    if path is None:
        venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "drsync"
        path = str(venv)
    return path
