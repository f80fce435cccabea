"""Time restic and borg on the same backup job drsync's benchmark runs, when they are installed.

The job: make an encrypted repository, back up a file (day 1), back up the next day's
version of it at the same path (day 2), restore the latest snapshot and check it is
byte-identical. Each tool gets a private repository, cache and config directory under
the work directory, a password from the environment (no prompt), and its usual
settings: restic's default compression ("auto", repository format 2), borg's
``repokey-blake2`` encryption with ``zstd,3`` compression (borg 2: its
``repokey-blake2-aes-ocb`` equivalent; not tried here, only borg 1.2 was at hand).

A tool that is not on PATH is reported as not installed, never an error.
Run ``python bench/peers.py DAY1 DAY2 [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PeerRun", "byte_compile_drsync", "installed", "render", "run_all", "run_borg",
           "run_job", "run_restic", "spread"]

PASSWORD = "drsync-bench-not-a-secret"
FILE_NAME = "dump.sql"  # the path both days are backed up from, as a nightly dump would be


@dataclass(frozen=True)
class PeerRun:
    """One tool's timings (seconds) and repository growth (bytes) for the job."""

    tool: str
    version: str
    init_s: float
    backup1_s: float
    backup1_added: int
    backup2_s: float
    backup2_added: int
    restore_s: float
    restored_ok: bool
    repo_bytes: int


def spread(values: Sequence[float]) -> str:
    """The range of a measurement's rounds, ``min-max`` (one round: its value)."""
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def installed() -> dict[str, str | None]:
    """Tool name -> its version line, or None when it is not on PATH."""
    found: dict[str, str | None] = {}
    for tool, flag in (("restic", "version"), ("borg", "--version")):
        path = shutil.which(tool)
        if path is None:
            found[tool] = None
            continue
        result = subprocess.run([path, flag], capture_output=True, text=True, check=False)
        found[tool] = (result.stdout or result.stderr).strip().splitlines()[0]
    return found


def byte_compile_drsync() -> None:
    """Write the bytecode of drsync's modules, as installing a package does (pip compiles
    what it installs). The checkout is installed in editable mode, and this machine's
    environment sets ``PYTHONDONTWRITEBYTECODE=1``: without this, every drsync process a
    benchmark starts compiled its 40-60 modules from source, 45-110 ms a run that an
    installed drsync never pays (2026-12-02: a small restore from S3, 0.40 -> 0.355 s)."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "drsync"), quiet=1)


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a tool's temp file went away
                total += (Path(folder) / name).stat().st_size
    return total


def _run(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> float:
    """Run a command to completion; return its wall time. Raise with its output if it fails."""
    started = time.perf_counter()
    result = subprocess.run(
        list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return elapsed


def _place(source: Path, target: Path) -> None:
    """Put *source*'s bytes at *target* as a new file (a new inode, as a fresh dump has)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def warm(root: Path) -> int:
    """Read every file under *root* (or *root* itself) into the page cache; return bytes.

    Each tool's steps start warm, whatever ran before them: this machine's kernel pages
    out page cache left idle for a minute (DAMON ``pageout``, /sys/kernel/mm/damon), and
    the steps of the tools run minutes apart, so without it a step's time depended on how
    long ago its input was last read (a day-2 backup measured 0.8 s or 4.5 s)."""
    paths = [root] if root.is_file() else [Path(d) / n for d, _, names in os.walk(root)
                                            for n in names]
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError), open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(8 << 20):
                total += len(chunk)
    return total


def run_job(
    tool: str,
    version: str,
    day1: Path,
    day2: Path,
    workdir: Path,
    repo: Path,
    init: Callable[[], float],
    backup: Callable[[str, Path], float],
    restore: Callable[[Path], float],
) -> PeerRun:
    source = workdir / "source"
    source.mkdir(parents=True, exist_ok=True)
    target = workdir / "restore"
    init_s = init()
    sizes = [_tree_bytes(repo)]
    timings = []
    for label, day in (("day1", day1), ("day2", day2)):
        _place(Path(day), source / FILE_NAME)
        warm(source)
        timings.append(backup(label, source))
        sizes.append(_tree_bytes(repo))
    target.mkdir()
    warm(repo)
    restore_s = restore(target)
    restored = next(target.rglob(FILE_NAME), None)
    ok = restored is not None and filecmp.cmp(restored, day2, shallow=False)
    return PeerRun(
        tool, version, init_s, timings[0], sizes[1] - sizes[0], timings[1],
        sizes[2] - sizes[1], restore_s, ok, sizes[2],
    )  # fmt: skip


def run_restic(day1: Path, day2: Path, workdir: Path) -> PeerRun | None:
    """Time restic on the job in *workdir* (created, must not exist); None if not installed."""
    version = installed()["restic"]
    exe = shutil.which("restic")
    if exe is None or version is None:
        return None
    workdir.mkdir(parents=True)
    repo = workdir / "restic-repo"
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD": PASSWORD,
        "RESTIC_CACHE_DIR": str(workdir / "restic-cache"),
    }

    def init() -> float:
        return _run([exe, "init", "--repository-version", "2"], env)

    def backup(label: str, source: Path) -> float:
        return _run([exe, "backup", "--quiet", "--host", "bench", "--tag", label, FILE_NAME],
                    env, cwd=source)  # fmt: skip

    def restore(target: Path) -> float:
        return _run([exe, "restore", "latest", "--target", str(target)], env)

    return run_job("restic", version, day1, day2, workdir, repo, init, backup, restore)


def _borg_major(version: str) -> int:
    match = re.search(r"(\d+)\.\d+", version)
    return int(match.group(1)) if match else 1


def run_borg(day1: Path, day2: Path, workdir: Path) -> PeerRun | None:
    """Time borg on the job in *workdir* (created, must not exist); None if not installed."""
    version = installed()["borg"]
    exe = shutil.which("borg")
    if exe is None or version is None:
        return None
    workdir.mkdir(parents=True)
    repo = workdir / "borg-repo"
    env = {
        **os.environ,
        "BORG_REPO": str(repo),
        "BORG_PASSPHRASE": PASSWORD,
        "BORG_BASE_DIR": str(workdir / "borg-home"),  # cache, keys, security: all private
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    borg2 = _borg_major(version) >= 2

    def init() -> float:
        if not borg2:
            return _run([exe, "init", "--encryption", "repokey-blake2", str(repo)], env)
        try:
            return _run([exe, "repo-create", "--encryption", "repokey-blake2-aes-ocb"], env)
        except RuntimeError:  # betas before 2.0.0b10 called it rcreate
            return _run([exe, "rcreate", "--encryption", "repokey-blake2-aes-ocb"], env)

    def backup(label: str, source: Path) -> float:
        archive = label if borg2 else f"{repo}::{label}"
        return _run([exe, "create", "--compression", "zstd,3", archive, FILE_NAME], env,
                    cwd=source)  # fmt: skip

    def restore(target: Path) -> float:
        archive = "day2" if borg2 else f"{repo}::day2"
        return _run([exe, "extract", archive], env, cwd=target)

    return run_job("borg", version, day1, day2, workdir, repo, init, backup, restore)


def run_all(day1: Path, day2: Path, workdir: Path) -> dict[str, PeerRun | None]:
    """Run every peer tool in its own subdirectory of *workdir*; None for tools not installed."""
    return {
        "restic": run_restic(day1, day2, workdir / "restic"),
        "borg": run_borg(day1, day2, workdir / "borg"),
    }


def render(runs: Mapping[str, PeerRun | None], input_bytes: int | None = None) -> str:
    mib = 1 << 20
    lines = [
        f"{'tool':<16}{'init s':>8}{'day1 s':>8}{'day1 MiB':>10}{'day2 s':>8}{'day2 MiB':>10}"
        f"{'restore s':>11}{'repo MiB':>10}  ok"
    ]
    for name, run in runs.items():
        if run is None:
            lines.append(f"{name:<16}not installed")
            continue
        number = re.search(r"\d+\.\d+[\w.]*", run.version)
        label = f"{name} {number.group(0) if number else '?'}"
        lines.append(
            f"{label:<16}{run.init_s:>8.2f}{run.backup1_s:>8.2f}{run.backup1_added / mib:>10.1f}"
            f"{run.backup2_s:>8.2f}{run.backup2_added / mib:>10.1f}{run.restore_s:>11.2f}"
            f"{run.repo_bytes / mib:>10.1f}  {'yes' if run.restored_ok else 'NO'}"
        )
    if input_bytes:
        lines.append(f"(input: {input_bytes / mib:.1f} MiB per day)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time restic and borg on a two-day backup.")
    parser.add_argument("day1", type=Path)
    parser.add_argument("day2", type=Path)
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.workdir:
        runs = run_all(args.day1, args.day2, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="drsync-peers-") as scratch:
            runs = run_all(args.day1, args.day2, Path(scratch))
    print(render(runs, args.day1.stat().st_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
