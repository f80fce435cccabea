"""Running a runbook's shell blocks as an operator would, and the fixtures they run against."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.dr.conftest import dr_fleet  # noqa: F401  (a fixture: the five-tenant fleet)

ROOT = Path(__file__).resolve().parent.parent.parent
RUNBOOKS = ROOT / "runbooks"


def blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S)


def run_book(name: str, env: dict[str, str], cwd: Path, *, only: slice = slice(None),
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The runbook's ``sh`` blocks (``only`` of them) as one ``set -euo pipefail`` script."""
    script = "set -euo pipefail\n" + "\n".join(blocks(RUNBOOKS / name)[only])
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def operator_env(drsync_bin: str, **extra: str) -> dict[str, str]:
    """The environment of an operator's shell with drsync on PATH and nothing of drsync's set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")}
    env["PATH"] = f"{Path(drsync_bin).parent}:{env['PATH']}"
    env.update(extra)
    return env
