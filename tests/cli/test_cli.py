"""The command line end to end, through the installed `drsync` executable."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from drsync.testing import make_repository, text_like


class Cli:
    def __init__(self, exe: str, base: Path) -> None:
        self.exe = exe
        self.base = base
        self.env = {**os.environ, "DRSYNC_REPO": str(base / "repo"),
                    "DRSYNC_PASSWORD": "correct horse",
                    "DRSYNC_CATALOG": str(base / "catalog.sqlite")}

    def __call__(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
                 ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([self.exe, *args], input=stdin, capture_output=True,
                              env={**self.env, **(env or {})}, timeout=120)
        if ok:
            assert done.returncode == 0, done.stderr.decode()
        return done

    def json(self, *args: str, **kw: object) -> object:
        return json.loads(self(*args, "--json", **kw).stdout)  # type: ignore[arg-type]


@pytest.fixture
def cli(drsync_bin: str, tmp_path: Path) -> Cli:
    c = Cli(drsync_bin, tmp_path)
    make_repository(str(tmp_path / "repo"), "correct horse", tmp_path / "agent.key")
    return c


def _error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    return lines[0]


def test_help_lists_every_command(drsync_bin: str) -> None:
    out = subprocess.run([drsync_bin, "--help"], capture_output=True, text=True).stdout
    for command in ("init", "backup", "snapshots", "restore", "check", "runs", "unlock", "demo",
                    "plan"):
        assert command in out
    for command in ("init", "backup", "snapshots", "restore", "check", "runs", "unlock"):
        sub = subprocess.run([drsync_bin, command, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "Example" in sub.stdout, command


def test_every_command_and_subcommand_has_an_example() -> None:
    import click

    from drsync.cli import cli as root

    missing = []

    def walk(cmd: click.Command, path: list[str], ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, [*path, name], click.Context(sub, parent=ctx, info_name=name))
        elif "Example" not in (cmd.help or ""):
            missing.append(" ".join(path))

    walk(root, [], click.Context(root))
    assert missing == []


def test_init_uses_the_real_kdf_whatever_the_environment(drsync_bin: str,
                                                         tmp_path: Path) -> None:
    """`drsync init` has no test switch: the passphrase wrapping always gets full scrypt
    cost, and the key file it writes opens the repository without any KDF."""
    from drsync.repo.keys import DEFAULT_KDF, parse_wrapping

    cli = Cli(drsync_bin, tmp_path)
    cli("init", "--new-key-file", str(tmp_path / "agent.key"),
        env={"DRSYNC_INSECURE_TEST_KDF": "1"})  # the switch that used to weaken it
    wrappings = [parse_wrapping(p.read_bytes()) for p in (tmp_path / "repo" / "keys").iterdir()]
    assert sorted(w["kind"] for w in wrappings) == ["keyfile", "passphrase"]
    kdf = next(w["kdf"] for w in wrappings if w["kind"] == "passphrase")
    assert (kdf["n"], kdf["r"], kdf["p"]) == (DEFAULT_KDF.n, DEFAULT_KDF.r, DEFAULT_KDF.p)
    assert cli.json("snapshots", env={"DRSYNC_PASSWORD": "",
                                      "DRSYNC_KEY_FILE": str(tmp_path / "agent.key")}) == []


def test_backup_snapshots_restore_files(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "exports"
    src.mkdir()
    (src / "residents.csv").write_bytes(text_like(1_500_000, seed=3))
    doc = cli.json("backup", str(src), "--tag", "nightly", "--tag", "test")
    assert isinstance(doc, dict)
    assert {"snapshot_id", "bytes_read", "bytes_added", "duration_s"} <= doc.keys()
    assert doc["bytes_read"] == 1_500_000 and 0 < doc["bytes_added"] < 1_500_000
    snaps = cli.json("snapshots")
    assert isinstance(snaps, list) and len(snaps) == 1
    assert snaps[0]["id"] == doc["snapshot_id"] and snaps[0]["tags"] == ["nightly", "test"]
    assert snaps[0]["size"] == 1_500_000
    human = cli("backup", str(src)).stdout.decode()
    assert "read 1.4 MiB" in human and "MB/s" in human and "ratio" in human
    cli("restore", doc["snapshot_id"][:12], "--target", str(tmp_path / "out"))
    assert (tmp_path / "out" / "exports" / "residents.csv").read_bytes() == (
        src / "residents.csv").read_bytes()
    # The runs table says what each run was: newest first, a restore and two backups.
    rows = [line.split("│") for line in cli("runs", env={"COLUMNS": "160"}).stdout.decode()
            .splitlines() if line.startswith("│")]
    assert [r[2].strip() for r in rows] == ["restore", "backup", "backup"]


def test_stdin_stream_and_stdout_restore_with_key_file(cli: Cli, tmp_path: Path) -> None:
    dump = text_like(700_000, seed=4) + os.urandom(5000)
    env = {"DRSYNC_PASSWORD": "", "DRSYNC_KEY_FILE": str(tmp_path / "agent.key")}
    doc = cli.json("backup", "--stdin-name", "registry.sql", stdin=dump, env=env)
    assert isinstance(doc, dict) and doc["bytes_read"] == len(dump)
    out = cli("restore", "latest", "--stdout", env=env).stdout
    assert out == dump


def test_an_empty_stdin_is_refused_unless_allowed(cli: Cli, tmp_path: Path) -> None:
    """`pg_dump nosuchdb | drsync backup --stdin-name x` reads nothing: no snapshot that
    would become the newest, one line, exit 15; --allow-empty keeps an empty stream."""
    done = cli("backup", "--stdin-name", "registry.dump", stdin=b"", ok=False)
    assert done.returncode == 15
    assert "standard input (registry.dump) gave no bytes" in _error_line(done)
    assert cli.json("snapshots") == []
    runs = cli.json("runs")
    assert isinstance(runs, list) and [r["status"] for r in runs] == ["failed"]
    doc = cli.json("backup", "--stdin-name", "empty.dump", "--allow-empty", stdin=b"")
    assert isinstance(doc, dict) and doc["bytes_read"] == 0
    assert cli("restore", "latest", "--stdout").stdout == b""
    # One byte is a stream like any other: nothing of it is lost to the check.
    cli("backup", "--stdin-name", "one.dump", stdin=b"x")
    assert cli("restore", "latest", "--stdout").stdout == b"x"


def test_stdout_restore_onto_a_full_disk_or_a_closed_pipe_is_one_line(cli: Cli,
                                                                      tmp_path: Path) -> None:
    dump = text_like(3_000_000, seed=5) + os.urandom(200_000)
    cli("backup", "--stdin-name", "registry.sql", stdin=dump)
    with open("/dev/full", "wb") as full:  # the kernel's ENOSPC on every write
        done = subprocess.run([cli.exe, "restore", "latest", "--stdout"], stdout=full,
                              stderr=subprocess.PIPE, env=cli.env, timeout=120)
    assert done.returncode == 17
    line = done.stderr.decode().strip()
    assert line.startswith("drsync: error: cannot write registry.sql to standard output "
                           "after ") and "No space left on device" in line, line
    assert "\n" not in line  # one line, no traceback
    # A reader that ends early (`| head -c 10`): said once, not as Python's BrokenPipeError.
    proc = subprocess.Popen([cli.exe, "restore", "latest", "--stdout"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli.env)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read().decode().strip()
    assert proc.wait(timeout=120) == 17
    assert err.startswith("drsync: error: cannot write registry.sql to standard output") \
        and "the program reading it ended" in err and "\n" not in err, err
    runs = cli.json("runs")
    assert isinstance(runs, list)
    assert [r["status"] for r in runs if r["kind"] == "restore"] == ["failed", "failed"]


def test_runs_catalog(cli: Cli, tmp_path: Path) -> None:
    cli("backup", "--stdin-name", "a", stdin=b"first")
    cli("backup", "--sqlite", str(tmp_path / "absent.db"), ok=False)
    runs = cli.json("runs")
    assert isinstance(runs, list)
    assert [r["status"] for r in runs] == ["failed", "ok"]
    assert "absent.db" in runs[0]["error"] and runs[1]["bytes_read"] == 5
    assert runs[1]["snapshot_id"] and runs[0]["ended"]


def test_wrong_password_one_line_exit_11_nothing_written(cli: Cli, tmp_path: Path) -> None:
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "repo").rglob("*"))
    done = cli("backup", "--stdin-name", "x", stdin=b"data", env={"DRSYNC_PASSWORD": "wrong"},
               ok=False)
    assert done.returncode == 11
    line = _error_line(done)
    assert "wrong passphrase" in line and str(tmp_path / "repo") in line
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "repo").rglob("*")) == before


def test_missing_repository_names_the_path(cli: Cli, tmp_path: Path) -> None:
    done = cli("snapshots", env={"DRSYNC_REPO": str(tmp_path / "nowhere")}, ok=False)
    assert done.returncode == 10
    assert str(tmp_path / "nowhere") in _error_line(done)
    assert not (tmp_path / "nowhere").exists()


def test_malformed_config_names_file_and_key(cli: Cli, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('repo = "x"\n[backup]\ncompression_level = "high"\n')
    done = cli("--config", str(cfg), "snapshots", ok=False)
    assert done.returncode == 4
    line = _error_line(done)
    assert str(cfg) in line and "backup.compression_level" in line
    cfg.write_text("repo = [unclosed\n")
    done = cli("--config", str(cfg), "snapshots", ok=False)
    assert done.returncode == 4 and "not valid TOML" in _error_line(done)
    done = cli("--config", str(tmp_path / "absent.toml"), "snapshots", ok=False)
    assert done.returncode == 4 and "absent.toml" in _error_line(done)


def test_config_file_supplies_settings_and_flags_override(cli: Cli, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'repo = "{tmp_path / "other"}"\nkey_file = "agent.key"\n'
                   '[backup]\ntags = ["from-config"]\n')
    env = {"DRSYNC_REPO": "", "DRSYNC_PASSWORD": ""}
    # The config's repo does not exist; the flag points at the real one.
    done = cli("--config", str(cfg), "snapshots", env=env, ok=False)
    assert done.returncode == 10
    cli("--config", str(cfg), "--repo", str(tmp_path / "repo"), "backup", "--stdin-name", "s",
        stdin=b"x", env=env)
    snaps = cli.json("--config", str(cfg), "--repo", str(tmp_path / "repo"), "snapshots", env=env)
    assert isinstance(snaps, list) and snaps[0]["tags"] == ["from-config"]


def test_unknown_snapshot_and_usage_errors(cli: Cli) -> None:
    done = cli("restore", "deadbeef", "--target", "/tmp/x", ok=False)
    assert done.returncode == 16 and "deadbeef" in _error_line(done)
    done = cli("backup", ok=False)
    assert done.returncode == 2 and "exactly one source" in _error_line(done)
    done = cli("init", ok=False)
    assert done.returncode == 10 and "already exists" in _error_line(done)


def test_lock_held_by_live_process_then_unlock(cli: Cli, tmp_path: Path) -> None:
    from drsync.repo.lock import RepositoryLock
    from drsync.store import LocalStore

    store = LocalStore(tmp_path / "repo")
    lock = RepositoryLock(store, "test holder")
    lock.acquire()
    try:
        done = cli("backup", "--stdin-name", "x", stdin=b"x", ok=False)
        assert done.returncode == 12
        assert "locked by pid" in _error_line(done) and "drsync unlock" in done.stderr.decode()
        assert cli("unlock", ok=False).returncode == 12  # holder alive: refuses without --force
    finally:
        lock.release()
    assert "not locked" in cli("unlock").stdout.decode()


def test_init_refuses_a_key_file_it_cannot_create_before_touching_the_store(
        drsync_bin: str, tmp_path: Path) -> None:
    cli = Cli(drsync_bin, tmp_path)
    taken = tmp_path / "taken.key"
    taken.write_text("someone else's\n")
    plain = tmp_path / "plain-file"
    plain.write_text("")
    cases = [(taken, "already exists"), (tmp_path / "no-such-dir" / "agent.key", "cannot create"),
             (plain / "agent.key", "cannot create")]
    if os.geteuid() != 0:  # root writes anywhere; the other cases stand for it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((locked / "agent.key", "cannot create"))
    for path, why in cases:
        done = cli("init", "--new-key-file", str(path), ok=False)
        assert done.returncode == 4, done.stderr
        line = _error_line(done)
        assert why in line and str(path) in line, line
        repo = tmp_path / "repo"
        assert not repo.exists() or sorted(os.listdir(repo)) == [], os.listdir(repo)
    assert taken.read_text() == "someone else's\n"
    # And with a path it can create, the same init succeeds and the key file opens the repo.
    key = tmp_path / "agent.key"
    cli("init", "--new-key-file", str(key))
    assert (key.stat().st_mode & 0o777) == 0o600
    done = cli("--key-file", str(key), "snapshots", "--json", env={"DRSYNC_PASSWORD": ""})
    assert json.loads(done.stdout) == []


def test_init_killed_part_way_can_be_run_again(drsync_bin: str, tmp_path: Path) -> None:
    """What an init killed before its config leaves: key wrappings only, and the key file
    it claimed, still empty. The same command run again makes the repository."""
    env = {**os.environ, "DRSYNC_PASSWORD": "correct horse"}
    repo, key = tmp_path / "repo", tmp_path / "agent.key"

    def init() -> subprocess.CompletedProcess[str]:
        return subprocess.run([drsync_bin, "--repo", str(repo), "init", "--new-key-file",
                               str(key)], env=env, capture_output=True, text=True, timeout=120)

    assert init().returncode == 0
    for path in sorted(repo.rglob("*"), reverse=True):  # all but the wrappings: as killed
        if path.is_file() and path.parent.name != "keys":
            path.unlink()
    key.write_bytes(b"")
    again = init()
    assert again.returncode == 0, again.stderr
    assert "removed 2 key wrapping(s) an interrupted init left" in again.stderr
    listed = subprocess.run([drsync_bin, "--repo", str(repo), "--key-file", str(key),
                             "key", "list", "--json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    # A key file with something in it is never overwritten; a repository is never remade.
    third = init()
    assert third.returncode == 10 and "a repository already exists" in third.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not drsync's")
    refused = subprocess.run([drsync_bin, "--repo", str(tmp_path / "repo2"), "init",
                              "--new-key-file", str(key)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 4 and "already exists; refusing to overwrite" in refused.stderr
    alien = subprocess.run([drsync_bin, "--repo", str(other), "init"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert alien.returncode == 2 and "is not empty and is not a drsync repository" in \
        alien.stderr
    assert (other / "notes.txt").read_text() == "not drsync's"


def test_an_init_cut_after_its_config_says_how_to_add_the_key_file(drsync_bin: str,
                                                                    tmp_path: Path) -> None:
    """Cut after the config and before the key file's wrapping (the link died), an init
    left a repository that opens with its passphrase only; run again, it said "a
    repository already exists" and nothing more. Found by an edge hunt."""
    env = {**os.environ, "DRSYNC_PASSWORD": "correct horse"}
    repo, key = tmp_path / "repo", tmp_path / "agent.key"

    def drsync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([drsync_bin, "--repo", str(repo), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert drsync("init").returncode == 0  # what the cut init left: no key file wrapping
    again = drsync("init", "--new-key-file", str(key))
    assert again.returncode == 10 and not key.exists()
    hint = f"add the key file with `drsync key add --new-key-file {key}`"
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], lines
    assert drsync("key", "add", "--new-key-file", str(key)).returncode == 0
    opened = subprocess.run([drsync_bin, "--repo", str(repo), "--key-file", str(key),
                             "snapshots"], env={k: v for k, v in env.items()
                                                if k != "DRSYNC_PASSWORD"},
                            capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr


def test_init_without_a_passphrase_names_what_gives_one(drsync_bin: str,
                                                       tmp_path: Path) -> None:
    """init always needs a passphrase (a key file is extra): the line says how to give
    one and does not offer --key-file, which cannot stand in for it; nothing is written."""
    cli = Cli(drsync_bin, tmp_path)
    done = cli("init", "--new-key-file", str(tmp_path / "agent.key"), stdin=b"", ok=False,
               env={"DRSYNC_PASSWORD": ""})
    assert done.returncode == 2, done.stderr
    assert _error_line(done) == (
        "drsync: error: no passphrase for the new repository: use `drsync --password-file "
        "FILE init` or DRSYNC_PASSWORD (--new-key-file adds a key file for agents)")
    assert not (tmp_path / "agent.key").exists()
    assert not (tmp_path / "repo").exists() or not os.listdir(tmp_path / "repo")


def test_a_global_option_after_the_command_says_where_it_goes(drsync_bin: str,
                                                              tmp_path: Path) -> None:
    """`drsync init --password-file pw` (as restic would take it) is one line naming the
    right place for the option and its variable, not click's usage text; nothing is
    written. Options a command has of its own (drill --config) are still its own."""
    cli = Cli(drsync_bin, tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    done = cli("init", "--password-file", str(pw), ok=False)
    assert done.returncode == 2
    assert _error_line(done) == (
        "drsync: error: --password-file is an option of drsync itself, not of 'init': give "
        "it before the command, as in `drsync --password-file FILE init ...`, or set "
        "DRSYNC_PASSWORD_FILE")
    assert not (tmp_path / "repo").exists()
    nested = cli("key", "list", "-r", str(tmp_path / "repo"), ok=False)
    assert _error_line(nested).startswith(
        "drsync: error: -r is an option of drsync itself, not of 'key list': give it before "
        "the command, as in `drsync -r URL key list ...`, or set DRSYNC_REPO")
    unknown = cli("init", "--bogus", ok=False)
    assert unknown.returncode == 2 and b"No such option '--bogus'" in unknown.stderr
    cli("--password-file", str(pw), "init", env={"DRSYNC_PASSWORD": ""})  # where it goes
    assert (tmp_path / "repo" / "config").exists()


def test_check_and_unlock_name_a_lock_whose_pid_was_reused(cli: Cli, tmp_path: Path) -> None:
    import socket

    from drsync.repo.lock import LOCK_KEY, boot_id, process_start_time
    from drsync.repo.objects import TYPE_LOCK, header

    parent = os.getppid()  # alive, but not the process that wrote the lock
    doc = {"host": socket.gethostname(), "pid": parent, "time": time.time(), "token": "t",
           "command": "backup", "boot_id": boot_id(),
           "start_time": (process_start_time(parent) or 0) + 1}
    (tmp_path / "repo" / LOCK_KEY).write_bytes(header(TYPE_LOCK) + json.dumps(doc).encode())
    notes = cli.json("check")["notes"]  # type: ignore[index]
    assert f"object lock: stale (pid {parent} now belongs to another process) by pid {parent}" \
        in " ".join(notes)
    out = cli("unlock").stdout.decode()
    assert f"removed lock of pid {parent}" in out and "now belongs to another process" in out
    assert not (tmp_path / "repo" / LOCK_KEY).exists()


def test_check_reports_corruption_exit_13(cli: Cli, tmp_path: Path) -> None:
    cli("backup", "--stdin-name", "s", stdin=os.urandom(300_000))
    report = cli.json("check", "--read-data")
    assert isinstance(report, dict) and report["ok"] and report["bytes_verified"] > 300_000
    (pack,) = (tmp_path / "repo" / "data").glob("*/*")
    data = bytearray(pack.read_bytes())
    data[1000] ^= 0xFF
    pack.write_bytes(bytes(data))
    done = cli("check", "--read-data", ok=False)
    assert done.returncode == 13
    out = done.stdout.decode()
    assert f"error: object data/{pack.parent.name}/{pack.name}" in out
    done = cli("restore", "latest", "--target", str(tmp_path / "out"), ok=False)
    assert done.returncode == 13 and pack.name in _error_line(done)


def test_demo_backs_up_twice_restores_and_verifies(drsync_bin: str, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    done = subprocess.run([drsync_bin, "demo", "--dir", str(demo), "--size-mb", "20", "--json"],
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    assert doc["verified"] is True and doc["differences"] == []
    night1, night2 = doc["backups"]
    assert doc["rows_changed"] > 0
    # Only chunks holding changed pages are stored again (with 1 MiB chunks over 4 KiB
    # pages, 1% of rows touches about half of a 20 MB database's chunks).
    assert night2["bytes_added"] < 0.8 * night1["bytes_added"]
    assert (demo / "restore" / "municipal.db").exists()
    # Running it again starts clean; a directory it did not make is never deleted.
    assert subprocess.run([drsync_bin, "demo", "--dir", str(demo), "--size-mb", "2", "--json"],
                          capture_output=True, timeout=300).returncode == 0
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    refused = subprocess.run([drsync_bin, "demo", "--dir", str(foreign)], capture_output=True)
    assert refused.returncode == 2 and (foreign / "keep.txt").read_text() == "mine"


def test_check_reports_and_cleans_a_dead_puts_temporary(cli: Cli, tmp_path: Path) -> None:
    cli("backup", "--stdin-name", "s", stdin=b"data")
    (pack,) = (tmp_path / "repo" / "data").glob("*/*")
    leftover = pack.parent / ".tmp-0123456789abcdef"
    leftover.write_bytes(b"half a pack")
    hour_ago = time.time() - 3600
    os.utime(leftover, (hour_ago, hour_ago))
    report = cli.json("check")
    assert isinstance(report, dict) and report["ok"]
    (upload,) = report["uploads"]
    assert upload["stale"] is True and upload["key"].endswith(".tmp-0123456789abcdef")
    cli("check", "--cleanup-uploads")
    assert not leftover.exists() and pack.exists()


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def test_dry_run_predicts_what_the_backup_adds_and_stores_nothing(cli: Cli,
                                                                  tmp_path: Path) -> None:
    from drsync import sample

    db = tmp_path / "registry.db"
    sample.generate(db, size_mb=4)
    before = _tree_state(tmp_path / "repo")
    guess = cli.json("backup", "--sqlite", str(db), "--dry-run")
    assert guess["dry_run"] is True and guess["chunks_new"] == guess["chunks"]
    assert _tree_state(tmp_path / "repo") == before  # no pack, index, lock or record
    assert cli.json("runs") == []
    done = cli.json("backup", "--sqlite", str(db))
    # Sealing is the same, so the guess is the blobs' bytes plus a per-blob estimate of
    # pack header and index lines; the real run also stores its snapshot.
    assert abs(guess["bytes_to_add"] - done["bytes_added"]) < 0.03 * done["bytes_added"]
    sample.mutate(db, fraction=0.01)
    again = cli.json("backup", "--sqlite", str(db), "--dry-run")
    assert 0 < again["chunks_new"] < again["chunks"] / 5
    night2 = cli.json("backup", "--sqlite", str(db))
    assert abs(again["bytes_to_add"] - night2["bytes_added"]) < 0.1 * night2["bytes_added"]
    assert cli.json("backup", "--sqlite", str(db), "--dry-run")["chunks_new"] <= 2  # tree


def test_check_is_on_record_ok_and_failed(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(300_000))
    cli("backup", str(src))
    assert cli("check", "--read-data").returncode == 0
    pack = next(p for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file())
    pack.chmod(0o600)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 1
    pack.write_bytes(bytes(data))
    assert cli("check", "--read-data", ok=False).returncode == 13
    checks = sorted((r for r in cli.json("runs") if r["kind"] == "check"),  # type: ignore[union-attr]
                    key=lambda r: r["started"])
    assert [(r["source"], r["status"]) for r in checks] == [
        ("check --read-data", "ok"), ("check --read-data", "failed")]
    assert checks[0]["bytes_read"] > 300_000
    assert "error(s): object data/" in checks[1]["error"] and pack.name in checks[1]["error"]


def test_targets_and_values_that_would_destroy_are_refused(cli: Cli, tmp_path: Path) -> None:
    """An empty --target (an unset variable: the working directory), a --delta into / or
    into a directory holding the repository, empty tags, closed standard streams: one
    line each, and nothing written or removed."""
    src = tmp_path / "exports"
    src.mkdir()
    (src / "residents.csv").write_bytes(text_like(100_000, seed=4))
    cli("backup", str(src))
    cwd = tmp_path / "cwd"
    (cwd / "important").mkdir(parents=True)
    (cwd / "important" / "db").write_text("the operator's")
    for args, code, line in (
        (["restore", "latest", "--target", "", "--delta"], 2,
         "--target is empty (an unset variable?): name the directory to restore into"),
        (["restore", "latest", "--target", "/", "--delta"], 2,
         "refusing a --delta restore into /: it would remove every file of the system the "
         "snapshot does not hold"),
        (["restore", "latest", "--target", str(tmp_path), "--delta"], 2,
         f"refusing to restore into {tmp_path}: the repository {tmp_path / 'repo'} is inside "
         "it (a --delta would remove it); restore somewhere else"),
        (["restore", "latest", "--target", str(tmp_path / "repo" / "x")], 2,
         f"refusing to restore into {tmp_path / 'repo' / 'x'}: the repository "
         f"{tmp_path / 'repo'} holds it; restore somewhere else"),
        (["forget", "--keep-tag", ""], 2,
         "--keep-tag '' is empty (an unset variable?): give the tag to keep"),
        (["backup", "--tag", "", str(src)], 2,
         "--tag '' is empty (an unset variable?): give the tag, or leave it out"),
    ):
        done = subprocess.run([cli.exe, *args], capture_output=True, text=True, cwd=cwd,
                              env=cli.env)
        assert (done.returncode, done.stderr.strip()) == (code, f"drsync: error: {line}"), args
    assert (cwd / "important" / "db").read_text() == "the operator's"
    assert len(cli.json("snapshots")) == 1  # type: ignore[arg-type]
    closed = subprocess.run(f"{cli.exe} restore latest --stdout >&-", shell=True,
                            capture_output=True, text=True, env=cli.env)
    assert (closed.returncode, closed.stderr.strip()) == (
        17, "drsync: error: standard output is closed: nothing can be written to it "
            "(redirect it to a file or a program)")
    closed = subprocess.run(f"{cli.exe} backup --stdin-name dump <&-", shell=True,
                            capture_output=True, text=True, env=cli.env)
    assert (closed.returncode, closed.stderr.strip()) == (
        15, "drsync: error: standard input is closed: nothing to back up as 'dump' (pipe the "
            "dump into drsync)")
    # A keep_within past year 1 keeps everything rather than failing.
    assert cli.json("forget", "--keep-within", "3000y", "--dry-run")["removed"] == []  # type: ignore[index]


def test_init_refuses_a_directory_inside_a_repository(cli: Cli, tmp_path: Path) -> None:
    done = cli("--repo", str(tmp_path / "repo" / "data" / "tenant2"), "init", ok=False)
    assert (done.returncode, _error_line(done)) == (
        2, f"drsync: error: {tmp_path / 'repo' / 'data' / 'tenant2'} lies inside the repository "
           f"{tmp_path / 'repo'}: choose a directory or bucket prefix outside every repository")
    assert not (tmp_path / "repo" / "data" / "tenant2").exists()
