"""pg_basebackup's tar stream read member by member, from a real child process."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from drsync.errors import SourceError
from drsync.sources.postgres.physical import _tar_items
from drsync.sources.postgres.process import ProcessReader

LABEL = (b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
         b"START TIMELINE: 1\nSTART TIME: 2026-12-02 04:00:00 UTC\n")
MANIFEST = json.dumps({"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028",
                                       "End-LSN": "0/2000100"}]}).encode()


def _tar(path: Path, members: list[tuple[str, str, bytes]]) -> Path:
    """A ustar archive as pg_basebackup writes one: (name, kind, content or link target)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, data.decode()
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
    return path


def _items(archive: Path, spec: dict[str, Any], *, read: bool = True,
           command: list[str] | None = None,
           chunk_map: tuple[tuple[int, int], ...] = ((0, 32768),)) -> dict[str, Any]:
    """Each item's entry and, for files, its content read in 32 KiB pieces."""
    out: dict[str, Any] = {}
    with ProcessReader(command or ["cat", str(archive)], "pg_basebackup") as reader:
        for item in _tar_items(reader, spec, chunk_map):
            content = None
            if item.open is not None and (read or item.meta.path.endswith(
                    ("backup_label", "backup_manifest"))):
                with item.open() as fh:
                    content = b"".join(iter(lambda f=fh: f.read(32768), b""))
            out[item.meta.path] = (item.meta, content)
    return out


def _cluster(tmp_path: Path, extra: list[tuple[str, str, bytes]] | None = None) -> Path:
    relation = bytes(range(256)) * 1000 + b"tail"  # 256004 bytes: not a multiple of 512
    return _tar(tmp_path / "base.tar", [
        ("base", "dir", b""), ("base/1", "dir", b""), ("base/1/16384", "file", relation),
        ("PG_VERSION", "file", b"15\n"), ("pg_tblspc", "dir", b""),
        ("pg_tblspc/16400", "symlink", b"/srv/space"), ("empty", "file", b""),
        *(extra or []), ("backup_label", "file", LABEL), ("backup_manifest", "file", MANIFEST),
    ])


def test_every_member_with_its_metadata_and_content(tmp_path: Path) -> None:
    spec: dict[str, Any] = {}
    items = _items(_cluster(tmp_path), spec)
    assert list(items) == ["pgdata/base", "pgdata/base/1", "pgdata/base/1/16384",
                           "pgdata/PG_VERSION", "pgdata/pg_tblspc", "pgdata/pg_tblspc/16400",
                           "pgdata/empty", "pgdata/backup_label", "pgdata/backup_manifest"]
    meta, content = items["pgdata/base/1/16384"]
    assert (meta.type, meta.size, meta.mode) == ("file", 256004, 0o600)
    assert content == bytes(range(256)) * 1000 + b"tail"
    assert meta.mtime_ns == 1_700_000_000 * 1_000_000_000
    assert items["pgdata/PG_VERSION"][1] == b"15\n"
    assert items["pgdata/empty"][1] == b""
    assert items["pgdata/base"][0].type == "dir"
    link = items["pgdata/pg_tblspc/16400"][0]
    assert (link.type, link.target) == ("symlink", "/srv/space")
    assert (spec["start_lsn"], spec["stop_lsn"], spec["timeline"]) == ("0/2000028",
                                                                      "0/2000100", 1)
    assert spec["start_wal"] == "000000010000000000000002"


def test_a_member_is_cut_at_the_chunk_its_size_maps_to(tmp_path: Path) -> None:
    chunks: dict[str, int] = {}
    with ProcessReader(["cat", str(_cluster(tmp_path))], "pg_basebackup") as reader:
        for item in _tar_items(reader, {}, ((0, 32768), (256004, 65536))):
            chunks[item.meta.path] = item.fixed_chunk
            if item.open is not None:
                with item.open() as fh:
                    fh.read()
    assert chunks["pgdata/base/1/16384"] == 65536  # 256004 bytes: reaches the second size
    assert chunks["pgdata/PG_VERSION"] == chunks["pgdata/empty"] == 32768
    assert chunks["pgdata/base"] == 0  # a directory has no content to cut


def test_a_member_left_unread_does_not_shift_the_next_header(tmp_path: Path) -> None:
    spec: dict[str, Any] = {}
    items = _items(_cluster(tmp_path), spec, read=False)
    assert items["pgdata/backup_manifest"][1] == MANIFEST
    assert spec["stop_lsn"] == "0/2000100"


def test_a_hard_link_member_is_refused(tmp_path: Path) -> None:
    archive = _cluster(tmp_path, [("linked", "hardlink", b"PG_VERSION")])
    with pytest.raises(SourceError, match="unexpected tar member type"):
        _items(archive, {})


def test_a_member_escaping_the_data_directory_is_refused(tmp_path: Path) -> None:
    archive = _cluster(tmp_path, [("base/../../etc/passwd", "file", b"x")])
    with pytest.raises(SourceError, match="unexpected member"):
        _items(archive, {})


def test_a_stream_cut_inside_a_member_is_an_error(tmp_path: Path) -> None:
    archive = _cluster(tmp_path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[:100_000])
    with pytest.raises(SourceError, match="truncated"):
        _items(cut, {})


def test_garbage_instead_of_a_header_is_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a tar archive\n" * 100)
    with pytest.raises(SourceError, match="unreadable tar stream"):
        _items(junk, {})


def test_a_failing_pg_basebackup_reports_its_own_error(tmp_path: Path) -> None:
    archive = _cluster(tmp_path)
    command = ["sh", "-c", f"head -c 2048 {archive}; echo 'FATAL: no pg_hba.conf entry' >&2;"
               " exit 1"]
    with pytest.raises(SourceError, match=r"exit 1\).*no pg_hba\.conf entry"):
        _items(archive, {}, command=command)
