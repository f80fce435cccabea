"""Which snapshot paths a restore may write: the pure rule, shared by restore and check.

A snapshot path is relative and '/'-separated. It is refused when it is
absolute, empty, or has an empty, ``.`` or ``..`` component (it could name
something outside the target), when it lies under a symlink or a file entry
of the same snapshot (writing it would pass through that link, or cannot
happen at all), or when a non-directory entry repeats a path already taken.

This module imports nothing of drsync's, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["path_problem", "tree_problems"]


def path_problem(path: str) -> str | None:
    """Why ``path`` alone cannot be restored safely, or None."""
    if not path:
        return "empty path"
    if path.startswith("/"):
        return "absolute path"
    if "\0" in path:
        return "NUL byte in path"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return f"path component {part!r}" if part else "empty path component"
    return None


def tree_problems(entries: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every unsafe entry among ``(path, type)`` pairs.

    Order does not matter for the rule: an entry under a symlink entry is
    refused whether the symlink comes before it or after it.
    """
    problems: list[tuple[str, str]] = []
    types: dict[str, str] = {}
    paths: list[str] = []
    for path, kind in entries:
        reason = path_problem(path)
        if reason is not None:
            problems.append((path, reason))
            continue
        seen = types.get(path)
        if seen is not None and not seen == kind == "dir":
            problems.append((path, f"appears twice ({seen} and {kind})"))
            continue
        types[path] = kind
        paths.append(path)
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            held = types.get(above)
            if held is not None and held != "dir":
                what = "passes through the symlink entry" if held == "symlink" else (
                    "lies under the non-directory entry")
                problems.append((path, f"{what} {above!r}"))
                break
    return problems
