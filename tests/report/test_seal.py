"""The manifest, its Ed25519 signature and the chain, in-process on real files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from drsync.errors import UsageError
from drsync.report.seal import (
    generate_key,
    load_private_key,
    load_public_key,
    previous_link,
    seal_report,
    verify_report,
)


@pytest.fixture
def key_paths(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key(tmp_path / "keys")


def _report(directory: Path, key: Path, previous: Path | None = None, text: str = "x") -> Path:
    directory.mkdir(parents=True)
    (directory / "report.json").write_text(json.dumps({"text": text}))
    (directory / "evidence").mkdir()
    (directory / "evidence" / "evidence.json").write_bytes(os.urandom(2000))
    link = previous_link(previous, directory) if previous else None
    seal_report(directory, load_private_key(key), report_id=directory.name,
                created="2026-12-01T00:00:00+00:00", previous=link)
    return directory


def test_keygen_writes_a_private_key_only_its_owner_reads(key_paths: tuple[Path, Path]
                                                          ) -> None:
    private, public = key_paths
    assert private.stat().st_mode & 0o777 == 0o600
    assert load_private_key(private).public_key() == load_public_key(public)
    with pytest.raises(UsageError, match="not overwritten"):
        generate_key(private.parent)


def test_every_byte_of_every_file_is_covered(tmp_path: Path,
                                              key_paths: tuple[Path, Path]) -> None:
    private, public = key_paths
    report = _report(tmp_path / "r1", private)
    assert verify_report(report, public_key=load_public_key(public)).ok
    evidence = report / "evidence" / "evidence.json"
    original = evidence.read_bytes()
    for offset in (0, len(original) // 2, len(original) - 1):
        data = bytearray(original)
        data[offset] ^= 0x80
        evidence.write_bytes(bytes(data))
        result = verify_report(report)
        assert result.problems == [f"{report}: evidence/evidence.json: SHA-256 differs from "
                                   "the manifest (changed after signing)"]
    evidence.write_bytes(original[:-1])
    assert "1999 bytes, the manifest says 2000" in verify_report(report).problems[0]
    evidence.unlink()
    assert verify_report(report).problems == [f"{report}: evidence/evidence.json: missing"]
    evidence.write_bytes(original)
    (report / "manifest.sig").unlink()
    assert "manifest.sig is missing" in verify_report(report).problems[0]


def test_chain_of_three_and_where_it_breaks(tmp_path: Path,
                                            key_paths: tuple[Path, Path]) -> None:
    private, public = key_paths
    archive = tmp_path / "archive"
    one = _report(archive / "2026-09", private)
    two = _report(archive / "2026-10", private, one)
    three = _report(archive / "2026-11", private, two)
    result = verify_report(three, public_key=load_public_key(public))
    assert result.ok and result.chain == ["2026-11", "2026-10", "2026-09"]
    # The archive moved as a whole: the chain follows the relative names.
    moved = tmp_path / "moved"
    shutil.copytree(archive, moved)
    assert verify_report(moved / "2026-11").ok
    # A report re-signed in place of the middle one (same key): not the manifest chained.
    shutil.rmtree(two)
    _report(two, private, one, text="rewritten")
    result = verify_report(three)
    assert len(result.problems) == 1 and "chain broken" in result.problems[0]
    # The oldest one gone: named, with the way to point at it.
    shutil.rmtree(moved / "2026-09")
    result = verify_report(moved / "2026-11")
    assert "previous report 2026-09 not found" in result.problems[0]
    assert "--previous" in result.problems[0]
    # ... and pointed at where it is now.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(archive / "2026-09", elsewhere)
    result = verify_report(moved / "2026-10", previous=elsewhere)
    assert result.ok and result.chain == ["2026-10", "2026-09"]


def test_a_previous_report_signed_by_another_key_breaks_the_chain(
        tmp_path: Path, key_paths: tuple[Path, Path]) -> None:
    private, _public = key_paths
    other, _ = generate_key(tmp_path / "other")
    one = _report(tmp_path / "a" / "one", other)
    two = _report(tmp_path / "a" / "two", private, one)
    problems = verify_report(two).problems
    assert len(problems) == 1 and "not by the trusted key" in problems[0]


def test_previous_must_be_a_report(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.json there"):
        previous_link(tmp_path, tmp_path / "new")
