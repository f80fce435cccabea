"""Generating the sample municipal database: schema, people, households, tax, NHI."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from drsync.sample.vocab import FEMALE_GIVEN_NAMES, MALE_GIVEN_NAMES, SURNAMES, TOWNS, Name, Town

__all__ = ["SCHEMA", "SampleStats", "generate"]

SCHEMA: Final = """\
CREATE TABLE residents (
    id INTEGER PRIMARY KEY,
    household_id INTEGER NOT NULL,
    relationship TEXT NOT NULL,
    family_name TEXT NOT NULL,
    given_name TEXT NOT NULL,
    family_name_kana TEXT NOT NULL,
    given_name_kana TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL CHECK (sex IN ('M', 'F')),
    postal_code TEXT NOT NULL,
    prefecture TEXT NOT NULL,
    city TEXT NOT NULL,
    town TEXT NOT NULL,
    chome_banchi TEXT NOT NULL,
    building TEXT,
    phone TEXT,
    registered_date TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX residents_household ON residents (household_id);
CREATE TABLE tax (
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    fiscal_year INTEGER NOT NULL,
    income INTEGER NOT NULL,
    deductions INTEGER NOT NULL,
    municipal_tax INTEGER NOT NULL,
    prefectural_tax INTEGER NOT NULL,
    per_capita_levy INTEGER NOT NULL,
    paid_q1 INTEGER NOT NULL,
    paid_q2 INTEGER NOT NULL,
    paid_q3 INTEGER NOT NULL,
    paid_q4 INTEGER NOT NULL,
    last_payment_date TEXT,
    PRIMARY KEY (resident_id, fiscal_year)
) WITHOUT ROWID;
CREATE TABLE health_insurance (
    id INTEGER PRIMARY KEY,
    insured_number TEXT NOT NULL,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    household_id INTEGER NOT NULL,
    fiscal_year INTEGER NOT NULL,
    qualified_date TEXT NOT NULL,
    premium INTEGER NOT NULL,
    premium_paid INTEGER NOT NULL,
    claims_count INTEGER NOT NULL,
    claims_amount INTEGER NOT NULL,
    copay_percent INTEGER NOT NULL,
    UNIQUE (resident_id, fiscal_year)
);
"""

AS_OF: Final = dt.date(2024, 10, 1)  # the registry's "today" when generated
TAX_YEARS: Final = tuple(range(2020, 2025))
NHI_YEARS: Final = tuple(range(2022, 2025))
_MIB: Final = 1 << 20
_HOT_REGIONS: Final = 3
_BUILDINGS: Final = (
    "メゾン",
    "コーポ",
    "ハイツ",
    "サンハイツ",
    "レジデンス",
    "グランドール",
    "パークサイド",
    "リバーサイド",
    "シャトー",
    "エクセル",
)

_RESIDENT_COLUMNS: Final = (
    "id, household_id, relationship, family_name, given_name, family_name_kana, given_name_kana,"
    " birth_date, sex, postal_code, prefecture, city, town, chome_banchi, building, phone,"
    " registered_date, updated_at"
)
_INSERT_RESIDENT: Final = f"INSERT INTO residents ({_RESIDENT_COLUMNS}) VALUES ({'?,' * 17}?)"
_INSERT_TAX: Final = "INSERT INTO tax VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_INSERT_NHI: Final = (
    "INSERT INTO health_insurance (insured_number, resident_id, household_id, fiscal_year,"
    " qualified_date, premium, premium_paid, claims_count, claims_amount, copay_percent)"
    " VALUES (?,?,?,?,?,?,?,?,?,?)"
)

Row = tuple[Any, ...]


@dataclass(frozen=True)
class SampleStats:
    """What ``generate`` wrote."""

    path: Path
    seed: int
    households: int
    residents: int
    tax_rows: int
    health_insurance_rows: int
    size_bytes: int

    @property
    def rows(self) -> int:
        return self.residents + self.tax_rows + self.health_insurance_rows


# --- generation -------------------------------------------------------------------------------


def _zipf_weights(count: int) -> list[float]:
    return [1.0 / (rank + 1) ** 0.8 for rank in range(count)]


_SURNAME_WEIGHTS: Final = _zipf_weights(len(SURNAMES))
_MALE_WEIGHTS: Final = _zipf_weights(len(MALE_GIVEN_NAMES))
_FEMALE_WEIGHTS: Final = _zipf_weights(len(FEMALE_GIVEN_NAMES))
_TOWN_WEIGHTS: Final = [3.0 if town.has_chome else 1.0 for town in TOWNS]


@dataclass
class _Address:
    town: Town
    chome_banchi: str
    building: str | None

    def columns(self) -> tuple[str, str, str, str, str, str | None]:
        m = self.town.municipality
        return (
            self.town.postal_code,
            m.prefecture,
            m.city,
            self.town.town,
            self.chome_banchi,
            self.building,
        )


def _address(rng: random.Random) -> _Address:
    town = rng.choices(TOWNS, _TOWN_WEIGHTS)[0]
    building = None
    if town.has_chome:
        lot = f"{rng.randint(1, 6)}丁目{rng.randint(1, 30)}番{rng.randint(1, 25)}号"
        if rng.random() < 0.4:
            room = f"{rng.randint(1, 8)}{rng.randint(1, 12):02d}"
            building = f"{rng.choice(_BUILDINGS)}{town.town} {room}号室"
    elif rng.random() < 0.5:
        lot = f"{rng.randint(1, 4999)}番地"
    else:
        lot = f"{rng.randint(1, 4999)}番地{rng.randint(1, 30)}"
    return _Address(town, lot, building)


def _given_name(rng: random.Random, sex: str) -> Name:
    if sex == "M":
        return rng.choices(MALE_GIVEN_NAMES, _MALE_WEIGHTS)[0]
    return rng.choices(FEMALE_GIVEN_NAMES, _FEMALE_WEIGHTS)[0]


def _birth_date(rng: random.Random, age: int) -> dt.date:
    return AS_OF - dt.timedelta(days=age * 365 + rng.randrange(365))


def _date_between(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange(max(1, (end - start).days)))


def _timestamp(rng: random.Random, day: dt.date) -> str:
    hour, minute, second = rng.randint(8, 17), rng.randrange(60), rng.randrange(60)
    return f"{day.isoformat()} {hour:02d}:{minute:02d}:{second:02d}"


def _phone(rng: random.Random, town: Town, landline: bool) -> str:
    if landline:
        area = town.municipality.area_code
        return f"{area}-{rng.randint(20, 99)}-{rng.randrange(10000):04d}"
    return f"0{rng.choice('789')}0-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"


def _annual_income(rng: random.Random, age: int) -> int:
    if age < 20 or rng.random() < 0.22:
        return 0
    if age >= 65:
        mean = 1_900_000
    elif age < 30:
        mean = 2_900_000
    else:
        mean = 4_100_000
    return int(rng.lognormvariate(math.log(mean), 0.45)) // 1000 * 1000


def _tax_rows(rng: random.Random, resident_id: int, age: int) -> list[Row]:
    income = _annual_income(rng, age)
    if income == 0:
        return []
    rows: list[Row] = []
    for year in TAX_YEARS:
        if age - (AS_OF.year - year) < 20:
            continue
        year_income = int(income * rng.uniform(0.93, 1.07)) // 1000 * 1000
        deductions = 430_000 + year_income * 15 // 100 + rng.choice((0, 0, 380_000, 760_000))
        taxable = max(0, year_income - deductions)
        municipal = taxable * 6 // 100 // 100 * 100
        prefectural = taxable * 4 // 100 // 100 * 100
        levy = 5000 if year_income > 450_000 else 0
        if year < AS_OF.year:
            quarters_paid = 4 if rng.random() < 0.96 else rng.randint(0, 3)
        else:  # as of October: June and August instalments are due
            quarters_paid = rng.choices((0, 1, 2), (0.05, 0.15, 0.8))[0]
        paid = [1 if q < quarters_paid else 0 for q in range(4)]
        last_paid = None
        if quarters_paid:
            due = dt.date(year, 6, 30) + dt.timedelta(days=61 * (quarters_paid - 1))
            last_paid = (due - dt.timedelta(days=rng.randrange(25))).isoformat()
        rows.append(
            (
                resident_id,
                year,
                year_income,
                deductions,
                municipal,
                prefectural,
                levy,
                *paid,
                last_paid,
            )
        )
    return rows


def _nhi_rows(
    rng: random.Random, resident_id: int, household_id: int, member: int, age: int, income: int
) -> list[Row]:
    rows: list[Row] = []
    insured_number = f"45-{household_id:07d}-{member:02d}"
    qualified = _date_between(rng, AS_OF - dt.timedelta(days=age * 365), AS_OF)
    for year in NHI_YEARS:
        if qualified.year > year:
            continue
        premium = min(1_060_000, (32_000 + income * 9 // 100) // 100 * 100)
        settled = year < AS_OF.year or rng.random() < 0.3
        paid = premium if settled else premium * rng.randint(2, 6) // 10
        claims = rng.randint(0, 4 + age // 8)
        amount = claims * rng.randint(2_000, 25_000)
        copay = 20 if age < 6 or age >= 70 else 30
        rows.append(
            (
                insured_number,
                resident_id,
                household_id,
                year,
                qualified.isoformat(),
                premium,
                paid,
                claims,
                amount,
                copay,
            )
        )
    return rows


@dataclass
class _Batch:
    residents: list[Row]
    tax: list[Row]
    nhi: list[Row]


def _household(rng: random.Random, household_id: int, next_id: int, batch: _Batch) -> int:
    """Append one household's rows to *batch*; return the next free resident id."""
    size = rng.choices((1, 2, 3, 4, 5, 6), (35, 28, 18, 12, 5, 2))[0]
    surname = rng.choices(SURNAMES, _SURNAME_WEIGHTS)[0]
    address = _address(rng)
    head_age = rng.randint(22, 92)
    head_sex = "M" if rng.random() < 0.7 else "F"
    members: list[tuple[str, int, str]] = [("世帯主", head_age, head_sex)]
    if size >= 2 and rng.random() < 0.8:
        spouse_sex = "F" if head_sex == "M" else "M"
        members.append(
            (
                "妻" if spouse_sex == "F" else "夫",
                max(20, head_age + rng.randint(-6, 4)),
                spouse_sex,
            )
        )
    while len(members) < size:
        if head_age < 60 and rng.random() < 0.9:
            age = max(0, head_age - rng.randint(22, 40))
            members.append(("子", age, rng.choice("MF")))
        else:
            parent_age = min(104, head_age + rng.randint(22, 34))
            if rng.random() < 0.7:
                members.append(("母", parent_age, "F"))
            else:
                members.append(("父", parent_age, "M"))
    nhi_household = rng.random() < (0.7 if head_age >= 60 else 0.22)
    moved_in = _date_between(rng, dt.date(1988, 4, 1), AS_OF)
    for member, (relationship, age, sex) in enumerate(members, start=1):
        resident_id = next_id
        next_id += 1
        given = _given_name(rng, sex)
        born = _birth_date(rng, age)
        registered = max(born, moved_in)
        landline = member == 1 and rng.random() < 0.5
        has_phone = landline or (age >= 15 and rng.random() < 0.6)
        phone = _phone(rng, address.town, landline) if has_phone else None
        batch.residents.append(
            (
                resident_id,
                household_id,
                relationship,
                surname.kanji,
                given.kanji,
                surname.kana,
                given.kana,
                born.isoformat(),
                sex,
                *address.columns(),
                phone,
                registered.isoformat(),
                _timestamp(rng, _date_between(rng, registered, AS_OF)),
            )
        )
        taxes = _tax_rows(rng, resident_id, age)
        batch.tax.extend(taxes)
        if nhi_household and age < 75:
            income = taxes[-1][2] if taxes else 0
            batch.nhi.extend(_nhi_rows(rng, resident_id, household_id, member, age, income))
    return next_id


def generate(path: Path, size_mb: float = 50, seed: int = 2011) -> SampleStats:
    """Write a new sample database of about *size_mb* MiB at *path*, the same bytes for a seed.

    An existing file at *path* is replaced.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    target = int(size_mb * _MIB)
    rng = random.Random(seed)
    households = 0
    next_id = 1
    counts = [0, 0, 0]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        _create_schema(db)
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        per_household = 1500.0  # bytes, refined after every batch
        while True:
            size = page_size * int(db.execute("PRAGMA page_count").fetchone()[0])
            if size >= target:
                break
            if households:
                per_household = size / households
            want = int((target - size) / per_household / 2)
            batch = _Batch([], [], [])
            for _ in range(min(2000, max(10, want))):
                households += 1
                next_id = _household(rng, households, next_id, batch)
            db.executemany(_INSERT_RESIDENT, batch.residents)
            db.executemany(_INSERT_TAX, batch.tax)
            db.executemany(_INSERT_NHI, batch.nhi)
            counts[0] += len(batch.residents)
            counts[1] += len(batch.tax)
            counts[2] += len(batch.nhi)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=DELETE")
    residents, tax_rows, nhi_rows = counts
    return SampleStats(path, seed, households, residents, tax_rows, nhi_rows, path.stat().st_size)


def _create_schema(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction; run the statements one by one.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


# --- one day's changes ------------------------------------------------------------------------


