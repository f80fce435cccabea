"""drsync.atomic: the one whole-or-nothing writer of drsync's own small files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from drsync import atomic


def test_the_file_is_replaced_whole_with_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    old_umask = os.umask(0o077)  # a umask stricter than the mode asked for
    try:
        atomic.write_atomic(path, "new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    atomic.write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the default: nobody else's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if fd > 2:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic.write_atomic(path, "new" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    atomic.temporary_name(path).symlink_to(victim)
    with pytest.raises(OSError):
        atomic.write_atomic(path, "x")
    assert victim.read_text() == "precious"
    assert not path.exists()


def test_the_temporary_name_can_be_the_callers(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "000000010000000000000001"
    seen: list[list[str]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic.write_atomic(path, b"wal", durable=False, tmp=tmp_path / ".tmp-wal-1")
    monkeypatch.undo()
    assert seen == [[".tmp-wal-1"]]
    assert path.read_bytes() == b"wal"
