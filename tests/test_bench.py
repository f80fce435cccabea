"""The benchmark helpers in bench/: small inputs, real tools, no fakes."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

# bench/ is a package at the repository root, not part of the installed drsync.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import datagen, peers, raw_limits

SIZE = 3 << 20


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> datagen.DumpStats:
    return datagen.generate(tmp_path_factory.mktemp("dump") / "day1.sql", SIZE, seed=11)


def test_dump_is_deterministic_and_about_the_size(dump: datagen.DumpStats, tmp_path: Path) -> None:
    again = datagen.generate(tmp_path / "again.sql", SIZE, seed=11)
    assert (
        hashlib.sha256(again.path.read_bytes()).digest()
        == hashlib.sha256(dump.path.read_bytes()).digest()
    )
    assert SIZE * 0.95 < dump.size_bytes < SIZE * 1.1
    text = dump.path.read_text()
    assert text.count(" FROM stdin;\n") == len(datagen.TABLES) == text.count("\n\\.\n")


def test_day2_changes_a_few_rows_in_place_and_appends(
    dump: datagen.DumpStats, tmp_path: Path
) -> None:
    result = datagen.day2(dump.path, tmp_path / "day2.sql", fraction=0.01, seed=3)
    before = dump.path.read_bytes().split(b"\n")
    after = result.path.read_bytes().split(b"\n")
    rows = sum(dump.rows.values())
    assert 0.003 * rows < result.changed_rows < 0.03 * rows
    assert len(after) == len(before) + result.appended_rows
    assert result.appended_rows > 0
    old = set(before)
    new_rows = [line for line in after if b"\t" in line and line not in old]
    assert len(new_rows) == result.changed_rows + result.appended_rows
    last_resident = max(int(line.split(b"\t", 1)[0]) for line in after if b"\t" in line)
    assert f"_id_seq', {last_resident}, true);".encode() in result.path.read_bytes()


def test_parse_size() -> None:
    assert datagen.parse_size("1G") == 1 << 30
    assert datagen.parse_size("256MiB") == 256 << 20
    assert datagen.parse_size("4096") == 4096
    with pytest.raises(ValueError):
        datagen.parse_size("lots")


def test_raw_limits_measures_every_stage(dump: datagen.DumpStats) -> None:
    results = raw_limits.measure(dump.path, 2 << 20, repeat=1)
    for key in ("fastcdc", "blake3_keyed", "zstd3", "aes_gcm", "pipeline_1t", "pipeline_2t"):
        assert results[f"{key}_mb_s"] > 0
    assert 2 < results["zstd3_ratio"] < 10
    assert results["input_mb"] == pytest.approx(2 * 2**20 / 1e6)


def test_peers_render_missing_tools_as_not_installed() -> None:
    assert "borg            not installed" in peers.render({"borg": None})
