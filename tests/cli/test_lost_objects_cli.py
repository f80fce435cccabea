"""Lost and damaged objects through the installed `drsync`: exit codes, one line each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli


@pytest.fixture
def cli(drsync_bin: str, tmp_path: Path) -> Cli:
    c = Cli(drsync_bin, tmp_path)
    c("init")
    return c


def _only_pack(tmp_path: Path) -> Path:
    (pack,) = (tmp_path / "repo" / "data").glob("*/*")
    return pack


def test_restore_after_a_pack_is_deleted_exits_13_and_the_next_backup_heals(
        cli: Cli, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    first = cli.json("backup", "--stdin-name", "dump", "--tag", "nightly", stdin=data)
    pack = _only_pack(tmp_path)
    pack.unlink()
    done = cli("restore", "latest", "--stdout", ok=False)
    assert done.returncode == 13 and done.stdout == b""
    (line,) = done.stderr.decode().strip().splitlines()
    assert line.startswith("drsync: error: ")
    assert line.endswith(f"object data/{pack.parent.name}/{pack.name}: missing "
                         "(named by the index)")
    done = cli("check", ok=False)
    assert done.returncode == 13
    out = done.stdout.decode()
    assert f"error: snapshot {first['snapshot_id'][:8]} (" in out  # type: ignore[index]
    assert f"nightly) cannot be fully restored: 1 blob in missing pack {pack.name[:12]}…" in out
    # The same data again: the backup must store it again, not trust the index.
    second = cli.json("backup", "--stdin-name", "dump", stdin=data)
    assert second["bytes_added"] > len(data)  # type: ignore[index]
    assert cli("restore", second["snapshot_id"], "--stdout").stdout == data  # type: ignore[index]
    assert cli("check").returncode == 0


def test_a_damaged_index_is_one_warning_and_an_error_in_check(cli: Cli, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    cli("backup", "--stdin-name", "dump", stdin=data)
    (index,) = (tmp_path / "repo" / "index").iterdir()
    index.write_bytes(index.read_bytes()[:-1] + b"!")
    done = cli("restore", "latest", "--stdout")
    assert done.stdout == data
    assert done.stderr.decode().splitlines() == [
        f"drsync: warning: object index/{index.name}: skipped: content does not match its name"]
    done = cli("check", ok=False)
    assert done.returncode == 13
    assert f"error: object index/{index.name}: content does not match its name" \
        in done.stdout.decode()


def test_a_deleted_newest_snapshot_is_reported_from_the_catalog(cli: Cli,
                                                                tmp_path: Path) -> None:
    cli("backup", "--stdin-name", "dump", stdin=b"monday")
    newest = cli.json("backup", "--stdin-name", "dump", stdin=b"tuesday")["snapshot_id"]  # type: ignore[index]
    assert cli("check").returncode == 0
    (tmp_path / "repo" / "snapshots" / newest).unlink()
    done = cli("check", ok=False)
    assert done.returncode == 13
    lines = [x for x in done.stdout.decode().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: snapshot {newest[:8]} (")
    assert lines[0].endswith("recorded in the catalog is missing from the store "
                             "(rolled back or deleted)")
    done = cli("snapshots")
    (warning,) = done.stderr.decode().splitlines()
    assert warning.startswith(f"drsync: warning: snapshot {newest[:8]} (")
    assert "missing from the store" in warning
