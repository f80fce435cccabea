"""A restore writes only inside its target: attacks through symlinks and crafted snapshots.

Each test takes a fingerprint of a directory outside the target (names, types,
content hashes, modes, owners, mtimes) before and after, and asserts it did not
change. The machine runs the suite as root, where these attacks matter most.
"""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import UnsafePath, UsageError
from drsync.pgrestore import restore_pgdata
from drsync.repo import Entry, Repository, Snapshot, SnapshotReader, SnapshotWriter
from drsync.repo.check import check_repository
from drsync.restore import restore_snapshot
from drsync.sources import FileTreeTarget
from drsync.sources.postgres import RecoveryTarget
from drsync.store import LocalStore
from drsync.testing import make_repo

PASSPHRASE = "correct horse"
T0 = 1_600_000_000_000_000_000

Fingerprint = dict[str, tuple[str, int, int, int, int, str]]


def _fingerprint(root: Path) -> Fingerprint:
    """Everything that could change under ``root``, the root itself included."""
    out: Fingerprint = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what, body = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                what, body = "dir", ""
            else:
                what, body = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            rel = os.path.normpath(path.relative_to(root))
            out[rel] = (what, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_uid, st.st_gid,
                        body)
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return make_repo(LocalStore(tmp_path / "repo"), PASSPHRASE, chunk_avg=16 * 1024,
                     chunk_min=4096, chunk_max=64 * 1024)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What an attacker aims at: a file, and a directory with a mode and times to keep."""
    out = tmp_path / "outside"
    (out / "tax").mkdir(parents=True)
    (out / "precious.txt").write_bytes(b"the only copy\n")
    (out / "tax" / "old.csv").write_bytes(b"1,2,3\n")
    os.chmod(out / "precious.txt", 0o640)
    os.chmod(out / "tax", 0o700)
    for i, path in enumerate([out / "precious.txt", out / "tax" / "old.csv", out / "tax", out]):
        os.utime(path, ns=(T0 + i, T0 + i))
    return out


@pytest.fixture
def backed_up(tmp_path: Path, repo: Repository) -> Snapshot:
    """An honest snapshot: municipal/, municipal/registry.dump, municipal/tax/ledger.csv."""
    src = tmp_path / "src" / "municipal"
    (src / "tax").mkdir(parents=True)
    (src / "registry.dump").write_bytes(os.urandom(50_000))
    (src / "tax" / "ledger.csv").write_bytes(b"tanaka,1200\n" * 1000)
    os.chmod(src / "tax", 0o750)
    result = run_backup(repo, BackupRequest(paths=[str(src)]))
    assert result.exit_code == 0
    return repo.find_snapshot(result.snapshot_id)


def _crafted(repo: Repository, items: list[Entry | tuple[Entry, bytes]],
             kind: str = "files") -> Snapshot:
    """A snapshot holding exactly these entries, written with the repository's own writer."""
    writer = SnapshotWriter(repo, repo.load_index())
    for item in items:
        if isinstance(item, tuple):
            writer.add_stream(item[0], io.BytesIO(item[1]))
        else:
            writer.add_entry(item)
    return writer.commit(host="attacker", source_kind=kind, source_spec={}, tags=[],
                         summary={}, version="test")


def _restore_cli(drsync_bin: str, tmp_path: Path, snapshot: str,
                 target: Path) -> subprocess.CompletedProcess[str]:
    password = tmp_path / "password"
    password.write_text(PASSPHRASE + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")}
    return subprocess.run(
        [drsync_bin, "--repo", str(tmp_path / "repo"), "--password-file", str(password),
         "--catalog", str(tmp_path / "catalog.sqlite"), "restore", snapshot,
         "--target", str(target)],
        capture_output=True, text=True, env=env, timeout=120)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    return lines[0]


# -- (a) a symlink already inside the target --------------------------------------------


@pytest.mark.parametrize("link_at", ["municipal", "municipal/tax"])
def test_symlink_already_in_target_refused_exit_13_outside_unchanged(
        drsync_bin: str, tmp_path: Path, backed_up: Snapshot, outside: Path,
        link_at: str) -> None:
    target = tmp_path / "target"
    (target / "municipal").mkdir(parents=True)
    if link_at == "municipal":
        (target / "municipal").rmdir()
        os.symlink(outside, target / "municipal")
    else:
        os.symlink(outside / "tax", target / "municipal" / "tax")
    before, target_before = _fingerprint(outside), _fingerprint(target)
    done = _restore_cli(drsync_bin, tmp_path, backed_up.short_id, target)
    assert done.returncode == 13, done.stderr
    line = _one_line(done)
    assert backed_up.short_id in line and f"{link_at!r} is a symlink in the target" in line
    assert _fingerprint(outside) == before
    assert _fingerprint(target) == target_before  # refused before anything was written


# -- (b) a symlink at a temporary's or a final name --------------------------------------


def test_symlink_planted_at_the_old_temporary_name_is_never_written_through(
        tmp_path: Path, repo: Repository, backed_up: Snapshot, outside: Path) -> None:
    target = tmp_path / "target"
    (target / "municipal" / "tax").mkdir(parents=True)
    os.symlink(outside / "precious.txt", target / "municipal" / ".registry.dump.drsync-tmp")
    os.symlink(outside / "precious.txt", target / "municipal" / "tax" / ".ledger.csv.drsync-tmp")
    before = _fingerprint(outside)
    restore_snapshot(repo, backed_up.id, target=target)
    assert _fingerprint(outside) == before
    src = tmp_path / "src" / "municipal"
    for rel in ("registry.dump", "tax/ledger.csv"):
        restored = target / "municipal" / rel
        assert stat.S_ISREG(restored.lstat().st_mode)
        assert restored.read_bytes() == (src / rel).read_bytes()
    assert os.readlink(target / "municipal" / ".registry.dump.drsync-tmp") == str(
        outside / "precious.txt")  # left alone
    assert stat.S_IMODE((target / "municipal" / "tax").stat().st_mode) == 0o750


def test_symlink_at_a_final_name_is_a_conflict_found_before_any_write(
        drsync_bin: str, tmp_path: Path, backed_up: Snapshot, outside: Path) -> None:
    target = tmp_path / "target"
    (target / "municipal" / "tax").mkdir(parents=True)
    os.symlink(outside / "precious.txt", target / "municipal" / "tax" / "ledger.csv")
    before, target_before = _fingerprint(outside), _fingerprint(target)
    done = _restore_cli(drsync_bin, tmp_path, backed_up.short_id, target)
    assert done.returncode == 2 and "already exists" in _one_line(done)
    assert _fingerprint(outside) == before
    assert _fingerprint(target) == target_before  # registry.dump, earlier, not written either


# -- (c) a crafted snapshot -----------------------------------------------------------------


def _attacks(outside: Path) -> dict[str, list[Entry | tuple[Entry, bytes]]]:
    """Each starts with an honest file, so "nothing written" means something."""
    honest: Entry | tuple[Entry, bytes] = (Entry("readme.txt", "file", 0o644, T0), b"hello\n")
    return {
        "symlink then a file under it": [
            honest, Entry("a", "symlink", 0o777, T0, target=str(outside)),
            (Entry("a/x", "file", 0o644, T0), b"evil\n")],
        "symlink then a directory under it": [
            honest, Entry("a", "symlink", 0o777, T0, target=str(outside)),
            Entry("a/tax", "dir", 0o777, T0)],
        "symlink in a directory": [
            honest, Entry("d", "dir", 0o755, T0),
            Entry("d/l", "symlink", 0o777, T0, target=str(outside / "tax")),
            (Entry("d/l/new.csv", "file", 0o644, T0), b"evil\n")],
        "dot-dot": [honest, (Entry("../outside/x", "file", 0o644, T0), b"evil\n")],
        "absolute": [honest, (Entry(str(outside / "y"), "file", 0o644, T0), b"evil\n")],
        "dot component": [honest, (Entry("a/./x", "file", 0o644, T0), b"evil\n")],
    }


ATTACKS = ["symlink then a file under it", "symlink then a directory under it",
           "symlink in a directory", "dot-dot", "absolute", "dot component"]
BAD_PATH = {"symlink then a file under it": "a/x", "symlink then a directory under it": "a/tax",
            "symlink in a directory": "d/l/new.csv", "dot-dot": "../outside/x",
            "absolute": "/outside/y", "dot component": "a/./x"}


@pytest.mark.parametrize("attack", ATTACKS)
def test_crafted_snapshot_refused_exit_13_nothing_written(
        drsync_bin: str, tmp_path: Path, repo: Repository, outside: Path, attack: str) -> None:
    snap = _crafted(repo, _attacks(outside)[attack])
    target = tmp_path / "target"
    before = _fingerprint(outside)
    done = _restore_cli(drsync_bin, tmp_path, snap.short_id, target)
    assert done.returncode == 13, done.stderr
    line = _one_line(done)
    assert snap.short_id in line and BAD_PATH[attack] in line
    assert _fingerprint(outside) == before
    assert not target.exists() or not any(target.iterdir())


@pytest.mark.parametrize("attack", ATTACKS)
def test_check_reports_the_unsafe_entry(tmp_path: Path, repo: Repository, outside: Path,
                                        attack: str) -> None:
    snap = _crafted(repo, _attacks(outside)[attack])
    report = check_repository(repo)
    unsafe = [e for e in report.errors if "unsafe entry" in e]
    assert len(unsafe) == 1 and snap.short_id in unsafe[0] and BAD_PATH[attack] in unsafe[0]
    assert not report.ok


def test_check_command_exits_13_naming_snapshot_and_path(
        drsync_bin: str, tmp_path: Path, repo: Repository, backed_up: Snapshot,
        outside: Path) -> None:
    snap = _crafted(repo, _attacks(outside)["symlink then a file under it"])
    password = tmp_path / "password"
    password.write_text(PASSPHRASE + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")}
    done = subprocess.run(
        [drsync_bin, "--repo", str(tmp_path / "repo"), "--password-file", str(password),
         "--catalog", str(tmp_path / "catalog.sqlite"), "check"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 13
    errors = [ln for ln in done.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1  # the honest snapshot is fine
    assert snap.short_id in errors[0] and "'a/x'" in errors[0] and "symlink entry 'a'" in errors[0]


# -- (d) a conflict is found before the first byte ---------------------------------------------


@pytest.mark.parametrize("obstacle", ["file", "dir"])
def test_conflict_with_the_last_entry_fails_before_any_entry_is_written(
        tmp_path: Path, repo: Repository, backed_up: Snapshot, obstacle: str) -> None:
    with SnapshotReader(repo) as reader:
        entries = list(reader.entries(backed_up))
    last = entries[-1]
    assert last.type == "file" and len(entries) == 4  # written last, after three others
    target = tmp_path / "target"
    where = target / last.path
    where.parent.mkdir(parents=True)
    if obstacle == "file":
        where.write_bytes(b"precious")
    else:
        where.mkdir()
    before = _fingerprint(target)
    with pytest.raises(UsageError, match="already exists"):
        restore_snapshot(repo, backed_up.id, target=target)
    assert _fingerprint(target) == before


# -- the walk itself, when the target changes after the check -------------------------------


def test_symlink_planted_after_the_check_is_still_refused(tmp_path: Path,
                                                         outside: Path) -> None:
    target = tmp_path / "target"
    metas = [Entry("d", "dir", 0o755, T0), Entry("d/x", "file", 0o644, T0, 5),
             Entry("e", "dir", 0o755, T0), Entry("e/y", "file", 0o644, T0, 5)]
    before = _fingerprint(outside)
    with FileTreeTarget(target, snapshot="test") as tree:
        tree.prepare(metas)  # an empty target: nothing to refuse yet
        tree.directory(metas[0])
        tree.file(metas[1], [b"fine\n"])
        os.symlink(outside, target / "e")  # a concurrent attacker
        with pytest.raises(UnsafePath, match="'e' is a symlink in the target"):
            tree.directory(metas[2])
        with pytest.raises(UnsafePath, match="'e' is a symlink in the target"):
            tree.file(metas[3], [b"evil\n"])
        os.rename(target / "d", target / "d.moved")
        os.symlink(outside / "tax", target / "d")
        with pytest.raises(UnsafePath, match="'d' is a symlink in the target"):
            tree.finish()  # d's mode and mtime are not applied through the link
    assert _fingerprint(outside) == before
    assert (target / "d.moved" / "x").read_bytes() == b"fine\n"


# -- a PostgreSQL data directory: recovery settings stay inside it --------------------------


@pytest.mark.parametrize("name", ["postgresql.auto.conf", "recovery.signal", "pg_wal"])
def test_pgdata_restore_never_writes_recovery_settings_through_a_link(
        tmp_path: Path, repo: Repository, outside: Path, name: str) -> None:
    aim = outside / ("tax" if name == "pg_wal" else "precious.txt")
    snap = _crafted(repo, [Entry("pgdata", "dir", 0o700, T0),
                           (Entry("pgdata/PG_VERSION", "file", 0o600, T0), b"15\n"),
                           Entry(f"pgdata/{name}", "symlink", 0o777, T0, target=str(aim))],
                    kind="pg_base")
    pgdata = tmp_path / "pg"
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(pgdata, _unprivileged_uid(), -1)  # root cannot run the cluster
    before = _fingerprint(outside)
    with pytest.raises(UnsafePath, match=name):
        restore_pgdata(repo, snap.id, pgdata, target=RecoveryTarget(), restore_command="false")
    assert _fingerprint(outside) == before


def _unprivileged_uid() -> int:
    for user in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            continue
    return 65534
