"""pgBackRest beside drsync in ``bench/pg_bench.py``: installed when missing, one config each.

The peer is Debian's ``pgbackrest`` (2.45 in bookworm), configured as the
issue compares it: zstd level 3, AES-256-CBC repository encryption, two
processes, a fast checkpoint at backup start (drsync's pg_basebackup asks
for one too). Every command runs as the cluster's user with a config file,
repository, lock, spool and log path of its own inside the benchmark's
directory, so nothing outside it is read or written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from drsync.testing_postgres import PG_USER, Cluster, as_cluster_user

__all__ = ["STANZA", "PgBackRest", "install_pgbackrest"]

STANZA = "bench"


def install_pgbackrest() -> str | None:
    """None once ``pgbackrest`` is on PATH (apt-get installs it if missing), else why not."""
    if shutil.which("pgbackrest"):
        return None
    try:
        done = subprocess.run(["apt-get", "install", "-y", "-q", "pgbackrest"],
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"apt-get install -y pgbackrest: {err}"
    if shutil.which("pgbackrest"):
        return None
    last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
    return f"apt-get install -y pgbackrest failed ({done.returncode}): {last}"


class PgBackRest:
    """One pgBackRest configuration (``name``.conf) and its repository, for one cluster."""

    def __init__(self, base: Path, cluster: Cluster, name: str,
                 extra: dict[str, str] | None = None) -> None:
        self.name = name
        self.repo = base / f"{name}-repo"
        self.config = base / f"{name}.conf"
        settings = {
            "repo1-path": str(self.repo),
            "repo1-cipher-type": "aes-256-cbc",
            "repo1-cipher-pass": "bench-cipher-pass",
            "repo1-retention-full": "10",
            "compress-type": "zst",
            "compress-level": "3",
            "process-max": "2",
            "start-fast": "y",
            "lock-path": str(base / f"{name}-lock"),
            "spool-path": str(base / f"{name}-spool"),
            "log-path": str(base / f"{name}-log"),
            "log-level-console": "warn",
            "log-level-file": "off",
            **(extra or {}),
        }
        stanza = {"pg1-path": str(cluster.data), "pg1-socket-path": str(cluster.base),
                  "pg1-port": str(cluster.port), "pg1-user": PG_USER}
        self.config.write_text(
            "[global]\n" + "".join(f"{k}={v}\n" for k, v in settings.items())
            + f"\n[{STANZA}]\n" + "".join(f"{k}={v}\n" for k, v in stanza.items()))

    def command(self, *args: str) -> list[str]:
        return as_cluster_user(["pgbackrest", f"--config={self.config}", f"--stanza={STANZA}",
                                *args])

    def run(self, *args: str) -> str:
        done = subprocess.run(self.command(*args), capture_output=True, text=True,
                              timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"pgbackrest {' '.join(args)} ({self.name}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def backup_sets(self) -> set[str]:
        """Labels of the backup sets in the repository."""
        root = self.repo / "backup" / STANZA
        if not root.is_dir():
            return set()
        return {p.name for p in root.iterdir()
                if p.is_dir() and not p.is_symlink() and p.name != "backup.history"}

    def set_dir(self, label: str) -> Path:
        return self.repo / "backup" / STANZA / label

    @property
    def archive_dir(self) -> Path:
        return self.repo / "archive" / STANZA
