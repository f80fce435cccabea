"""Every runbook is written for 3 a.m.: when to use it first, how to verify it worked last."""

from __future__ import annotations

import re

import pytest

from tests.runbooks.conftest import ROOT, RUNBOOKS, blocks

NEW = ("primary-dc-loss.md", "restore-one-tenant.md", "drill.md", "window-overrun.md",
       "add-a-tenant.md", "lost-key.md")


@pytest.mark.parametrize("name", NEW)
def test_starts_with_when_and_ends_with_a_verification_that_runs(name: str) -> None:
    text = (RUNBOOKS / name).read_text()
    first = text.split("\n\n", 2)[1]
    assert first.startswith("**When to use it.**"), first
    last_heading = re.findall(r"^## .*$", text, flags=re.M)[-1]
    assert last_heading.startswith("## ") and "Verify" in last_heading, last_heading
    assert "```sh" in text.split(last_heading, 1)[1], f"{name}: the verification must run"
    assert blocks(RUNBOOKS / name)


def test_readme_links_every_runbook() -> None:
    readme = (ROOT / "README.md").read_text()
    for book in sorted(RUNBOOKS.glob("*.md")):
        assert f"(runbooks/{book.name})" in readme, book.name
