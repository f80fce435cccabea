"""Delta restores and resumed restores: a target that already holds files ends equal to a
clean restore (names, types, contents, modes, mtimes), with only what differs fetched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from drsync.backup import BackupRequest, run_backup
from drsync.errors import RestoreTargetError, UsageError
from drsync.pgrestore import restore_pgdata
from drsync.repo import Entry, RepoConfig, Repository, SnapshotReader, SnapshotWriter
from drsync.restore import restore_snapshot, write_tree
from drsync.sources import FileTreeTarget
from drsync.sources.postgres import PGDATA_PREFIX, RecoveryTarget
from drsync.store import LocalStore
from drsync.testing import make_repo, make_repository, text_like

KiB, MiB = 1 << 10, 1 << 20
T0 = 1_600_000_000_000_000_000

Tree = dict[str, tuple[str, int, int, str]]


def _tree(root: Path) -> Tree:
    """Every entry under ``root``: type, mode, mtime, and content hash or link target."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what, body = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                what, body = "dir", ""
            else:
                what, body = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            mtime = 0 if what == "link" else st.st_mtime_ns
            out[str(path.relative_to(root))] = (what, stat.S_IMODE(st.st_mode), mtime, body)
    return out


def _source(base: Path) -> Path:
    """A municipal tree: a dozen files of 200 KiB..1.6 MiB (several packs), a link."""
    src = base / "src" / "registry"
    (src / "tax" / "2026").mkdir(parents=True)
    (src / "people").mkdir()
    for n in range(12):
        where = src / ("tax/2026" if n % 3 == 0 else "people" if n % 3 == 1 else "")
        path = where / f"part{n:02d}.csv"
        size = (n + 1) * 128 * KiB
        path.write_bytes(text_like(size // 2, seed=n) + os.urandom(size - size // 2))
        os.chmod(path, 0o640 if n % 2 else 0o600)
        os.utime(path, ns=(T0 + n, T0 + n))
    (src / "latest").symlink_to("people/part01.csv")
    os.chmod(src / "tax", 0o750)
    return src


def _damage(target: Path, outside: Path) -> None:
    """What a stale copy or a half-finished restore holds: every kind of difference."""
    reg = target / "registry"
    body = bytearray((reg / "part02.csv").read_bytes())
    body[1000:1004] = b"XXXX"                                   # changed bytes, same size
    (reg / "part02.csv").write_bytes(bytes(body))
    with open(reg / "people" / "part04.csv", "r+b") as fh:     # truncated
        fh.truncate(1234)
    (reg / "tax" / "2026" / "part06.csv").unlink()             # missing
    (reg / "people" / "stale.tmp").write_bytes(b"not in the backup")     # extra file
    (reg / "old" / "deep").mkdir(parents=True)                  # extra directory tree
    (reg / "old" / "deep" / "x").write_bytes(b"x")
    (reg / "escape").symlink_to(outside)                         # an extra link out: removed,
    (reg / "part05.csv").unlink()                                 # never followed
    (reg / "part05.csv").mkdir()                                  # a dir where a file was
    (reg / "part05.csv" / "inner").write_bytes(b"inner")
    os.unlink(reg / "latest")
    (reg / "latest").symlink_to("people/part04.csv")             # a link pointing elsewhere
    os.chmod(reg / "people" / "part07.csv", 0o777)               # mode only
    os.chmod(reg / "tax", 0o700)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return make_repo(LocalStore(tmp_path / "repo"), chunk_avg=64 * KiB, chunk_min=16 * KiB,
                     chunk_max=256 * KiB, pack_size=MiB)


def test_delta_over_a_modified_target_equals_a_clean_restore(tmp_path: Path,
                                                            repo: Repository) -> None:
    src = _source(tmp_path)
    run_backup(repo, BackupRequest(paths=[str(src)], host="t"))
    assert len(list(repo.store.list("data/"))) >= 3  # several packs
    clean = restore_snapshot(repo, "latest", target=tmp_path / "clean")
    stale = tmp_path / "stale"
    restore_snapshot(repo, "latest", target=stale)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep me")
    _damage(stale, outside)
    untouched = {p: (stale / p).stat().st_ino for p in (
        "registry/people/part01.csv", "registry/tax/2026/part09.csv", "registry/part08.csv")}
    with pytest.raises(UsageError, match="--delta"):  # without it: today's refusal
        restore_snapshot(repo, "latest", target=stale)

    seen: list[int] = []
    result = restore_snapshot(repo, "latest", target=stale, delta=True, progress=seen.append)

    assert _tree(stale) == _tree(tmp_path / "clean")
    assert (outside / "precious").read_bytes() == b"keep me"  # the link was not followed
    # Rewritten: the changed, truncated, missing and replaced-by-a-dir files, nothing else
    # (the mode-only change is a chmod, not a rewrite).
    assert result.files_written == 4 and result.files_kept == 8
    assert {p: (stale / p).stat().st_ino for p in untouched} == untouched  # not rewritten
    assert result.removed == 5  # stale.tmp, old/, escape, the dir at part05.csv, the link
    sizes = {n: (n + 1) * 128 * KiB for n in range(12)}
    assert result.bytes_written == sizes[2] + sizes[4] + sizes[5] + sizes[6]
    assert result.bytes_kept == sum(sizes.values()) - result.bytes_written
    assert sum(seen) == sum(sizes.values())  # the bar counts kept bytes too, once
    assert 0 < result.bytes_fetched < clean.bytes_fetched / 2
    # The changed and the truncated file were rewritten from their old copies' matching
    # chunks, verified, plus the few fetched; the missing ones were fetched whole. The
    # changed bytes (at 1000) lie in part02's first chunk, and the truncated file's 1,234
    # bytes hold no whole chunk: what was reused is part02 but its first chunk. (Its
    # length depends on the repository's chunker seed; it once exceeded half the file.)
    snap = repo.find_snapshot("latest")
    with SnapshotReader(repo) as reader:
        (part02,) = [e for e in reader.entries(snap) if e.path.endswith("/part02.csv")]
        location = reader.index.get(bytes.fromhex(part02.chunks[0]))
    assert location is not None and len(part02.chunks) > 1
    assert result.bytes_reused == sizes[2] - location.raw_length

    again = restore_snapshot(repo, "latest", target=stale, delta=True)
    assert (again.files_written, again.removed) == (0, 0)
    assert again.bytes_fetched < 16 * KiB  # the snapshot's tree, no file data
    assert _tree(stale) == _tree(tmp_path / "clean")


def _pg_like(repo: Repository) -> None:
    writer = SnapshotWriter(repo, repo.load_index())
    writer.add_entry(Entry(PGDATA_PREFIX, "dir", mode=0o700))
    for d in ("base", "base/1", "pg_wal"):
        writer.add_entry(Entry(f"{PGDATA_PREFIX}/{d}", "dir", mode=0o700))
    for path, data in {"PG_VERSION": b"15\n", "base/1/1259": text_like(3 * MiB, seed=1),
                       "base/1/1249": text_like(2 * MiB, seed=2),
                       "postgresql.auto.conf": b"# from the backup\n"}.items():
        writer.add_stream(Entry(f"{PGDATA_PREFIX}/{path}", "file", mode=0o600, size=len(data),
                                mtime_ns=T0), io.BytesIO(data), fixed_size=32768)
    writer.commit(host="t", source_kind="pg_base", source_spec={}, tags=[], summary={},
                  version="t")


def _pgdata_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:  # a cluster belongs to its user, as an operator would set it up
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def test_pgdata_delta_over_a_stale_copy_equals_a_clean_restore(tmp_path: Path) -> None:
    repo = make_repo(LocalStore(tmp_path / "repo"), pack_size=MiB)
    _pg_like(repo)
    clean = _pgdata_dir(tmp_path / "clean")
    first = restore_pgdata(repo, "latest", clean, target=RecoveryTarget(),
                           restore_command="true %f %p")
    stale = _pgdata_dir(tmp_path / "stale")
    restore_pgdata(repo, "latest", stale, target=RecoveryTarget(), restore_command="true %f %p")
    # What a standby that ran for a while holds: other WAL, a changed relation, its log.
    (stale / "pg_wal" / "000000010000000000000009").write_bytes(b"w" * 4096)
    with open(stale / "base" / "1" / "1249", "r+b") as fh:
        fh.seek(70000)
        fh.write(b"page changed")
    (stale / "drsync-restore.log").write_text("LOG: old run\n")
    (stale / "postmaster.pid").write_text("4242\n")
    with pytest.raises(UsageError, match=r"postmaster\.pid"):
        restore_pgdata(repo, "latest", stale, target=RecoveryTarget(),
                       restore_command="true %f %p", delta=True)
    (stale / "postmaster.pid").unlink()
    with pytest.raises(UsageError, match=r"not empty.*--delta"):
        restore_pgdata(repo, "latest", stale, target=RecoveryTarget(),
                       restore_command="true %f %p")

    result = restore_pgdata(repo, "latest", stale, target=RecoveryTarget(),
                            restore_command="true %f %p", delta=True)

    def without_stamp(tree: Tree) -> Tree:
        """Less what configuring recovery made now: its times, the settings' dated comment."""
        made = ("pg_wal", "pg_wal/archive_status", "recovery.signal")
        return {p: (v[0], v[1], 0, v[3]) if p in made else v for p, v in tree.items()
                if p != "postgresql.auto.conf"}

    assert without_stamp(_tree(stale)) == without_stamp(_tree(clean))
    conf = (stale / "postgresql.auto.conf").read_text()
    assert conf.startswith("# from the backup\n") and conf.count("restore_command") == 1
    details = result.details
    assert details["files_kept"] == 2  # PG_VERSION, base/1/1259
    assert details["files_written"] == 2  # base/1/1249 and the appended postgresql.auto.conf
    # The WAL file, the log; recovery.signal and pg_wal/archive_status (made again after).
    assert details["removed"] == 4
    assert 0 < details["bytes_fetched"] < first.details["bytes_fetched"] / 2
    # Of the changed relation only its changed 32 KiB chunk was fetched, the rest reused;
    # postgresql.auto.conf (the backup's, then the settings appended) is its first chunk.
    assert details["bytes_reused"] == 2 * MiB - 32768 + len(b"# from the backup\n")
    # Not started: nothing to say where recovery stopped, but how to learn it.
    assert details["recovery"] is None and details["started"] is False
    assert "pg_last_xact_replay_timestamp()" in details["recovery_hint"]


def test_cli_delta_summary_and_the_restore_in_runs(drsync_bin: str, tmp_path: Path) -> None:
    src = _source(tmp_path)
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"),
           "DRSYNC_KEY_FILE": str(tmp_path / "k.key"),
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), None, tmp_path / "k.key",
                    config=RepoConfig(chunk_avg=64 * KiB, chunk_min=16 * KiB,
                                      chunk_max=256 * KiB, pack_size=2 * MiB))

    def drsync(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([drsync_bin, *args], capture_output=True, text=True, env=env,
                              timeout=120)
        assert not ok or done.returncode == 0, done.stderr
        return done

    backup = json.loads(drsync("backup", str(src), "--json").stdout)
    out = tmp_path / "out"
    drsync("restore", "latest", "--target", str(out))
    (out / "registry" / "part02.csv").write_bytes(b"changed")
    refused = drsync("restore", "latest", "--target", str(out), ok=False)
    assert refused.returncode == 2 and "--delta" in refused.stderr
    text = drsync("restore", "latest", "--target", str(out), "--delta").stdout
    assert "delta: 11 files already there and verified" in text and "1 written" in text
    doc = json.loads(drsync("restore", "latest", "--target", str(out), "--delta",
                            "--json").stdout)
    assert doc["delta"] is True and doc["files_kept"] == 12
    assert doc["bytes_fetched"] < 16 * KiB  # the snapshot's tree, no file data
    runs = [r for r in json.loads(drsync("runs", "--json").stdout) if r["kind"] == "restore"]
    assert [r["status"] for r in runs] == ["ok", "ok", "failed", "ok"]
    assert runs[0]["id"] == doc["run_id"] and runs[0]["bytes_read"] == doc["bytes_fetched"]
    assert all(r["snapshot_id"] == backup["snapshot_id"] for r in runs)
    assert runs[1]["bytes_read"] > 0 and "(delta)" in runs[1]["source"]
    assert "already exists" in runs[2]["error"]


@pytest.mark.slow
def test_a_killed_restore_run_again_resumes_fetching_less_and_ends_identical(
        drsync_bin: str, tmp_path: Path) -> None:
    src = tmp_path / "src" / "big"
    src.mkdir(parents=True)
    for n in range(8):
        (src / f"f{n}").write_bytes(os.urandom(2 * MiB))  # incompressible: 16 MiB to fetch
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"),
           "DRSYNC_KEY_FILE": str(tmp_path / "k.key"),
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    make_repository(str(tmp_path / "repo"), None, tmp_path / "k.key",
                    config=RepoConfig(chunk_avg=256 * KiB, chunk_min=64 * KiB,
                                      chunk_max=MiB, pack_size=2 * MiB))
    subprocess.run([drsync_bin, "backup", str(src)], env=env, check=True, capture_output=True)
    clean = json.loads(subprocess.run([drsync_bin, "restore", "latest", "--target",
                                       str(tmp_path / "clean"), "--json"], env=env, check=True,
                                      capture_output=True).stdout)
    out = tmp_path / "out"
    # The target already holds the operator's own files, beside what the snapshot holds:
    # a resume must not take them for leftovers of the killed restore.
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "incident.txt").write_text("what happened at 03:12")
    (out / "README.operator").write_text("restored for the auditors")
    slow = subprocess.Popen([drsync_bin, "--limit-download", "4MB/s", "restore", "latest",
                             "--target", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list((out / "big").glob("f*"))) < 3:
        time.sleep(0.05)  # until a few files are whole (a temporary is hidden: .f*)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    placed = sorted(p.name for p in (out / "big").glob("f*"))
    assert 3 <= len(placed) < 8, placed  # killed mid-restore, not after it
    # Files being written had no name yet (O_TMPFILE): the kill left no temporary.
    assert [p.name for p in out.rglob("*") if p.name.endswith(".drsync-tmp")] == []

    assert (out / ".drsync-restore-unfinished").read_text().strip() == clean["snapshot_id"]
    # What a killed resume (a delta, whose temporaries have names) would leave: removed.
    (out / "big" / ".f7.0123456789abcdef.drsync-tmp").write_bytes(b"half a file")

    # The same command again: the unfinished restore of this snapshot is resumed.
    resumed = json.loads(subprocess.run([drsync_bin, "restore", "latest", "--target", str(out),
                                         "--json"], env=env, check=True,
                                        capture_output=True).stdout)

    mine = {"notes", "notes/incident.txt", "README.operator"}
    assert (out / "notes" / "incident.txt").read_text() == "what happened at 03:12"
    assert (out / "README.operator").read_text() == "restored for the auditors"
    restored = {k: v for k, v in _tree(out).items() if k not in mine}
    assert restored == _tree(tmp_path / "clean")  # the mark and the temporary are gone
    assert resumed["resumed"] is True and resumed["delta"] is True
    assert resumed["files_kept"] >= len(placed)
    assert resumed["bytes_fetched"] <= clean["bytes_fetched"] - len(placed) * 2 * MiB
    assert not list((out / "big").glob(".*drsync-tmp"))
    # The killed run is on record as what it was, not "running" for ever.
    runs = json.loads(subprocess.run([drsync_bin, "runs", "--json"], env=env, check=True,
                                     capture_output=True).stdout)
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("restore", "ok"), ("restore", "failed"), ("restore", "ok"), ("backup", "ok")]
    assert runs[1]["error"].startswith(f"interrupted: process {slow.pid} is gone and never "
                                       "finished the run (killed, or the host went down)")
    assert runs[1]["ended"] is not None
    # ...and in the store: its record waited in the outbox for the next run that wrote
    # one (this check), so a catalog rebuilt from the store has it too.
    subprocess.run([drsync_bin, "check"], env=env, check=True, capture_output=True)
    rebuilt = json.loads(subprocess.run(
        [drsync_bin, "runs", "--from-store", "--json"], check=True, capture_output=True,
        env={**env, "DRSYNC_CATALOG": str(tmp_path / "rebuilt.sqlite")}).stdout)
    [again] = [r for r in rebuilt if r["id"] == runs[1]["id"]]
    assert again["status"] == "failed" and again["error"] == runs[1]["error"]


def test_a_file_changed_between_compare_and_rewrite_fails_naming_it(
        tmp_path: Path, repo: Repository) -> None:
    src = _source(tmp_path)
    run_backup(repo, BackupRequest(paths=[str(src)], host="t"))
    out = tmp_path / "out"
    restore_snapshot(repo, "latest", target=out)
    victim = out / "registry" / "part11.csv"
    with open(victim, "r+b") as fh:
        fh.seek(100)
        fh.write(b"stale")  # the first chunk differs, the rest can be reused

    class WrittenMeanwhile(FileTreeTarget):
        """Something else writes the file after it was compared (a server left running)."""

        def begin(self, snapshot_id: str) -> None:
            super().begin(snapshot_id)
            with open(victim, "r+b") as fh:
                fh.seek(len(fh.read()) - 10)
                fh.write(b"meanwhile!")

    snap = repo.find_snapshot("latest")
    with SnapshotReader(repo) as reader, WrittenMeanwhile(out, delta=True) as tree, \
            pytest.raises(RestoreTargetError, match=r"part11\.csv changed while"):
        write_tree(reader, snap, tree)
    assert victim.read_bytes().endswith(b"meanwhile!")  # not replaced by a mix of both
    assert not list(victim.parent.glob(".*drsync-tmp"))


def test_a_resume_refuses_what_is_in_the_snapshots_way_and_removes_nothing(
        tmp_path: Path, repo: Repository) -> None:
    src = _source(tmp_path)
    snapshot_id = run_backup(repo, BackupRequest(paths=[str(src)], host="t")).snapshot_id
    out = tmp_path / "out"
    # As a killed restore of that snapshot leaves its target, then someone made a directory
    # where the snapshot has a file.
    (out / "registry" / "part02.csv").mkdir(parents=True)
    (out / "registry" / "part02.csv" / "theirs.txt").write_text("not drsync's")
    (out / ".drsync-restore-unfinished").write_text(snapshot_id + "\n")
    with pytest.raises(RestoreTargetError) as info:
        restore_snapshot(repo, "latest", target=out)
    assert str(info.value).startswith(f"{out / 'registry' / 'part02.csv'} is in the way of "
                                      "the snapshot's file")
    assert (out / "registry" / "part02.csv" / "theirs.txt").read_text() == "not drsync's"
    # Asked for, a delta makes the target equal to the snapshot: then it is removed.
    restore_snapshot(repo, "latest", target=out, delta=True)
    assert (out / "registry" / "part02.csv").is_file()


def test_a_delta_leaves_a_hard_link_outside_the_target_untouched(
        tmp_path: Path, repo: Repository) -> None:
    src = _source(tmp_path)
    run_backup(repo, BackupRequest(paths=[str(src)], host="t"))
    clean, out = tmp_path / "clean", tmp_path / "out"
    restore_snapshot(repo, "latest", target=clean)
    restore_snapshot(repo, "latest", target=out)
    outside = tmp_path / "elsewhere.csv"
    victim = out / "registry" / "part02.csv"
    os.link(victim, outside)  # the same inode, outside the target
    outside.chmod(0o600)
    os.utime(outside, ns=(10**18, 10**18))
    before = (outside.read_bytes(), outside.stat().st_mode, outside.stat().st_mtime_ns)
    done = restore_snapshot(repo, "latest", target=out, delta=True)
    assert (outside.read_bytes(), outside.stat().st_mode, outside.stat().st_mtime_ns) == before
    assert _tree(out) == _tree(clean) and victim.stat().st_nlink == 1
    # Rewritten from its own chunks (no data fetched), not kept in place.
    assert done.files_written == 1 and done.bytes_reused == victim.stat().st_size
