"""The pure rule for which snapshot paths a restore may write."""

from __future__ import annotations

import pytest

from drsync.paths import path_problem, tree_problems


@pytest.mark.parametrize("path", ["", "/etc/passwd", "..", "../x", "a/../../x", "a/./b", "a//b",
                                  "a/", "./a", "a/\0b"])
def test_unsafe_paths_are_named(path: str) -> None:
    assert path_problem(path) is not None


@pytest.mark.parametrize("path", ["a", "a/b.c", "..a/b", "a/...", ".hidden/x", "a b/ç"])
def test_ordinary_paths_pass(path: str) -> None:
    assert path_problem(path) is None


def test_entries_under_a_symlink_or_file_entry_whatever_the_order() -> None:
    entries = [("d", "dir"), ("d/early", "file"), ("d", "dir"), ("l/x", "file"),
               ("l", "symlink"), ("l/y/z", "dir"), ("f", "file"), ("f/g", "file"),
               ("d/early", "symlink"), ("ok", "dir"), ("ok/1", "file")]
    assert tree_problems(entries) == [
        ("d/early", "appears twice (file and symlink)"),
        ("l/x", "passes through the symlink entry 'l'"),
        ("l/y/z", "passes through the symlink entry 'l'"),
        ("f/g", "lies under the non-directory entry 'f'"),
    ]
