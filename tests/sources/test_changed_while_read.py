"""A file written to while a backup reads it is a problem of the run (partial, exit 3),
as tar's "file changed as we read it": its copy may never have existed on disk."""

from __future__ import annotations

import os
from pathlib import Path

from drsync.backup import BackupRequest, run_backup
from drsync.testing import make_repo, text_like


def test_a_file_appended_to_while_read_makes_the_run_partial(tmp_path: Path) -> None:
    src = tmp_path / "exports"
    src.mkdir()
    quiet, busy = src / "quiet.csv", src / "busy.log"
    quiet.write_bytes(text_like(3 << 20, seed=1))
    busy.write_bytes(text_like(32 << 20, seed=2))  # read first ("b" < "q"), in pieces
    repo = make_repo()
    seen = {"bytes": 0, "appended": False}

    def progress(n: int) -> None:  # told as bytes are read: the writer strikes mid-read
        seen["bytes"] += n
        if not seen["appended"]:
            with open(busy, "ab") as fh:
                fh.write(b"a line written during the backup\n")
            seen["appended"] = True

    result = run_backup(repo, BackupRequest(paths=[str(src)]), progress=progress)
    assert seen["appended"]
    assert result.exit_code == 3
    [problem] = result.problems
    assert problem.path == str(busy)
    assert problem.reason.startswith(f"changed while it was read ({32 << 20} bytes at the "
                                     f"start, {(32 << 20) + 33} at the end, ")
    assert problem.reason.endswith("its copy in the snapshot may be torn; back it up again "
                                   "when nothing writes it")
    # Untouched, the same tree is a clean run.
    os.utime(busy)
    assert run_backup(repo, BackupRequest(paths=[str(src)])).exit_code == 0
