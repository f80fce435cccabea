"""`drsync forget` and `drsync prune` through the installed executable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drsync.repo import RepoConfig
from drsync.testing import make_repository
from tests.cli.test_cli import Cli, _error_line


@pytest.fixture
def cli(drsync_bin: str, tmp_path: Path) -> Cli:
    c = Cli(drsync_bin, tmp_path)
    make_repository(str(tmp_path / "repo"), "correct horse",
                    config=RepoConfig(chunk_avg=4096, chunk_min=1024, chunk_max=16384,
                                      pack_size=1 << 20))
    return c


def nightly(cli: Cli, n: int) -> list[bytes]:
    versions = []
    data = bytearray(os.urandom(600 << 10))
    for night in range(n):
        data[night * 100_000:night * 100_000 + 90_000] = os.urandom(90_000)
        versions.append(bytes(data))
        cli("backup", "--stdin-name", "registry.dump", "--tag", f"night{night}",
            stdin=versions[-1])
    return versions


def test_forget_and_prune_end_to_end(cli: Cli, tmp_path: Path) -> None:
    versions = nightly(cli, 4)
    plan = cli.json("forget", "--keep-last", "2", "--keep-tag", "night0", "--dry-run")
    assert plan["dry_run"] and plan["kept"] == 3 and len(plan["removed"]) == 1
    [group] = plan["groups"]
    assert [k["reasons"] for k in group["kept"]] == [["last"], ["last"], ["tag night0"]]
    assert group["removed"][0]["tags"] == ["night1"]
    assert len(cli.json("snapshots")) == 4  # a dry run removes nothing
    done = cli.json("forget", "--keep-last", "1")
    assert done["kept"] == 1 and len(done["removed"]) == 3
    assert [s["tags"] for s in cli.json("snapshots")] == [["night3"]]
    dry = cli.json("prune", "--dry-run")
    assert dry["bytes_unused"] > 0  # and what it would write: packs only for a repack
    assert (dry["packs_repacked"] == 0) == (dry["packs_written"] == 0)
    report = cli.json("prune", "--max-unused", "0%")
    assert report["packs_deleted"] + report["packs_repacked"] > 0
    assert report["index_files_written"] >= 1 and report["locked"] == []
    assert cli("check", "--read-data").returncode == 0
    assert cli("restore", "latest", "--stdout").stdout == versions[-1]
    human = cli("prune").stdout.decode()
    assert "delete 0 pack(s)" in human


def test_what_forget_removed_is_not_reported_missing_but_a_deletion_is(cli: Cli,
                                                                      tmp_path: Path) -> None:
    nightly(cli, 3)
    snaps = cli.json("snapshots")
    assert isinstance(snaps, list)
    cli("forget", "--keep-last", "1")
    for command in (("check",), ("snapshots",)):
        done = cli(*command)
        out = done.stdout.decode() + done.stderr.decode()
        assert "missing from the store" not in out, out  # removed on purpose
    # A snapshot removed behind drsync's back is still named (the newest: an error).
    (tmp_path / "repo" / "snapshots" / snaps[2]["id"]).unlink()
    done = cli("check", ok=False)
    assert done.returncode == 13  # the store now holds no snapshot newer than it: an error
    assert f"snapshot {snaps[2]['id'][:8]}" in done.stdout.decode()
    assert "rolled back or deleted" in done.stdout.decode()
    assert f"snapshot {snaps[0]['id'][:8]}" not in done.stdout.decode()


def test_retention_comes_from_the_config_and_a_flag_overrides_its_key(cli: Cli,
                                                                      tmp_path: Path) -> None:
    nightly(cli, 4)
    config = tmp_path / "drsync.toml"
    config.write_text('[retention]\nkeep_last = 1\nkeep_tags = ["night0"]\nmax_unused = "5%"\n')
    env = {"DRSYNC_CONFIG": str(config)}
    from_config = json.loads(cli("forget", "--dry-run", "--json", env=env).stdout)
    assert from_config["kept"] == 2 and from_config["policy"]["keep_tags"] == ["night0"]
    overridden = json.loads(cli("forget", "--keep-last", "3", "--dry-run", "--json",
                                env=env).stdout)
    assert overridden["kept"] == 4 and overridden["policy"]["keep_last"] == 3
    human = cli("forget", env=env).stdout.decode()
    assert "keep 2, removed 2" in human and "tag night0" in human
    assert len(cli.json("snapshots")) == 2


@pytest.mark.parametrize(("toml", "message"), [
    ('keep_within = "30 days"', "key 'retention.keep_within': duration '30 days' is not like"),
    ('keep_daily = "7"', "key 'retention.keep_daily' must be an integer"),
    ('max_unused = "ten"', "key 'retention.max_unused': --max-unused 'ten' is not a percentage"),
    ("keep_fortnightly = 2", "unknown key 'retention.keep_fortnightly'"),
])
def test_a_bad_retention_key_is_one_line_naming_file_and_key(cli: Cli, tmp_path: Path,
                                                             toml: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[retention]\n{toml}\n")
    done = cli("forget", "--dry-run", env={"DRSYNC_CONFIG": str(config)}, ok=False)
    assert done.returncode == 4
    line = _error_line(done)
    assert str(config) in line and message in line, line


def test_forget_without_a_policy_and_bad_flags_are_usage_errors(cli: Cli) -> None:
    nightly(cli, 1)
    done = cli("forget", ok=False)
    assert done.returncode == 2 and "no retention policy" in _error_line(done)
    done = cli("forget", "--keep-within", "forever", ok=False)
    assert done.returncode == 2 and "'forever' is not like 30d" in _error_line(done)
    done = cli("prune", "--max-unused", "10", ok=False)
    assert done.returncode == 2 and "not a percentage" in _error_line(done)
    assert len(cli.json("snapshots")) == 1


def test_forget_removes_the_snapshots_named_and_no_other(cli: Cli, tmp_path: Path) -> None:
    versions = nightly(cli, 4)
    snaps = cli.json("snapshots")
    assert isinstance(snaps, list)
    ids = [s["id"] for s in snaps]
    plan = cli.json("forget", ids[1][:8], ids[2], "--dry-run")
    assert sorted(plan["removed"]) == sorted([ids[1], ids[2]]) and plan["kept"] == 2
    assert len(cli.json("snapshots")) == 4
    missing = cli("forget", "deadbeef", ok=False)
    assert (missing.returncode, _error_line(missing)) == (
        16, f"drsync: error: no snapshot 'deadbeef' in {tmp_path / 'repo'}")
    both = cli("forget", ids[1], "--keep-last", "1", ok=False)
    assert (both.returncode, _error_line(both)) == (
        2, "drsync: error: forget takes snapshot ids or --keep-* options, not both")
    assert len(cli.json("snapshots")) == 4  # neither removed anything
    cli("forget", ids[1][:8], ids[2])
    assert [s["id"] for s in cli.json("snapshots")] == [ids[0], ids[3]]  # type: ignore[union-attr]
    cli("prune", "--max-unused", "0%")
    assert cli("check", "--read-data").returncode == 0  # forgotten on purpose: no error
    assert cli("restore", ids[0], "--stdout").stdout == versions[0]
    assert cli("restore", ids[3], "--stdout").stdout == versions[3]
