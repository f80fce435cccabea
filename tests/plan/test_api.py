"""The public API is what __all__ says, and the planner imports no other drsync layer."""

from __future__ import annotations

import ast
from pathlib import Path

import drsync.plan


def test_all_names_exist() -> None:
    for name in drsync.plan.__all__:
        assert hasattr(drsync.plan, name), name
    assert sorted(drsync.plan.__all__) == sorted(set(drsync.plan.__all__))


def test_plan_imports_only_itself_and_errors() -> None:
    for path in Path(drsync.plan.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("drsync"):
                assert node.module == "drsync.errors" or node.module.startswith(
                    "drsync.plan"), (path.name, node.module)


def test_matplotlib_is_not_imported_by_planning() -> None:
    import subprocess
    import sys

    code = ("import sys, drsync.plan; drsync.plan.plan_fleet; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
