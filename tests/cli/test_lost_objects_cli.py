"""Lost and damaged objects through the installed `drsync`: exit codes, one line each."""

from __future__ import annotations

import json
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


def test_repair_packs_as_an_operator_reads_it(cli: Cli, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    first = cli.json("backup", "--stdin-name", "dump", stdin=data)
    pack = _only_pack(tmp_path)
    done = cli("repair", "packs", pack.name[:12])
    assert done.stdout.decode().splitlines() == [
        f"pack {pack.name[:12]}: intact (its bytes match its name): left alone",
        "no damaged pack found (1 named)"]
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 0x01  # inside the only data blob
    pack.chmod(0o600)
    pack.write_bytes(bytes(raw))
    found = cli("check", "--read-data", "--json", ok=False)
    assert found.returncode == 13
    assert json.loads(found.stdout)["damaged_packs"] == [pack.name]
    bad = cli("repair", "packs", "data/zz", ok=False)
    assert bad.returncode == 2 and b"is not a pack" in bad.stderr
    done = cli("repair", "packs", f"data/{pack.parent.name}/{pack.name}", "--save-to",
               str(tmp_path / "q"))
    out = done.stdout.decode().splitlines()
    assert out[0].startswith(f"pack {pack.name[:12]}: damaged: ")
    assert out[0].endswith(" held by other packs, 1 lost")
    assert out[1].startswith("  offset ") and "authentication failed" in out[1]
    assert out[-3].startswith("1 damaged pack(s): ") and out[-3].endswith(", 1 lost")
    assert out[-2].startswith(f"snapshot {first['snapshot_id'][:8]} (")  # type: ignore[index]
    assert out[-1].startswith("next: back up the tenant's source")
    assert f"  saved to {tmp_path / 'q' / pack.name}; deleted from the store" in out
    assert not pack.exists()
    assert cli("check", ok=False).returncode == 13  # the loss, named, until a backup heals
    cli("backup", "--stdin-name", "dump", stdin=data)
    assert cli("restore", first["snapshot_id"], "--stdout").stdout == data  # type: ignore[index]
    assert cli("check", "--read-data").returncode == 0


def test_a_repair_is_on_record(cli: Cli, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    cli.json("backup", "--stdin-name", "dump", stdin=data)
    pack = _only_pack(tmp_path)
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 0x01
    pack.chmod(0o600)
    pack.write_bytes(bytes(raw))
    cli("repair", "packs", "--dry-run")  # a dry run is not on record
    report = cli.json("repair", "packs", "--save-to", str(tmp_path / "q"))
    [run] = [r for r in cli.json("runs") if r["kind"] == "repair"]  # type: ignore[union-attr]
    assert run["status"] == "partial" and run["source"] == "repair packs"
    assert run["bytes_read"] == report["bytes_read"] > 0  # type: ignore[index]
    assert run["error"].startswith("1 blob(s) could not be salvaged; 1 snapshot(s) need")
