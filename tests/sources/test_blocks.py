"""Page-aligned chunks for SQLite: a day's 1% of rows stores about that much, not a tenth."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from drsync import sample
from drsync.backup import BackupRequest, run_backup
from drsync.repo import Repository, SnapshotReader
from drsync.sources.blocks import (
    SQLITE_MAGIC,
    aligned_chunk,
    chunk_for_size,
    file_block_chunk,
    sqlite_page_size,
)
from drsync.testing import make_repo


def _header(page_field: int) -> bytes:
    return SQLITE_MAGIC + page_field.to_bytes(2, "big") + bytes(82)


def test_page_size_from_the_header_and_the_aligned_chunk() -> None:
    assert sqlite_page_size(_header(4096)) == 4096
    assert sqlite_page_size(_header(1)) == 65536  # the header's way of saying 64 KiB
    assert sqlite_page_size(_header(3000)) is None  # not a power of two
    assert sqlite_page_size(_header(256)) is None
    assert sqlite_page_size(b"SQLite format 2\x00" + bytes(84)) is None
    assert sqlite_page_size(SQLITE_MAGIC) is None  # truncated
    assert [aligned_chunk(p) for p in (512, 4096, 8192, 65536)] == [32768] * 3 + [65536]
    assert aligned_chunk(3 * 4096, 32768) == 24576  # a multiple of the block, not above


def test_a_chunk_map_gives_the_chunk_of_the_last_size_a_file_reaches() -> None:
    from drsync.sources.postgres.physical import CHUNK_MAP, LARGE_CHUNK, LARGE_FILE

    assert CHUNK_MAP == ((0, 32768), (16 << 20, 65536))
    assert [chunk_for_size(CHUNK_MAP, n) for n in (0, 8192, LARGE_FILE - 1, LARGE_FILE,
                                                   1 << 30)] == [32768] * 3 + [LARGE_CHUNK] * 2
    three = ((0, 8192), (100, 16384), (1000, 65536))
    assert [chunk_for_size(three, n) for n in (99, 100, 999, 1000)] == [8192, 16384, 16384,
                                                                        65536]
    assert chunk_for_size(((0, 32768),), 1 << 40) == 32768


def _chunk_sizes(repo: Repository, snapshot_id: str) -> dict[str, list[int]]:
    snap = repo.find_snapshot(snapshot_id)
    index = repo.load_index()
    out = {}
    with SnapshotReader(repo, index) as reader:
        for entry in reader.entries(snap):
            if entry.chunks:
                out[entry.path] = [index.get(bytes.fromhex(c)).raw_length  # type: ignore[union-attr]
                                   for c in entry.chunks]
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sample")
    day1, day2 = base / "day1.db", base / "day2.db"
    sample.generate(day1, size_mb=8)
    shutil.copy(day1, day2)
    changed = sample.mutate(day2, fraction=0.01)
    assert changed > 0
    return day1, day2


def test_second_night_stores_about_what_changed(days: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    live = tmp_path / "registry.db"
    repo = make_repo()
    shutil.copy(days[0], live)
    first = run_backup(repo, BackupRequest(sqlite=str(live)))
    shutil.copy(days[1], live)
    second = run_backup(repo, BackupRequest(sqlite=str(live)))
    page = sqlite3.connect(live).execute("PRAGMA page_size").fetchone()[0]
    snap = repo.find_snapshot(second.snapshot_id)
    assert snap.source_spec["fixed_chunk"] == aligned_chunk(page)
    [sizes] = _chunk_sizes(repo, second.snapshot_id).values()
    assert set(sizes[:-1]) == {aligned_chunk(page)}
    # 1% of rows in a few hot regions: 4.5% of this 8 MiB file, compressed (2.1% of the
    # demo's 50 MiB one; 13% with 1 MiB content-defined chunks). Deterministic: seeded.
    growth = second.bytes_added / second.bytes_read
    assert growth < 0.06, f"night 2 stored {growth:.1%} of the database"
    assert first.bytes_added > 8 * second.bytes_added


def test_a_database_in_a_files_backup_is_page_aligned_too(days: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    tree = tmp_path / "app"
    tree.mkdir()
    shutil.copy(days[0], tree / "registry.sqlite")
    text = (tree / "notes.txt")
    text.write_bytes(b"".join(b"line %d of the notes\n" % i for i in range(100_000)))
    repo = make_repo()
    result = run_backup(repo, BackupRequest(paths=[str(tree)]))
    sizes = _chunk_sizes(repo, result.snapshot_id)
    assert set(sizes["app/registry.sqlite"][:-1]) == {32768}
    assert len(sizes["app/notes.txt"]) < 10  # content-defined, about 1 MiB each
    assert file_block_chunk(str(text), text.stat().st_size) == 0
    assert file_block_chunk(str(tree / "registry.sqlite"), 100) == 0  # too small to bother
