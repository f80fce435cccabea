"""A realistic pg_dump-style SQL text dump for the backup benchmark, and its day-2 successor.

``generate`` writes a plain-format dump (``COPY public.x (...) FROM stdin;`` blocks of
tab-separated rows) of a municipal database: residents, tax assessments, health
insurance, service requests with Japanese free text, and an ASCII access log. Rows are
drawn from precomputed pools so that 1 GiB takes seconds, and the pools are large
enough that zstd -3 finds a realistic ratio (about 3-6x), not padding.

``day2`` derives the next day's dump from a first one the way a real database changes:
about 1% of rows rewritten inside a few hot regions of the mutable tables, some rows
appended at the end of every table, sequences advanced, every other byte identical and
in the same order.

Run ``python bench/datagen.py generate OUT --size 1G`` and
``python bench/datagen.py day2 SRC DST``.
"""

from __future__ import annotations

import argparse
import mmap
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from drsync.sample.vocab import FEMALE_GIVEN_NAMES, MALE_GIVEN_NAMES, SURNAMES, TOWNS

__all__ = ["TABLES", "Day2Stats", "DumpStats", "day2", "generate", "parse_size", "table_rows"]

GIB = 1 << 30
_COPY_BLOCK = 64 << 20  # bytes copied at once by day2
_MAX_BLOCK_ROWS = 20_000

RowMaker = Callable[[random.Random, int, int], str]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    share: float  # of the dump's data bytes
    mutable: tuple[int, ...]  # column indexes day 2 may rewrite; empty for append-only tables
    append_weight: float  # relative number of rows appended on day 2


@dataclass
class DumpStats:
    path: Path
    size_bytes: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Day2Stats:
    path: Path
    size_bytes: int
    changed_rows: int = 0
    appended_rows: int = 0
    hot_regions: list[tuple[int, int]] = field(default_factory=list)  # byte ranges in src
    seconds: float = 0.0


TABLES: tuple[Table, ...] = (
    Table(
        "access_log",
        (
            "id",
            "logged_at",
            "client_ip",
            "method",
            "path",
            "status",
            "bytes",
            "duration_ms",
            "user_agent",
        ),
        0.20,
        (),
        8.0,
    ),
    Table(
        "health_insurance",
        (
            "id",
            "insured_number",
            "resident_id",
            "household_id",
            "fiscal_year",
            "qualified_on",
            "premium",
            "premium_paid",
            "claims_count",
            "claims_amount",
            "copay_percent",
            "updated_at",
        ),
        0.12,
        (7, 8, 9, 11),
        1.0,
    ),
    Table(
        "residents",
        (
            "id",
            "household_id",
            "family_name",
            "given_name",
            "family_name_kana",
            "given_name_kana",
            "sex",
            "birth_date",
            "postal_code",
            "prefecture",
            "city",
            "town",
            "address_line",
            "building",
            "phone",
            "registered_on",
            "updated_at",
        ),
        0.30,
        (8, 9, 10, 11, 12, 13, 14, 16),
        0.5,
    ),
    Table(
        "service_requests",
        (
            "id",
            "resident_id",
            "received_at",
            "channel",
            "category",
            "summary",
            "staff_id",
            "status",
            "updated_at",
        ),
        0.13,
        (7, 8),
        3.0,
    ),
    Table(
        "tax_assessments",
        (
            "id",
            "resident_id",
            "fiscal_year",
            "income",
            "deductions",
            "taxable_income",
            "municipal_tax",
            "prefectural_tax",
            "per_capita_levy",
            "paid_q1",
            "paid_q2",
            "paid_q3",
            "paid_q4",
            "status",
            "assessed_on",
            "updated_at",
        ),
        0.25,
        (9, 10, 11, 12, 13, 15),
        0.5,
    ),
)

_CHANNELS = ("窓口", "電話", "郵送", "オンライン", "窓口", "窓口")
_CATEGORIES = (
    "住民票の写し交付",
    "転入届",
    "転出届",
    "転居届",
    "印鑑登録",
    "税証明書交付",
    "市県民税の申告",
    "国保加入",
    "国保脱退",
    "高額療養費",
    "児童手当",
    "介護保険",
    "ごみ収集",
    "道路補修",
    "防犯灯",
    "子育て支援",
    "マイナンバーカード",
    "口座振替依頼",
    "納付相談",
    "固定資産税",
)
_PHRASES_A = (
    "本人より申出あり。",
    "代理人(配偶者)が来庁。",
    "電話にて問い合わせ。",
    "郵送にて申請書を受理。",
    "オンライン申請を受付。",
    "前回の相談の続き。",
    "窓口にて本人確認書類を確認。",
    "委任状の提出あり。",
    "世帯主より連絡。",
    "担当課からの引継ぎ。",
)
_PHRASES_B = (
    "必要書類を案内した。",
    "納付書を再発行した。",
    "分割納付について相談を受けた。",
    "転入手続きに伴い国保加入の案内をした。",
    "口座振替の手続きを完了した。",
    "証明書を交付した。",
    "不足書類があるため後日再来庁予定。",
    "担当課へ回付した。",
    "現地確認を行う予定。",
    "申告内容に誤りがあり修正を依頼した。",
    "手数料300円を収納した。",
    "児童手当の現況届を受理した。",
    "マイナンバーカードの暗証番号を再設定した。",
    "高額療養費の支給申請書を送付した。",
    "督促状の内容について説明した。",
)
_PHRASES_C = (
    "",
    "",
    "",
    "折り返し連絡を希望。",
    "次回は来月上旬に来庁予定。",
    "至急対応が必要。",
    "本人は高齢のため家族が同行。",
    "英語での案内を希望。",
    "平日夜間の連絡を希望。",
)
_STATUSES_SR = ("受付", "対応中", "完了", "完了", "完了", "保留")
_METHODS = ("GET", "GET", "GET", "GET", "POST", "GET", "PUT", "GET")
_PATHS = (
    "/api/v1/residents/{}",
    "/api/v1/residents/{}/household",
    "/api/v1/tax/{}/assessments",
    "/api/v1/tax/{}/payments",
    "/api/v1/nhi/{}/claims",
    "/api/v1/requests/{}",
    "/static/js/app.{:x}.js",
    "/static/css/main.{:x}.css",
    "/login",
    "/logout",
    "/search?q={}",
    "/reports/daily?date=2024-10-{:02d}",
    "/api/v1/certificates/{}/pdf",
    "/health",
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Zabbix 6.4",
)


def _date(rng: random.Random, first_year: int, last_year: int) -> str:
    return f"{rng.randint(first_year, last_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _clock(rng: random.Random) -> str:
    return f"{rng.randint(8, 19):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


class _Pools:
    """Fragments of rows, precomputed so that a row is one f-string of random picks.

    The pools are large (tens of thousands of entries, megabytes in all) so that
    zstd's window rarely sees the same whole fragment twice, as in a real dump.
    """

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.names = [self._name(rng) for _ in range(30_000)]
        self.births = [_date(rng, 1925, 2024) for _ in range(36_000)]
        self.days = [_date(rng, 1990, 2024) for _ in range(12_000)]
        self.stamps = [f"{_date(rng, 2019, 2024)} {_clock(rng)}+09" for _ in range(60_000)]
        self.addresses = [self._address(rng) for _ in range(60_000)]
        self.phones = [self._phone(rng) for _ in range(60_000)]
        self.incomes = [self._income(rng) for _ in range(40_000)]
        self.payments = [self._payment(rng) for _ in range(64)]
        self.premiums = [self._premium(rng) for _ in range(30_000)]
        self.summaries = [
            rng.choice(_PHRASES_A) + rng.choice(_PHRASES_B) + rng.choice(_PHRASES_C)
            for _ in range(5_000)
        ]
        self.ips = [
            f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(3_000)
        ] + [f"{rng.randint(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
             for _ in range(3_000)]  # fmt: skip
        self.requests = [self._request(rng) for _ in range(50_000)]

    @staticmethod
    def _name(rng: random.Random) -> str:
        surname = rng.choice(SURNAMES[: rng.choice((40, 120, len(SURNAMES)))])
        sex = rng.choice("MF")
        given = rng.choice(MALE_GIVEN_NAMES if sex == "M" else FEMALE_GIVEN_NAMES)
        return f"{surname.kanji}\t{given.kanji}\t{surname.kana}\t{given.kana}\t{sex}"

    @staticmethod
    def _address(rng: random.Random) -> str:
        town = rng.choice(TOWNS)
        m = town.municipality
        building = "\\N"
        if town.has_chome:
            line = f"{rng.randint(1, 6)}丁目{rng.randint(1, 30)}番{rng.randint(1, 25)}号"
            if rng.random() < 0.4:
                building = f"コーポ{town.town} {rng.randint(1, 8)}{rng.randint(1, 12):02d}号室"
        else:
            line = f"{rng.randint(1, 4999)}番地"
        return f"{town.postal_code}\t{m.prefecture}\t{m.city}\t{town.town}\t{line}\t{building}"

    @staticmethod
    def _phone(rng: random.Random) -> str:
        if rng.random() < 0.25:
            return "\\N"
        if rng.random() < 0.4:
            return f"0985-{rng.randint(20, 99)}-{rng.randrange(10000):04d}"
        return f"0{rng.choice('789')}0-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"

    @staticmethod
    def _income(rng: random.Random) -> str:
        income = int(rng.lognormvariate(15.0, 0.6)) // 1000 * 1000
        deductions = 430_000 + income * 15 // 100 + rng.choice((0, 0, 380_000, 760_000))
        taxable = max(0, income - deductions) // 1000 * 1000
        levy = 5000 if income > 450_000 else 0
        return (
            f"{income}\t{deductions}\t{taxable}\t{taxable * 6 // 100 // 100 * 100}\t"
            f"{taxable * 4 // 100 // 100 * 100}\t{levy}"
        )

    @staticmethod
    def _payment(rng: random.Random) -> str:
        paid = rng.choices((4, 3, 2, 1, 0), (80, 6, 6, 4, 4))[0]
        flags = "\t".join("t" if q < paid else "f" for q in range(4))
        status = "paid" if paid == 4 else rng.choice(("assessed", "arrears", "instalment"))
        return f"{flags}\t{status}"

    @staticmethod
    def _premium(rng: random.Random) -> str:
        premium = rng.randint(320, 10_600) * 100
        paid = premium if rng.random() < 0.85 else premium * rng.randint(0, 9) // 10
        claims = rng.randint(0, 14)
        return f"{premium}\t{paid}\t{claims}\t{claims * rng.randint(1_500, 30_000)}"

    @staticmethod
    def _request(rng: random.Random) -> str:
        path = rng.choice(_PATHS)
        target = path.format(rng.randrange(1, 400_000)) if "{" in path else path
        status = rng.choices((200, 304, 404, 302, 500), (85, 6, 4, 4, 1))[0]
        return (
            f"{rng.choice(_METHODS)}\t{target}\t{status}\t{rng.randint(120, 250_000)}\t"
            f"{rng.randint(1, 900)}\t{rng.choice(_AGENTS)}"
        )

    # One method per table: rows first..first+count-1, newline-terminated.

    def access_log(self, rng: random.Random, first: int, count: int) -> str:
        ids = range(first, first + count)
        ips = rng.choices(self.ips, k=count)
        reqs = rng.choices(self.requests, k=count)
        # logged_at increases with id: ~12 requests a minute over the dump's history
        return "".join(
            f"{i}\t2024-{i // 518_400 % 12 + 1:02d}-{i // 17_280 % 28 + 1:02d} "
            f"{i // 720 % 24:02d}:{i // 12 % 60:02d}:{i * 7 % 60:02d}.{i * 7919 % 1_000_000:06d}+09"
            f"\t{ip}\t{req}\n"
            for i, ip, req in zip(ids, ips, reqs, strict=True)
        )

    def health_insurance(self, rng: random.Random, first: int, count: int) -> str:
        ids = range(first, first + count)
        days = rng.choices(self.days, k=count)
        premiums = rng.choices(self.premiums, k=count)
        stamps = rng.choices(self.stamps, k=count)
        return "".join(
            f"{i}\t45-{i // 3 * 7 // 5:07d}-{i % 3 + 1:02d}\t{i // 3 * 12 // 5 + 1}\t"
            f"{i // 3 * 7 // 5 + 1}\t{2022 + i % 3}\t{d}\t{p}\t{30 if i % 7 else 20}\t{s}\n"
            for i, d, p, s in zip(ids, days, premiums, stamps, strict=True)
        )

    def residents(self, rng: random.Random, first: int, count: int) -> str:
        ids = range(first, first + count)
        names = rng.choices(self.names, k=count)
        births = rng.choices(self.births, k=count)
        addresses = rng.choices(self.addresses, k=count)
        phones = rng.choices(self.phones, k=count)
        days = rng.choices(self.days, k=count)
        stamps = rng.choices(self.stamps, k=count)
        return "".join(
            f"{i}\t{i * 5 // 12 + 1}\t{n}\t{b}\t{a}\t{p}\t{d}\t{s}\n"
            for i, n, b, a, p, d, s in zip(
                ids, names, births, addresses, phones, days, stamps, strict=True
            )
        )

    def service_requests(self, rng: random.Random, first: int, count: int) -> str:
        ids = range(first, first + count)
        residents = rng.choices(range(1, 400_000), k=count)
        stamps = rng.choices(self.stamps, k=count)
        channels = rng.choices(_CHANNELS, k=count)
        categories = rng.choices(_CATEGORIES, k=count)
        summaries = rng.choices(self.summaries, k=count)
        staff = rng.choices(range(1001, 1180), k=count)
        statuses = rng.choices(_STATUSES_SR, k=count)
        updated = rng.choices(self.stamps, k=count)
        return "".join(
            f"{i}\t{r}\t{s}\t{c}\t{g}\t{m}\t{f}\t{t}\t{u}\n"
            for i, r, s, c, g, m, f, t, u in zip(
                ids, residents, stamps, channels, categories, summaries, staff, statuses,
                updated, strict=True,
            )
        )  # fmt: skip

    def tax_assessments(self, rng: random.Random, first: int, count: int) -> str:
        ids = range(first, first + count)
        incomes = rng.choices(self.incomes, k=count)
        payments = rng.choices(self.payments, k=count)
        stamps = rng.choices(self.stamps, k=count)
        return "".join(
            f"{i}\t{i // 5 + 1}\t{2020 + i % 5}\t{inc}\t{pay}\t{2020 + i % 5}-06-01\t{s}\n"
            for i, inc, pay, s in zip(ids, incomes, payments, stamps, strict=True)
        )

    def maker(self, table: str) -> RowMaker:
        method: RowMaker = getattr(self, table)
        return method


def parse_size(text: str) -> int:
    """'1G', '256MiB', '50M', '4096' -> bytes (binary multiples)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * (1 << (10 * power)))


def _header() -> str:
    return (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "-- Dumped from database version 16.4 (Debian 16.4-1.pgdg120+2)\n"
        "-- Dumped by pg_dump version 16.4 (Debian 16.4-1.pgdg120+2)\n\n"
        "SET statement_timeout = 0;\nSET lock_timeout = 0;\n"
        "SET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\n"
        "SET standard_conforming_strings = on;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "SET check_function_bodies = false;\nSET xmloption = content;\n"
        "SET client_min_messages = warning;\nSET row_security = off;\n\n"
        "SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n"
    )


def _create_table(table: Table) -> str:
    columns = ",\n".join(
        f"    {name} {'bigint NOT NULL' if name == 'id' else 'text'}" for name in table.columns
    )
    return (
        f"--\n-- Name: {table.name}; Type: TABLE; Schema: public; Owner: town\n--\n\n"
        f"CREATE TABLE public.{table.name} (\n{columns}\n);\n\n\n"
        f"ALTER TABLE public.{table.name} OWNER TO town;\n\n"
    )


def _copy_header(table: Table) -> str:
    return (
        f"--\n-- Data for Name: {table.name}; Type: TABLE DATA; Schema: public; Owner: town\n"
        f"--\n\nCOPY public.{table.name} ({', '.join(table.columns)}) FROM stdin;\n"
    )


def _trailer(last_ids: dict[str, int]) -> str:
    parts = []
    for table in TABLES:
        parts.append(
            f"--\n-- Name: {table.name}_id_seq; Type: SEQUENCE SET; Schema: public; Owner: town\n"
            f"--\n\nSELECT pg_catalog.setval('public.{table.name}_id_seq', "
            f"{last_ids.get(table.name, 1)}, true);\n\n\n"
        )
    for table in TABLES:
        parts.append(
            f"--\n-- Name: {table.name} {table.name}_pkey; Type: CONSTRAINT; Schema: public\n"
            f"--\n\nALTER TABLE ONLY public.{table.name}\n"
            f"    ADD CONSTRAINT {table.name}_pkey PRIMARY KEY (id);\n\n\n"
        )
    parts.append("--\n-- PostgreSQL database dump complete\n--\n\n")
    return "".join(parts)


def _write_rows(
    out: BinaryIO, maker: RowMaker, rng: random.Random, first: int, budget: int
) -> tuple[int, int]:
    """Write rows from id *first* until *budget* bytes are written; return (rows, bytes)."""
    written = rows = 0
    row_bytes = 200.0
    while written < budget:
        count = int(min(_MAX_BLOCK_ROWS, max(1, (budget - written) / row_bytes + 1)))
        block = maker(rng, first + rows, count).encode()
        out.write(block)
        written += len(block)
        rows += count
        row_bytes = len(block) / count
    return rows, written


def generate(path: Path, size_bytes: int = GIB, seed: int = 2011) -> DumpStats:
    """Write a dump of about *size_bytes* at *path*; the same bytes for the same arguments."""
    started = time.perf_counter()
    path = Path(path)
    rng = random.Random(seed)
    pools = _Pools(seed)
    stats = DumpStats(path, 0)
    with path.open("wb", buffering=8 << 20) as out:
        out.write(_header().encode())
        for table in TABLES:
            out.write(_create_table(table).encode())
        for table in TABLES:
            out.write(_copy_header(table).encode())
            rows, _ = _write_rows(
                out, pools.maker(table.name), rng, 1, int(size_bytes * table.share)
            )
            stats.rows[table.name] = rows
            out.write(b"\\.\n\n\n")
        out.write(_trailer(stats.rows).encode())
    stats.size_bytes = path.stat().st_size
    stats.seconds = time.perf_counter() - started
    return stats


def table_rows(table: str, count: int, seed: int = 2011) -> Iterator[str]:
    """``count`` rows of ``table`` (ids from 1) in COPY's text format, in blocks of lines."""
    rng = random.Random(seed)
    maker = _Pools(seed).maker(table)
    for first in range(1, count + 1, _MAX_BLOCK_ROWS):
        yield maker(rng, first, min(_MAX_BLOCK_ROWS, count + 1 - first))


# --- day 2 ------------------------------------------------------------------------------------


@dataclass
class _Section:
    table: Table | None
    start: int  # first byte of the first row
    end: int  # first byte of the "\." line


def _sections(data: mmap.mmap) -> list[_Section]:
    by_name = {table.name: table for table in TABLES}
    found = []
    position = 0
    while (position := data.find(b"\nCOPY public.", position)) >= 0:
        line_end = data.find(b"\n", position + 1)
        name = data[position + 13 : line_end].split(b" ", 1)[0].decode()
        end = data.find(b"\n\\.\n", line_end)
        if end < 0:
            raise ValueError(f"COPY block of {name} has no end marker")
        found.append(_Section(by_name.get(name), line_end + 1, end + 1))
        position = end
    return found


def _last_id(data: mmap.mmap, section: _Section) -> int:
    if section.end <= section.start:
        return 0
    line_start = data.rfind(b"\n", section.start, section.end - 1) + 1
    return int(data[max(line_start, section.start) : section.end].split(b"\t", 1)[0])


def _line_start(data: mmap.mmap, offset: int, section: _Section) -> int:
    """The first line start at or after *offset* inside *section*."""
    if offset <= section.start:
        return section.start
    found = data.find(b"\n", offset - 1, section.end)
    return section.end if found < 0 else found + 1


def _pick_regions(
    rng: random.Random, data: mmap.mmap, sections: Sequence[_Section], count: int, length: int
) -> list[tuple[_Section, int, int]]:
    """*count* hot byte ranges of *length*, placed uniformly over the mutable sections."""
    mutable = [s for s in sections if s.table and s.table.mutable and s.end > s.start]
    space = sum(s.end - s.start for s in mutable)
    if not space:
        return []
    picked: list[tuple[_Section, int, int]] = []
    for _ in range(count):
        offset = rng.randrange(space)
        for section in mutable:
            size = section.end - section.start
            if offset < size:
                start = _line_start(data, section.start + offset, section)
                end = _line_start(data, min(section.end, start + length), section)
                picked.append((section, start, end))
                break
            offset -= size
    picked.sort(key=lambda r: r[1])
    merged: list[tuple[_Section, int, int]] = []
    for section, start, end in picked:
        if merged and merged[-1][0] is section and start <= merged[-1][2]:
            merged[-1] = (section, merged[-1][1], max(end, merged[-1][2]))
        elif end > start:
            merged.append((section, start, end))
    return merged


def _rewrite(
    lines: list[bytes], table: Table, maker: RowMaker, rng: random.Random, density: float
) -> int:
    changed = 0
    for index, line in enumerate(lines):
        if not line or rng.random() >= density:
            continue
        fields = line.split(b"\t")
        fresh = maker(rng, int(fields[0]), 1).encode().rstrip(b"\n").split(b"\t")
        for column in table.mutable:
            fields[column] = fresh[column]
        new = b"\t".join(fields)
        if new != line:
            lines[index] = new
            changed += 1
    return changed


def _copy(out: BinaryIO, data: mmap.mmap, start: int, end: int) -> None:
    for offset in range(start, end, _COPY_BLOCK):
        out.write(data[offset : min(end, offset + _COPY_BLOCK)])


def day2(
    src: Path,
    dst: Path,
    fraction: float = 0.01,
    seed: int = 2,
    hot_regions: int = 4,
    density: float = 0.25,
    append_fraction: float = 0.003,
) -> Day2Stats:
    """Write at *dst* the next day's dump of *src*.

    About *fraction* of all rows change, all of them inside *hot_regions* byte ranges of
    the mutable tables, where each row changes with probability *density*; about
    *append_fraction* of rows are appended (weighted per table: logs grow fastest).
    """
    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    rng = random.Random(seed)
    pools = _Pools(seed)
    stats = Day2Stats(dst, 0)
    with src.open("rb") as source, mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as data:
        sections = _sections(data)
        if not sections:
            raise ValueError(f"{src}: no COPY blocks")
        rows = {id(s): (s.end - s.start) / _row_bytes(data, s) for s in sections}
        rows_total = sum(rows.values())
        mutable = [s for s in sections if s.table and s.table.mutable]
        mutable_bytes = sum(s.end - s.start for s in mutable)
        mutable_rows = sum(rows[id(s)] for s in mutable) or 1.0
        region_rows = fraction * rows_total / density / max(1, hot_regions)
        region_length = int(region_rows * mutable_bytes / mutable_rows)
        regions = _pick_regions(rng, data, sections, hot_regions, region_length)
        stats.hot_regions = [(start, end) for _, start, end in regions]
        weights = {id(s): rows[id(s)] * s.table.append_weight for s in sections if s.table}
        weight_total = sum(weights.values()) or 1.0
        with dst.open("wb", buffering=8 << 20) as out:
            position = 0
            last_ids: dict[str, int] = {}
            for section in sections:
                table = section.table
                for owner, start, end in regions:
                    if owner is section and table is not None:
                        _copy(out, data, position, start)
                        lines = data[start:end].split(b"\n")
                        maker = pools.maker(table.name)
                        stats.changed_rows += _rewrite(lines, table, maker, rng, density)
                        out.write(b"\n".join(lines))
                        position = end
                _copy(out, data, position, section.end)
                position = section.end
                if table is None:
                    continue
                last = _last_id(data, section)
                share = weights[id(section)] / weight_total
                appended = max(1, round(append_fraction * rows_total * share))
                out.write(pools.maker(table.name)(rng, last + 1, appended).encode())
                stats.appended_rows += appended
                last_ids[table.name] = last + appended
            out.write(_advance_sequences(data[position:].decode(), last_ids).encode())
    stats.size_bytes = dst.stat().st_size
    stats.seconds = time.perf_counter() - started
    return stats


def _row_bytes(data: mmap.mmap, section: _Section) -> float:
    sample = data[section.start : min(section.end, section.start + (256 << 10))]
    return max(1.0, len(sample) / max(1, sample.count(b"\n")))


def _advance_sequences(tail: str, last_ids: dict[str, int]) -> str:
    for name, last_id in last_ids.items():
        tail = re.sub(rf"(setval\('public\.{name}_id_seq', )\d+", rf"\g<1>{last_id}", tail)
    return tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("generate", help="write a day-1 dump")
    first.add_argument("out", type=Path)
    first.add_argument("--size", type=parse_size, default=GIB, help="e.g. 1G, 256M (default 1G)")
    first.add_argument("--seed", type=int, default=2011)
    second = commands.add_parser("day2", help="derive the next day's dump")
    second.add_argument("src", type=Path)
    second.add_argument("dst", type=Path)
    second.add_argument("--fraction", type=float, default=0.01)
    second.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "generate":
        stats = generate(args.out, args.size, args.seed)
        print(f"{stats.path}: {stats.size_bytes / 2**20:.1f} MiB in {stats.seconds:.1f} s; "
              f"rows {stats.rows}")  # fmt: skip
    else:
        result = day2(args.src, args.dst, args.fraction, args.seed)
        print(f"{result.path}: {result.size_bytes / 2**20:.1f} MiB in {result.seconds:.1f} s; "
              f"{result.changed_rows} rows changed in {len(result.hot_regions)} hot regions, "
              f"{result.appended_rows} appended")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
