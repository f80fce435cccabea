"""One day's edits to the sample database, concentrated in a few hot regions."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from drsync.sample.generate import (
    _HOT_REGIONS,
    _INSERT_RESIDENT,
    _SURNAME_WEIGHTS,
    AS_OF,
    Row,
    _address,
    _birth_date,
    _given_name,
    _phone,
    _timestamp,
)
from drsync.sample.vocab import SURNAMES

__all__ = ["mutate"]

def _hot_ranges(rng: random.Random, ids: Sequence[int], span: int) -> list[tuple[int, int]]:
    """Pick a few runs of *span* consecutive resident ids; return inclusive id ranges."""
    span = max(1, min(len(ids), span))
    ranges = []
    for _ in range(_HOT_REGIONS):
        start = rng.randrange(len(ids) - span + 1)
        ranges.append((ids[start], ids[start + span - 1]))
    return ranges


def _in_ranges(db: sqlite3.Connection, query: str, ranges: Sequence[tuple[int, int]]) -> list[Row]:
    seen: dict[Row, None] = {}  # ordered, duplicates from overlapping ranges dropped
    for low, high in ranges:
        for row in db.execute(query, (low, high)):
            seen.setdefault(tuple(row), None)
    return list(seen)


def mutate(path: Path, fraction: float = 0.01, seed: int = 1) -> int:
    """Apply a day's edits touching about *fraction* of all rows; return how many rows changed.

    Tax instalments are paid, residents move house, health claims arrive (all within a
    few hot regions of the registry), and new residents are added at the end.
    Every counted row ends up different from what it was.
    """
    rng = random.Random(seed)
    today = AS_OF + dt.timedelta(days=1 + seed % 300)
    with contextlib.closing(sqlite3.connect(Path(path))) as db, db:
        ids = [int(row[0]) for row in db.execute("SELECT id FROM residents ORDER BY id")]
        total = sum(
            int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("residents", "tax", "health_insurance")
        )
        target = max(1, round(total * fraction))
        n_tax = round(target * 0.45)
        n_moves = round(target * 0.2)
        n_claims = round(target * 0.2)
        n_new = max(0, target - n_tax - n_moves - n_claims)
        ranges = _hot_ranges(rng, ids, math.ceil(target * 0.6 / _HOT_REGIONS))
        changed = _pay_tax(db, rng, ranges, n_tax, today)
        changed += _move_residents(db, rng, ranges, n_moves, today)
        changed += _record_claims(db, rng, ranges, n_claims)
        changed += _add_residents(db, rng, ranges, n_new, today)
    return changed


def _sample(rng: random.Random, rows: list[Row], count: int) -> list[Row]:
    return rng.sample(rows, min(count, len(rows)))


def _pay_tax(
    db: sqlite3.Connection,
    rng: random.Random,
    ranges: list[tuple[int, int]],
    count: int,
    today: dt.date,
) -> int:
    query = (
        "SELECT resident_id, fiscal_year, paid_q1, paid_q2, paid_q3, paid_q4, municipal_tax"
        " FROM tax WHERE resident_id BETWEEN ? AND ? ORDER BY resident_id, fiscal_year"
    )
    changed = 0
    for resident_id, year, *paid, municipal in _sample(rng, _in_ranges(db, query, ranges), count):
        if 0 in paid:
            quarter = paid.index(0) + 1
            cursor = db.execute(
                f"UPDATE tax SET paid_q{quarter} = 1, last_payment_date = ?"
                " WHERE resident_id = ? AND fiscal_year = ?",
                (today.isoformat(), resident_id, year),
            )
        else:  # fully paid: an amended assessment (修正申告) raises the tax instead
            cursor = db.execute(
                "UPDATE tax SET municipal_tax = ? WHERE resident_id = ? AND fiscal_year = ?",
                (municipal + 100 * rng.randint(1, 50), resident_id, year),
            )
        changed += cursor.rowcount
    return changed


def _move_residents(
    db: sqlite3.Connection,
    rng: random.Random,
    ranges: list[tuple[int, int]],
    count: int,
    today: dt.date,
) -> int:
    query = (
        "SELECT id, postal_code, prefecture, city, town, chome_banchi, building FROM residents"
        " WHERE id BETWEEN ? AND ? ORDER BY id"
    )
    changed = 0
    for resident_id, *old in _sample(rng, _in_ranges(db, query, ranges), count):
        new = list(_address(rng).columns())
        while new == old:
            new = list(_address(rng).columns())
        cursor = db.execute(
            "UPDATE residents SET postal_code = ?, prefecture = ?, city = ?, town = ?,"
            " chome_banchi = ?, building = ?, updated_at = ? WHERE id = ?",
            (*new, _timestamp(rng, today), resident_id),
        )
        changed += cursor.rowcount
    return changed


def _record_claims(
    db: sqlite3.Connection, rng: random.Random, ranges: list[tuple[int, int]], count: int
) -> int:
    query = "SELECT id FROM health_insurance WHERE resident_id BETWEEN ? AND ? ORDER BY id"
    changed = 0
    for (row_id,) in _sample(rng, _in_ranges(db, query, ranges), count):
        claims = rng.randint(1, 3)
        cursor = db.execute(
            "UPDATE health_insurance SET claims_count = claims_count + ?,"
            " claims_amount = claims_amount + ? WHERE id = ?",
            (claims, claims * rng.randint(2_000, 25_000), row_id),
        )
        changed += cursor.rowcount
    return changed


def _add_residents(
    db: sqlite3.Connection,
    rng: random.Random,
    ranges: list[tuple[int, int]],
    count: int,
    today: dt.date,
) -> int:
    """Births into households of the hot regions, and move-ins as new one-person households."""
    next_id = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM residents").fetchone()[0])
    next_household = int(
        db.execute("SELECT coalesce(max(household_id), 0) + 1 FROM residents").fetchone()[0]
    )
    parents = _in_ranges(
        db,
        "SELECT household_id, family_name, family_name_kana, postal_code, prefecture, city, town,"
        " chome_banchi, building FROM residents"
        " WHERE id BETWEEN ? AND ? AND relationship = '世帯主' ORDER BY id",
        ranges,
    )
    rows: list[Row] = []
    for _ in range(count):
        sex = rng.choice("MF")
        given = _given_name(rng, sex)
        if parents and rng.random() < 0.6:
            household, family, family_kana, *address = rng.choice(parents)
            relationship, born, phone = "子", today, None
        else:
            household, next_household = next_household, next_household + 1
            surname = rng.choices(SURNAMES, _SURNAME_WEIGHTS)[0]
            family, family_kana = surname.kanji, surname.kana
            moved = _address(rng)
            address = list(moved.columns())
            relationship, born = "世帯主", _birth_date(rng, rng.randint(18, 80))
            phone = _phone(rng, moved.town, landline=False)
        rows.append(
            (
                next_id,
                household,
                relationship,
                family,
                given.kanji,
                family_kana,
                given.kana,
                born.isoformat(),
                sex,
                *address,
                phone,
                today.isoformat(),
                _timestamp(rng, today),
            )
        )
        next_id += 1
    db.executemany(_INSERT_RESIDENT, rows)
    return len(rows)


# --- comparison -------------------------------------------------------------------------------


