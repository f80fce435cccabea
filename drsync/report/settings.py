"""The report's settings in the fleet file: ``[report]``, ``[costs]`` and each tenant's
``code``, ``datasets`` and ``[tenant.report]``.

::

    [report]
    primary_zone = "miyazaki-coast"   # hazard zone of the tenants' own (primary) sites
    secondary_site = "Saga DC"        # where each tenant's `repo` is (its off-site copy)
    secondary_zone = "saga-inland"
    retention_days = 35               # the oldest point must be at least this old
    drill_max_age_days = 365          # a successful drill at most this old ...
    drill_max_age_days_tier1 = 90     # ... or this, for a tenant with a tier-1 dataset
    min_offsite_copies = 1
    require_immutable = true          # one off-site copy must be under Object Lock
    job_success_min = 0.95            # below: COVERAGE warns
    attestations = "attestations.jsonl"
    signing_key = "report-signing.key"
    timezone = "Asia/Tokyo"           # whose days --period names (default UTC)

    [costs]
    yearly_yen = 12000000
    split = {equal = 0.4, population = 0.6}   # also stored_bytes, sent_bytes

    [[tenant]]
    name = "Nobeoka"
    code = "452033"                   # 団体コード
    # each dataset: its 非常時優先業務, tier (1 most critical), the source its backups name
    datasets = [{name = "住民記録", business = "住民基本台帳事務", tier = 1, source = "juki.db"}]
    [tenant.report]                   # any [report] threshold, for this tenant
    retention_days = 90
    copies = [{name = "tokyo", repo = "s3://dr-tokyo/nobeoka", key_file = "keys/n.key",
               site = "Tokyo DC", zone = "kanto", media = "object storage"}]
    exempt = [{control = "DRILL", approver = "総務課長 山田", expires = 2026-12-31,
               reason = "new system, first drill in January"}]

Thresholds are settings; nothing here is evidence. Every problem is one
ConfigError naming the file and the key.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from drsync.errors import ConfigError
from drsync.plan.fleet import Fleet
from drsync.plan.fleetfile import read_toml

__all__ = ["CONTROLS", "COST_BASES", "Copy", "CostSettings", "Dataset", "Exemption",
           "ReportSettings", "TenantSettings", "Thresholds", "load_report_settings",
           "report_settings_from_dict"]

CONTROLS = ("COVERAGE", "RPO", "RETENTION", "OFFSITE", "ENCRYPTION", "DRILL", "ZERO-ERRORS")
COST_BASES = ("equal", "population", "stored_bytes", "sent_bytes")
THRESHOLD_KEYS = {"primary_zone", "secondary_site", "secondary_zone", "retention_days",
                  "drill_max_age_days", "drill_max_age_days_tier1", "min_offsite_copies",
                  "require_immutable", "job_success_min"}
REPORT_KEYS = THRESHOLD_KEYS | {"attestations", "signing_key", "timezone"}
TENANT_REPORT_KEYS = THRESHOLD_KEYS | {"copies", "exempt"}
COPY_KEYS = {"name", "repo", "key_file", "site", "zone", "media"}
DATASET_KEYS = {"name", "business", "tier", "source"}
EXEMPT_KEYS = {"control", "approver", "expires", "reason"}
COSTS_KEYS = {"yearly_yen", "split"}


@dataclass(frozen=True)
class Thresholds:
    """What a tenant is held to; ``rpo_hours`` and ``rto_hours`` are the fleet file's."""

    rpo_hours: float = 24.0
    rto_hours: float = 24.0
    primary_zone: str | None = None
    secondary_site: str | None = None
    secondary_zone: str | None = None
    retention_days: float = 35.0  # AWS Backup Audit Manager's default
    drill_max_age_days: float = 365.0
    drill_max_age_days_tier1: float = 90.0
    min_offsite_copies: int = 1
    require_immutable: bool = True
    job_success_min: float = 0.95


@dataclass(frozen=True)
class Dataset:
    name: str
    business: str  # 非常時優先業務
    tier: int
    source: str | None = None  # found in the run's source ("sqlite:/srv/juki.db"): its backups


@dataclass(frozen=True)
class Copy:
    """A copy of a tenant's data: where it is (declared) and how to open it."""

    name: str
    repo: str | None
    key_file: str | None
    site: str | None
    zone: str | None
    media: str | None


@dataclass(frozen=True)
class Exemption:
    control: str
    approver: str
    expires: dt.date
    reason: str


@dataclass(frozen=True)
class TenantSettings:
    name: str
    code: str | None
    population: int
    datasets: tuple[Dataset, ...]
    thresholds: Thresholds
    copies: tuple[Copy, ...]
    exemptions: tuple[Exemption, ...]

    @property
    def tier(self) -> int | None:
        """The tenant's most critical tier (1 is the most critical); None: no dataset."""
        return min((d.tier for d in self.datasets), default=None)

    @property
    def drill_max_age_days(self) -> float:
        th = self.thresholds
        return th.drill_max_age_days_tier1 if self.tier == 1 else th.drill_max_age_days


@dataclass(frozen=True)
class CostSettings:
    yearly_yen: int
    split: tuple[tuple[str, float], ...]  # (basis, weight), weights summing to 1


@dataclass(frozen=True)
class ReportSettings:
    source: str
    tenants: tuple[TenantSettings, ...]
    costs: CostSettings | None
    attestations: str | None
    signing_key: str | None
    timezone: str = "UTC"  # whose days --period names


def load_report_settings(fleet: Fleet) -> ReportSettings:
    """The report settings of the fleet file ``fleet`` was read from."""
    raw = read_toml(Path(fleet.source), "fleet file")
    return report_settings_from_dict(raw, fleet)


def report_settings_from_dict(raw: Mapping[str, Any], fleet: Fleet) -> ReportSettings:
    v = _Check(fleet.source)
    report = v.table(raw.get("report"), "report")
    v.known(report, REPORT_KEYS, "report.")
    base = _thresholds(v, report, Thresholds(), "report.")
    tenants_raw = {str(t.get("name")): t for t in raw.get("tenant") or []
                   if isinstance(t, dict)}
    tenants = []
    for tenant in fleet.tenants:
        item = tenants_raw.get(tenant.name, {})
        tenants.append(_tenant(v, tenant.name, item, replace(
            base, rpo_hours=tenant.rpo_hours, rto_hours=tenant.rto_hours),
            tenant.population, tenant.repo, tenant.key_file))
    return ReportSettings(
        fleet.source, tuple(tenants), _costs(v, raw.get("costs")),
        v.path(report["attestations"], "report.attestations") if "attestations" in report
        else None,
        v.path(report["signing_key"], "report.signing_key") if "signing_key" in report
        else None,
        _timezone(v, report.get("timezone", "UTC")))


def _timezone(v: _Check, value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = v.text(value, "report.timezone")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        v.fail("report.timezone", f"unknown time zone {name!r} (e.g. \"Asia/Tokyo\", \"UTC\")")
    return name


def _thresholds(v: _Check, table: Mapping[str, Any], base: Thresholds,
                prefix: str) -> Thresholds:
    changes: dict[str, Any] = {}
    for key in ("primary_zone", "secondary_site", "secondary_zone"):
        if key in table:
            changes[key] = v.text(table[key], prefix + key)
    for key in ("retention_days", "drill_max_age_days", "drill_max_age_days_tier1"):
        if key in table:
            changes[key] = v.number(table[key], prefix + key)
    out = replace(base, **changes)
    if "min_offsite_copies" in table:
        out = replace(out, min_offsite_copies=int(v.number(
            table["min_offsite_copies"], prefix + "min_offsite_copies", integer=True)))
    if "require_immutable" in table:
        value = table["require_immutable"]
        if not isinstance(value, bool):
            v.fail(prefix + "require_immutable", f"must be true or false, got {value!r}")
        out = replace(out, require_immutable=value)
    if "job_success_min" in table:
        rate = v.number(table["job_success_min"], prefix + "job_success_min", zero_ok=True)
        if rate > 1:
            v.fail(prefix + "job_success_min", f"must be a fraction 0..1, got {rate:g}")
        out = replace(out, job_success_min=rate)
    return out


def _tenant(v: _Check, name: str, item: Mapping[str, Any], base: Thresholds,
            population: int, repo: str | None, key_file: str | None) -> TenantSettings:
    where = f"tenant.{name}."
    code = v.text(item["code"], where + "code") if "code" in item else None
    datasets = []
    for i, ds in enumerate(v.array(item.get("datasets"), where + "datasets")):
        at = f"{where}datasets[{i}]"
        ds = v.table(ds, at)
        v.known(ds, DATASET_KEYS, at + ".")
        if "name" not in ds:
            v.fail(at + ".name", "is required")
        tier = int(v.number(ds.get("tier", 2), at + ".tier", integer=True))
        datasets.append(Dataset(v.text(ds["name"], at + ".name"),
                                v.text(ds.get("business", ""), at + ".business", empty=True),
                                tier,
                                v.text(ds["source"], at + ".source") if "source" in ds
                                else None))
    table = v.table(item.get("report"), where + "report")
    v.known(table, TENANT_REPORT_KEYS, where + "report.")
    thresholds = _thresholds(v, table, base, where + "report.")
    copies = [Copy("repo", repo, key_file, thresholds.secondary_site,
                   thresholds.secondary_zone, None)]
    for i, cp in enumerate(v.array(table.get("copies"), where + "report.copies")):
        at = f"{where}report.copies[{i}]"
        cp = v.table(cp, at)
        v.known(cp, COPY_KEYS, at + ".")
        if "name" not in cp:
            v.fail(at + ".name", "is required")
        copy_name = v.text(cp["name"], at + ".name")
        if any(c.name == copy_name for c in copies):
            v.fail(at + ".name", f"copy {copy_name!r} is defined twice")
        copies.append(Copy(
            copy_name,
            v.path(cp["repo"], at + ".repo", url=True) if "repo" in cp else None,
            v.path(cp["key_file"], at + ".key_file") if "key_file" in cp else key_file,
            *(v.text(cp[k], f"{at}.{k}") if k in cp else None
              for k in ("site", "zone", "media"))))
    exemptions = []
    for i, ex in enumerate(v.array(table.get("exempt"), where + "report.exempt")):
        at = f"{where}report.exempt[{i}]"
        ex = v.table(ex, at)
        v.known(ex, EXEMPT_KEYS, at + ".")
        control = v.text(ex.get("control"), at + ".control")
        if control not in CONTROLS:
            v.fail(at + ".control", f"unknown control {control!r} (known: "
                   f"{', '.join(CONTROLS)})")
        # An exemption nobody approved, or one without an end, is not an exemption.
        approver = v.text(ex.get("approver"), at + ".approver")
        expires = ex.get("expires")
        if isinstance(expires, dt.datetime) or not isinstance(expires, dt.date):
            v.fail(at + ".expires", f"must be a date (expires = 2026-12-31), got {expires!r}")
        exemptions.append(Exemption(control, approver, expires,
                                    v.text(ex.get("reason", ""), at + ".reason", empty=True)))
    return TenantSettings(name, code, population, tuple(datasets), thresholds, tuple(copies),
                          tuple(exemptions))


def _costs(v: _Check, value: Any) -> CostSettings | None:
    if value is None:
        return None
    table = v.table(value, "costs")
    v.known(table, COSTS_KEYS, "costs.")
    if "yearly_yen" not in table:
        v.fail("costs.yearly_yen", "is required (the secondary site's yearly cost in yen)")
    yen = int(v.number(table["yearly_yen"], "costs.yearly_yen", integer=True, zero_ok=True))
    split = v.table(table.get("split", {"equal": 1.0}), "costs.split")
    v.known(split, set(COST_BASES), "costs.split.")
    weights = tuple((k, v.number(split[k], f"costs.split.{k}", zero_ok=True))
                    for k in COST_BASES if k in split)
    total = sum(w for _, w in weights)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        v.fail("costs.split", f"weights must sum to 1, got {total:g}")
    return CostSettings(yen, weights)


class _Check:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def known(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                self.fail(f"{prefix}{k}", f"unknown key (known: {', '.join(sorted(allowed))})")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return dict(value)

    def array(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be an array of tables")
        return list(value)

    def text(self, value: Any, key: str, *, empty: bool = False) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a 団体コード written as a number
        if not isinstance(value, str) or (not value and not empty):
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def number(self, value: Any, key: str, *, zero_ok: bool = False,
               integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {value!r}")
        if integer and isinstance(value, float) and not value.is_integer():
            self.fail(key, f"must be a whole number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            self.fail(key, f"must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        return float(value)

    def path(self, value: Any, key: str, *, url: bool = False) -> str:
        text = self.text(value, key)
        if (url and "://" in text) or Path(text).is_absolute() or self.source.startswith("<"):
            return text
        return str(Path(self.source).absolute().parent / text)
