"""wal-push's head start: the same bytes and the same object as reading and compressing
in line, at the level wal-push uses; objects sealed at the old level still read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drsync import entry
from drsync.errors import SourceError
from drsync.repo.codec import compress
from drsync.repo.crypto import MasterKey
from drsync.repo.wal import open_wal, parse_wal_header, seal_wal
from drsync.wal.headstart import HeadStart
from drsync.wal.push import WAL_LEVEL, push_file
from drsync.wal.spool import Spool

SEG = "000000010000000000000007"


def _wal(path: Path) -> bytes:
    data = (os.urandom(4096) + bytes(4096)) * 256 + b"tail" * 1000
    path.write_bytes(data)
    return data


def test_the_fast_path_compresses_at_the_level_wal_push_seals_with() -> None:
    assert entry._WAL_LEVEL == WAL_LEVEL == 3


def test_head_start_gives_the_file_and_its_compression(tmp_path: Path) -> None:
    data = _wal(tmp_path / SEG)
    hs = HeadStart(str(tmp_path / SEG), WAL_LEVEL)
    assert bytes(hs.data()) == data
    assert hs.compressed() == compress(data, WAL_LEVEL)


def test_push_with_a_head_start_seals_what_push_without_one_does(tmp_path: Path) -> None:
    key = MasterKey.generate()
    data = _wal(tmp_path / SEG)
    with_hs = push_file(tmp_path / SEG, Spool(tmp_path / "a"), key,
                        HeadStart(str(tmp_path / SEG), WAL_LEVEL))
    without = push_file(tmp_path / SEG, Spool(tmp_path / "b"), key)
    a = (tmp_path / "a" / SEG).read_bytes()
    b = (tmp_path / "b" / SEG).read_bytes()
    assert with_hs.stored == len(a) and without.stored == len(b)
    assert parse_wal_header(a).content_id == parse_wal_header(b).content_id
    assert open_wal(key, a, SEG)[1] == open_wal(key, b, SEG)[1] == data
    # Pushed again with a head start: a duplicate, compared by content id.
    again = push_file(tmp_path / SEG, Spool(tmp_path / "a"), key,
                      HeadStart(str(tmp_path / SEG), WAL_LEVEL))
    assert again.duplicate


def test_an_unreadable_file_is_the_same_one_line_error(tmp_path: Path) -> None:
    key = MasterKey.generate()
    with pytest.raises(SourceError, match=f"cannot read WAL file .*{SEG}"):
        push_file(tmp_path / SEG, Spool(tmp_path / "s"), key,
                  HeadStart(str(tmp_path / SEG), WAL_LEVEL))
    assert not (tmp_path / "s").exists()


def test_objects_sealed_at_level_1_still_open(tmp_path: Path) -> None:
    key = MasterKey.generate()
    data = _wal(tmp_path / SEG)
    for level in (1, 3, 19):
        assert open_wal(key, seal_wal(key, SEG, data, level), SEG)[1] == data
