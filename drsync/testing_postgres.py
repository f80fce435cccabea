"""Throwaway PostgreSQL clusters for tests and benchmarks, shipped with the code.

PostgreSQL refuses to run as root, and its archive_command and
restore_command run as the server's user. When the tests run as root (CI),
clusters are created and started as the ``postgres`` user (``runuser``), in
a ``tempfile.mkdtemp()`` directory (pytest's ``tmp_path`` sits under a 0700
directory) owned by that user, listening only on a unix socket in that
directory (short path: socket paths over ~107 bytes fail), so parallel tests
never collide on a port.

``postgres_runnable_drsync()`` answers the other half: the project's venv
lives under root's 0700 home, so ``postgres`` cannot execute it ("archive
command failed with exit code 126"). It builds, once per machine and
dependency set, a venv with Debian's ``/usr/bin/python3`` in a
world-readable directory, and copies the current ``drsync`` package beside
it, keyed by a hash of its source, with a small launcher script. Nothing
here is imported by drsync itself.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PG_USER",
    "ArchivingTenant",
    "Cluster",
    "as_cluster_user",
    "find_pg_bindir",
    "free_port",
    "make_cluster_dir",
    "postgres_runnable_drsync",
]

PG_USER = "postgres"
SHARED_ROOT = Path(os.environ.get("DRSYNC_TEST_SHARED", "/var/tmp/drsync-test"))
# What the postgres-side venv needs: drsync's runtime dependencies minus the
# catalog and planner ones (SQLAlchemy, matplotlib), never imported by wal-*;
# boto3 for archiving into (and recovering from) an S3 repository.
RUNTIME_DEPS = ("zstandard>=0.22", "cryptography>=42", "blake3>=0.4", "pyfastcdc>=0.3",
                "click>=8.1", "rich>=13", "boto3>=1.34", "sqlalchemy>=2.0",
                "apscheduler>=3.10,<4")


def find_pg_bindir(version: str = "15") -> str | None:
    """PostgreSQL's binaries: the pg_bindir setting, Debian's layout, or pg_ctl on PATH."""
    from drsync.settings import resolve

    configured = resolve(None, {}, os.environ).pg_bindir
    candidates = [configured] if configured else []
    candidates += [f"/usr/lib/postgresql/{version}/bin",
                   *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for cand in candidates:
        if cand and os.access(os.path.join(cand, "initdb"), os.X_OK):
            return cand
    return None


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_cluster_user(cmd: Sequence[str]) -> list[str]:
    """The command as the cluster's user: ``runuser -u postgres --`` when we are root."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if running_as_root() else list(cmd)


def chown_to_cluster_user(path: str | Path) -> None:
    if not running_as_root():
        return
    pw = pwd.getpwnam(PG_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


CLUSTER_DIRS: list[Path] = []  # made by this process, for a test session's last cleanup


def make_cluster_dir(prefix: str = "drpg-") -> Path:
    """A short, world-traversable directory owned by the cluster's user."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    CLUSTER_DIRS.append(path)
    os.chmod(path, 0o755)
    chown_to_cluster_user(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One throwaway cluster in ``base/data``, socket in ``base``, log in ``base/log``."""

    def __init__(self, base: Path, bindir: str, port: int | None = None) -> None:
        self.base = base
        self.bindir = bindir
        self.data = base / "data"
        self.port = port or free_port()
        self.log = base / "server.log"

    def bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    @property
    def dsn(self) -> str:
        return f"host={self.base} port={self.port} user={PG_USER} dbname=postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"host={self.base} port={self.port} user={PG_USER} dbname={dbname}"

    def run(self, *cmd: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(as_cluster_user(cmd), capture_output=True, text=True,
                              timeout=timeout, input=input, cwd=self.base)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}")
        return done

    def initdb(self, settings: dict[str, str] | None = None) -> None:
        self.run(self.bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER,
                 "--no-sync", "-E", "UTF8", "--locale", "C")
        conf = {"listen_addresses": "''", "port": str(self.port),
                "unix_socket_directories": f"'{self.base}'", "fsync": "off",
                "shared_buffers": "32MB", "max_wal_senders": "4", "wal_level": "replica",
                **(settings or {})}
        with open(self.data / "postgresql.conf", "a") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")

    def start(self) -> None:
        # -l: pg_ctl -w without a log file can hang when its output is captured.
        self.run(self.bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                 "-t", "120", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(self.bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                     check=False)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        done = self.run(self.bin("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                        str(self.base), "-p", str(self.port), "-U", PG_USER, "-d", dbname,
                        "-c", sql)
        return done.stdout.strip()

    def wait_archived(self, segment: str, timeout: float = 60) -> None:
        """Until the archiver reports ``segment`` (or a later one) archived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            if last and last[:24] >= segment[:24]:
                return
            time.sleep(0.1)
        raise TimeoutError(f"segment {segment} not archived; server log:\n"
                           + self.log.read_text()[-3000:])


class ArchivingTenant:
    """A cluster whose archive_command is drsync wal-push, and a repository for it.

    Every drsync command runs as the cluster's user with the postgres-runnable
    launcher, as the agent would on a tenant host. The repository (``repo_url``, by
    default a directory beside the cluster; ``config_extra`` is appended to the
    config file, e.g. an ``[s3]`` section) is made in-process with the fast KDF
    (``drsync.testing.make_repository``), opened with the store options of that
    config file, with a key file for the agent.
    """

    def __init__(self, bindir: str, exe: str, settings: dict[str, str] | None = None, *,
                 repo_url: str | None = None, config_extra: str = "") -> None:
        from drsync.settings import resolve, store_options
        from drsync.testing import make_repository

        self.base = make_cluster_dir()
        self.exe = exe
        self.bindir = bindir
        self.cluster = Cluster(self.base, bindir)
        self.repo = self.base / "repo"
        self.key = self.base / "tenant.key"
        self.spool = self.base / "spool"
        self.config = self.base / "agent.toml"
        self.config.write_text(f'repo = "{repo_url or self.repo}"\nkey_file = "{self.key}"\n'
                               f'catalog = "{self.base / "catalog.sqlite"}"\n'
                               f'[wal]\nspool = "{self.spool}"\n{config_extra}')
        self.env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(self.base),
                    "XDG_STATE_HOME": str(self.base / "state"),
                    "DRSYNC_CONFIG": str(self.config), "LANG": "C.UTF-8"}
        resolved = resolve(str(self.config), {}, self.env)
        assert resolved.repo is not None
        make_repository(resolved.repo, "pw", self.key, options=store_options(resolved))
        chown_to_cluster_user(self.base)
        self.cluster.initdb({
            "archive_mode": "on",
            "archive_command": f"'{exe} wal-push --config {self.config} %p'",
            "track_commit_timestamp": "on",
            **(settings or {}),
        })
        self.cluster.start()

    def drsync(self, *args: str, env: dict[str, str] | None = None, ok: bool = True,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        cmd = as_cluster_user(["env", *(f"{k}={v}" for k, v in full.items()), self.exe, *args])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.base, env={"PATH": os.environ["PATH"]})
        if ok:
            assert done.returncode == 0, f"drsync {' '.join(args)}: {done.stderr}"
        return done

    def drsync_json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.drsync(*args, "--json", **kw).stdout)

    def pgbench(self, *args: str) -> None:
        self.cluster.run(self.cluster.bin("pgbench"), "-h", str(self.base), "-p",
                         str(self.cluster.port), "-U", PG_USER, *args, "postgres")

    def switch_and_ship(self) -> str:
        """Close the current WAL segment, wait until it is archived, ship the spool."""
        segment = self.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        self.cluster.wait_archived(segment)
        self.drsync("wal-ship")
        return segment

    def close(self) -> None:
        from drsync.testing import stop_leftover_processes

        self.cluster.stop("immediate")
        stop_leftover_processes(str(self.base))  # archive_command's resident pusher
        shutil.rmtree(self.base, ignore_errors=True)


def _source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _deps_venv(python: str) -> Path:
    key = hashlib.sha256((python + "\n" + "\n".join(RUNTIME_DEPS)).encode()).hexdigest()[:12]
    venv = SHARED_ROOT / f"venv-{key}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *RUNTIME_DEPS], check=True,
                   capture_output=True)
    (venv / ".complete").touch()
    return venv


def postgres_runnable_drsync() -> str:
    """Path of a ``drsync`` launcher the cluster's user can execute, for archive_command.

    Not root: this process's own interpreter and code will do. Root: a venv
    from the system Python in a world-readable directory (built once, under
    a lock so parallel test workers share it), plus a copy of the current
    source keyed by its hash.
    """
    import drsync

    package = Path(drsync.__file__).resolve().parent
    if not running_as_root():
        home = Path(tempfile.gettempdir()) / f"drsync-{os.getuid()}-{_source_hash(package)}"
        launcher = home / "bin" / "drsync"
        if not launcher.exists():
            launcher.parent.mkdir(parents=True, exist_ok=True)
            tmp = launcher.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, "
                           f"{str(package.parent)!r})\nfrom drsync.entry import main\n"
                           "sys.exit(main())\n")  # a command's return value is its exit code
            tmp.chmod(0o755)
            tmp.replace(launcher)
        return str(launcher)
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    SHARED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(SHARED_ROOT, 0o755)
    with open(SHARED_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        venv = _deps_venv(python)
        code = SHARED_ROOT / f"code-{_source_hash(package)}"
        launcher = code / "bin" / "drsync"  # named drsync: a PATH entry for runbooks
        if not launcher.exists():
            tmp = SHARED_ROOT / f".code-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(package, tmp / "drsync",
                            ignore=shutil.ignore_patterns("__pycache__"))
            # Compiled now, as root: the cluster's user cannot write __pycache__ here.
            subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q",
                            str(tmp / "drsync")], check=True, capture_output=True)
            (tmp / "bin").mkdir()
            (tmp / "bin" / "drsync").write_text(
                f"#!{venv}/bin/python -I\nimport sys\nsys.path.insert(0, {str(code)!r})\n"
                "from drsync.entry import main\nsys.exit(main())\n")
            for root, _dirs, files in os.walk(tmp):
                os.chmod(root, 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            os.chmod(tmp / "bin" / "drsync", 0o755)
            shutil.rmtree(code, ignore_errors=True)
            os.rename(tmp, code)
            _prune_old_copies(keep=code)
        return str(launcher)


def _prune_old_copies(keep: Path, older_than_s: float = 86400.0) -> None:
    """Drop copies of earlier sources (one is made per source version tested) a day old;
    younger ones may serve a test run of another checkout right now."""
    cutoff = time.time() - older_than_s
    for old in SHARED_ROOT.glob("code-*"):
        if old != keep and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
