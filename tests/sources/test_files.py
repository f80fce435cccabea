"""File trees through the backup and restore services: content, modes, mtimes, links."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import EXIT_PARTIAL, IntegrityError, UsageError
from drsync.repo import Repository
from drsync.restore import restore_snapshot
from drsync.store import LocalStore
from drsync.testing import make_repo, text_like
from tests.helpers import mounted


def _tree(root: Path) -> dict[str, tuple[str, int, int, bytes | str]]:
    """Everything a restore must reproduce: type, mode, mtime, content or link target."""
    out: dict[str, tuple[str, int, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, st.st_mtime_ns, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "municipal"
    (src / "tax" / "2026").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "tax" / "2026" / "ledger.csv").write_bytes(text_like(300_000, seed=1))
    (src / "registry.dump").write_bytes(os.urandom(200_000) + text_like(2_000_000, seed=2))
    (src / "empty.txt").write_bytes(b"")
    (src / "secret.conf").write_text("mode 600\n")
    os.chmod(src / "secret.conf", 0o600)
    os.chmod(src / "tax", 0o750)
    os.symlink("tax/2026/ledger.csv", src / "current-ledger")
    os.symlink("/nonexistent/target", src / "dangling")
    for i, path in enumerate(sorted(src.rglob("*"))):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i * 1000,) * 2, follow_symlinks=False)
    os.utime(src, ns=(1_500_000_000_123_456_789,) * 2)
    return src


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return make_repo(LocalStore(tmp_path / "repo"), chunk_avg=16 * 1024, chunk_min=4096,
                     chunk_max=64 * 1024)


def test_tree_roundtrip_restores_content_modes_mtimes_links(
        source: Path, repo: Repository, tmp_path: Path) -> None:
    result = run_backup(repo, BackupRequest(paths=[str(source)]))
    assert result.exit_code == 0 and not result.problems
    target = tmp_path / "restore"
    restored = restore_snapshot(repo, result.snapshot_id[:10], target=target)
    assert _tree(target / "municipal") == _tree(source)
    assert (target / "municipal").stat().st_mtime_ns == source.stat().st_mtime_ns
    assert restored.bytes_written == result.bytes_read


def test_special_files_are_reported_and_skipped(source: Path, repo: Repository) -> None:
    os.mkfifo(source / "pipe")
    result = run_backup(repo, BackupRequest(paths=[str(source)]))
    assert [p.path for p in result.problems] == [str(source / "pipe")]
    assert result.exit_code == 0  # skipped by design, not a partial run


@pytest.fixture
def unreadable_file(source: Path) -> Iterator[Path]:
    """A file this process cannot open: mode 000, or, for root (who reads anything), a
    bind mount of another process's memory, which the kernel refuses to open."""
    path = source / "secret.conf"
    if os.geteuid() != 0:
        os.chmod(path, 0)
        yield path
        return
    with mounted(["--bind", "/proc/1/mem"], path, "an unreadable file"):
        yield path


def test_unreadable_file_is_reported_rest_backed_up_run_is_partial(
        source: Path, repo: Repository, tmp_path: Path, unreadable_file: Path) -> None:
    result = run_backup(repo, BackupRequest(paths=[str(source)]))
    assert result.exit_code == EXIT_PARTIAL
    assert [p.path for p in result.problems if p.partial] == [str(unreadable_file)]
    assert "denied" in result.problems[0].reason
    target = tmp_path / "restore"
    restore_snapshot(repo, "latest", target=target)
    assert (target / "municipal" / "registry.dump").read_bytes() == (
        source / "registry.dump").read_bytes()
    assert not (target / "municipal" / "secret.conf").exists()


def test_restore_refuses_to_overwrite_and_paths_outside_target(
        source: Path, repo: Repository, tmp_path: Path) -> None:
    run_backup(repo, BackupRequest(paths=[str(source)]))
    target = tmp_path / "restore"
    (target / "municipal").mkdir(parents=True)
    (target / "municipal" / "registry.dump").write_bytes(b"precious")
    with pytest.raises(UsageError, match="already exists"):
        restore_snapshot(repo, "latest", target=target)
    assert (target / "municipal" / "registry.dump").read_bytes() == b"precious"


def test_a_corrupt_blob_leaves_no_half_file(source: Path, repo: Repository,
                                            tmp_path: Path) -> None:
    run_backup(repo, BackupRequest(paths=[str(source)]))
    packs = sorted(Path(repo.store.url).glob("data/*/*"), key=lambda p: p.stat().st_size)
    big = packs[-1]
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0xFF
    big.write_bytes(bytes(data))
    target = tmp_path / "restore"
    with pytest.raises(IntegrityError, match=big.name):
        restore_snapshot(repo, "latest", target=target)
    leftovers = [p for p in target.rglob("*") if p.name.endswith(".drsync-tmp")]
    assert leftovers == []


def test_two_sources_with_one_name_are_refused(tmp_path: Path, repo: Repository) -> None:
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    with pytest.raises(UsageError, match="share the name"):
        run_backup(repo, BackupRequest(paths=[str(tmp_path / "a" / "data"),
                                              str(tmp_path / "b" / "data")]))


def test_without_anonymous_files_named_temporaries_restore_the_same_tree(
        source: Path, repo: Repository, tmp_path: Path) -> None:
    """Where O_TMPFILE is missing (or /proc is not mounted), files are written to hidden
    named temporaries and linked into place: the same tree, nothing left over."""
    from drsync.repo import SnapshotReader
    from drsync.restore import write_tree
    from drsync.sources.tree import FileTreeTarget

    class NoAnonymousFiles(FileTreeTarget):
        def _open_anonymous(self, parent: int) -> int | None:
            return None

    run_backup(repo, BackupRequest(paths=[str(source)]))
    restore_snapshot(repo, "latest", target=tmp_path / "anonymous")
    snap = repo.find_snapshot("latest")
    named = tmp_path / "named"
    with SnapshotReader(repo) as reader, NoAnonymousFiles(named) as tree:
        write_tree(reader, snap, tree)
    assert _tree(named) == _tree(tmp_path / "anonymous") != {}
    assert [p for p in named.rglob("*") if p.name.endswith(".drsync-tmp")] == []


def test_a_large_restore_leaves_only_its_last_windows_in_the_page_cache(
        tmp_path: Path) -> None:
    """A restore waits for each 16 MiB window's writeback a window later and drops its
    pages: the page cache holds a few windows of a restored file, not all of it, and the
    file is still whole. (On a VM that returns free memory to its host, writing into
    pages freed seconds ago cost 3x the system time of reusing pages just freed.)"""
    import hashlib

    from drsync.sources.tree import _WRITEBACK_EVERY
    from tests.helpers import can_drop_cached_pages, resident_bytes

    if not can_drop_cached_pages(tmp_path):
        pytest.skip(f"{tmp_path} keeps every page in memory (tmpfs): nothing to drop")
    size = 8 * _WRITEBACK_EVERY + 12345
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.dump").write_bytes(os.urandom(size))
    repo = make_repo(LocalStore(tmp_path / "repo"))
    run_backup(repo, BackupRequest(paths=[str(src / "big.dump")]))
    restore_snapshot(repo, "latest", target=tmp_path / "out")
    restored = tmp_path / "out" / "big.dump"
    cached = resident_bytes(restored)  # before anything reads it back
    assert cached <= 3 * _WRITEBACK_EVERY, f"{cached >> 20} MiB of {size >> 20} still cached"
    original = hashlib.sha256((src / "big.dump").read_bytes()).digest()
    assert hashlib.sha256(restored.read_bytes()).digest() == original


def test_a_large_restore_flushes_ahead_of_its_final_sync_and_leaves_no_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every few windows one fdatasync runs on a thread of its own while the restore goes
    on (a virtual disk's host held what the final syncfs then waited for at once); the
    file is whole and no flusher is left running."""
    import hashlib
    import threading

    from drsync.sources import tree

    flushed: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.dump").write_bytes(os.urandom(40 * (256 << 10) + 777))
    repo = make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 << 10, chunk_min=16 << 10,
                     chunk_max=256 << 10)
    run_backup(repo, BackupRequest(paths=[str(src / "big.dump")]))
    monkeypatch.setattr(tree, "_WRITEBACK_EVERY", 256 << 10)
    monkeypatch.setattr(tree.os, "fdatasync", counted)  # the restore's calls only
    restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert flushed  # flushed ahead at least once (at most one at a time)
    assert not [t for t in threading.enumerate() if t.name == "restore-flush"]
    assert hashlib.sha256((tmp_path / "out" / "big.dump").read_bytes()).digest() == \
        hashlib.sha256((src / "big.dump").read_bytes()).digest()
    assert not (tmp_path / "out" / tree.UNFINISHED).exists()


def test_a_flush_ahead_that_fails_fails_the_restore_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error in a flush ahead (here made by the test: a disk cannot be made to
    fail on cue) is not lost on its thread: the restore fails naming the file, and the
    target stays marked unfinished for the run that resumes it."""
    import errno

    from drsync.errors import RestoreTargetError
    from drsync.sources import tree

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.dump").write_bytes(os.urandom(40 * (256 << 10)))
    repo = make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 << 10, chunk_min=16 << 10,
                     chunk_max=256 << 10)
    run_backup(repo, BackupRequest(paths=[str(src / "big.dump")]))
    monkeypatch.setattr(tree, "_WRITEBACK_EVERY", 256 << 10)
    monkeypatch.setattr(tree.os, "fdatasync", failing)
    with pytest.raises(RestoreTargetError, match=r"big\.dump: Input/output error"):
        restore_snapshot(repo, "latest", target=tmp_path / "out")
    assert (tmp_path / "out" / tree.UNFINISHED).exists()


def test_a_files_source_is_known_by_its_absolute_paths(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention groups by it: `backup data` in two directories is two sources (the
    only snapshot of one was removed as the older of "one" group), `backup src` and
    `backup /abs/src` one."""
    from drsync.repo.retention import RetentionPolicy, apply_policy

    for town in ("x", "y"):
        (tmp_path / town / "data").mkdir(parents=True)
        (tmp_path / town / "data" / f"{town}.csv").write_text(town)
    repo = make_repo()
    for town in ("x", "y"):
        monkeypatch.chdir(tmp_path / town)
        run_backup(repo, BackupRequest(paths=["data"], host="h3"))
    run_backup(repo, BackupRequest(paths=[str(tmp_path / "y" / "data")], host="h3"))
    groups = apply_policy(repo.snapshots(), RetentionPolicy(keep_last=1))
    assert sorted((g.source, len(g.decisions)) for g in groups) == [
        (f'files {{"paths": ["{tmp_path / "x" / "data"}"]}}', 1),
        (f'files {{"paths": ["{tmp_path / "y" / "data"}"]}}', 2)]
    assert all(len(g.kept) == 1 for g in groups)  # x's only snapshot is kept
