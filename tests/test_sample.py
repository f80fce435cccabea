"""The sample municipal database: deterministic, about the asked size, and checkable."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from drsync.sample import SampleStats, compare, generate, mutate

SIZE_MB = 2


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleStats:
    return generate(tmp_path_factory.mktemp("sample") / "town.db", SIZE_MB, seed=7)


def test_same_seed_gives_same_bytes(sample: SampleStats, tmp_path: Path) -> None:
    again = generate(tmp_path / "again.db", SIZE_MB, seed=7)
    assert again.rows == sample.rows
    assert _digest(again.path) == _digest(sample.path)


def test_other_seed_gives_other_data(sample: SampleStats, tmp_path: Path) -> None:
    other = generate(tmp_path / "other.db", SIZE_MB, seed=8)
    assert compare(sample.path, other.path)


def test_size_is_about_what_was_asked(sample: SampleStats) -> None:
    assert sample.size_bytes == sample.path.stat().st_size
    assert SIZE_MB * 0.95 <= sample.size_bytes / 2**20 <= SIZE_MB * 1.1


def test_tables_hold_plausible_rows(sample: SampleStats) -> None:
    with sqlite3.connect(sample.path) as db:
        counts = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("residents", "tax", "health_insurance")
        }
        prefectures = {row[0] for row in db.execute("SELECT DISTINCT prefecture FROM residents")}
        kana = db.execute("SELECT family_name_kana FROM residents LIMIT 1").fetchone()[0]
    db.close()
    assert counts == {
        "residents": sample.residents,
        "tax": sample.tax_rows,
        "health_insurance": sample.health_insurance_rows,
    }
    assert sample.tax_rows > sample.residents > sample.health_insurance_rows > 0
    assert prefectures == {"宮崎県", "佐賀県"}
    assert all("ァ" <= ch <= "ヶ" or ch == "ー" for ch in kana)


def test_copy_compares_equal(sample: SampleStats, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copyfile(sample.path, copy)
    assert compare(sample.path, copy) == []


def test_mutate_changes_about_the_fraction_and_compare_sees_each_row(
    sample: SampleStats, tmp_path: Path
) -> None:
    day2 = tmp_path / "day2.db"
    shutil.copyfile(sample.path, day2)
    changed = mutate(day2, fraction=0.01, seed=3)
    assert 0.5 * 0.01 * sample.rows <= changed <= 1.5 * 0.01 * sample.rows
    differences = compare(sample.path, day2)
    assert len(differences) == changed
    assert any("only in b" in d for d in differences)  # new residents
    assert any(d.startswith("tax ") for d in differences)
    assert compare(sample.path, day2, limit=10)[-1] == f"... and {changed - 10} more differences"


def test_mutate_is_deterministic(sample: SampleStats, tmp_path: Path) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    shutil.copyfile(sample.path, first)
    shutil.copyfile(sample.path, second)
    assert mutate(first, 0.02, seed=5) == mutate(second, 0.02, seed=5)
    assert compare(first, second) == []


def test_compare_reports_schema_changes(sample: SampleStats, tmp_path: Path) -> None:
    changed = tmp_path / "schema.db"
    shutil.copyfile(sample.path, changed)
    with sqlite3.connect(changed) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.close()
    assert compare(sample.path, changed) == ["schema: table notes only in b"]


def test_compare_reports_a_damaged_file(sample: SampleStats, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    data = bytearray(sample.path.read_bytes())
    page = 4096
    data[10 * page : 11 * page] = b"\xff" * page  # one b-tree page overwritten
    damaged.write_bytes(bytes(data))
    differences = compare(sample.path, damaged)
    assert differences
    assert differences[0].startswith("b:")


def test_compare_of_a_missing_file_raises(sample: SampleStats, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compare(sample.path, tmp_path / "absent.db")
