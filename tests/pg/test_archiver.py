"""doctor's archiver judgements, pure: counters and commands in, findings out."""

from __future__ import annotations

from drsync.sources.postgres.archiver import ArchiverStats, drsync_executable, judge_archiver

T1, T2 = "2026-01-01 10:00:00+00", "2026-01-01 11:00:00+00"
WAL_A, WAL_B = "000000010000000000000009", "00000001000000000000000A"


def test_a_failure_after_the_last_success_is_flagged_with_wal_and_time() -> None:
    found = judge_archiver(ArchiverStats(9, WAL_A, T1, 4, WAL_B, T2, failing=True))
    assert not found.ok and found.value.startswith(f"last failed {WAL_B} at {T2} (4 failed")
    assert f"last archived {WAL_A} at {T1}" in found.value
    never = judge_archiver(ArchiverStats(0, "", "", 1, WAL_B, T2, failing=True))
    assert not never.ok and "nothing archived yet" in never.value
    healed = judge_archiver(ArchiverStats(10, WAL_B, T2, 4, WAL_B, T1, failing=False))
    assert healed.ok and "followed by successes" in healed.value
    assert judge_archiver(ArchiverStats(0, "", "", 0, "", "", failing=False)).ok


def test_the_drsync_of_an_archive_command() -> None:
    assert drsync_executable("/opt/v/bin/drsync wal-push --config /e/a.toml %p") \
        == "/opt/v/bin/drsync"
    assert drsync_executable("DRSYNC_KEY_FILE=/k env X=1 '/o p/drsync' wal-push %p") \
        == "/o p/drsync"
    assert drsync_executable("drsync wal-push %p") is None  # the server's PATH decides
    assert drsync_executable("/bin/cp %p /mnt/%f") is None
    assert drsync_executable("'unbalanced") is None


def test_a_script_whose_interpreter_or_link_the_user_cannot_reach_is_not_executable(
        ) -> None:
    """A venv's drsync: mode 0755, but its #! python is a symlink into a base Python under
    /root (0700). doctor said "the server's user postgres can run it" while every archive
    attempt failed with Permission denied. Found by an edge hunt."""
    import os
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    from drsync.sources.postgres.archiver import executable_by

    nobody = pwd.getpwnam("nobody").pw_uid
    root = Path(tempfile.mkdtemp(prefix="drsync-exec-", dir="/tmp"))
    try:
        root.chmod(0o755)
        private = root / "private"
        private.mkdir(mode=0o700)
        (private / "python3").write_text("#!/bin/sh\nexit 0\n")
        (private / "python3").chmod(0o755)
        bin_dir = root / "venv" / "bin"
        bin_dir.mkdir(parents=True)
        bin_dir.parent.chmod(0o755)
        bin_dir.chmod(0o755)
        os.symlink(private / "python3", bin_dir / "python")
        script = bin_dir / "drsync"
        script.write_text(f"#!{bin_dir / 'python'}\nprint('wal-push')\n")
        script.chmod(0o755)
        why = executable_by(str(script), nobody)
        assert why is not None and why.startswith(f"{script} runs {bin_dir / 'python'} (its #! "
                                                  f"line): {bin_dir / 'python'} leads to")
        assert f"no search permission on {private}" in why
        (private).chmod(0o755)
        assert executable_by(str(script), nobody) is None
        plain = bin_dir / "tool"
        plain.write_text("#!/usr/bin/env python3\n")
        plain.chmod(0o755)
        assert executable_by(str(plain), nobody) is None  # env: found on a PATH unknown here
    finally:
        shutil.rmtree(root)
