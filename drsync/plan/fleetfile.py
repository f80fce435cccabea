"""Reading a fleet file (TOML) into a validated ``Fleet``, with ``--set`` overrides.

Every problem is one line naming the file and the key, written the way
``--set`` spells keys (``tenant.Nobeoka.compress_mb_per_s``), so the
message says exactly what to edit. A value given by ``--set`` that fails
validation is reported as a usage error naming the flag instead.

Units: MB = 10^6 bytes, Mbit = 10^6 bits, times of day as "HH:MM".
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from drsync.errors import ConfigError, UsageError
from drsync.plan.fleet import UNLIMITED_STREAMS, Fleet, Link, Tenant, Window

__all__ = ["TENANT_KEYS", "apply_overrides", "fleet_from_dict", "load_fleet", "read_toml"]

TOP_KEYS = {"window", "link", "receiver", "defaults", "tenant", "keys", "dr",
            "report", "costs"}  # [report] and [costs]: read by drsync.report.settings
KEYS_KEYS = {"escrow_key"}
DR_KEYS = {"restore_mbit_per_s"}
WINDOW_KEYS = {"start", "minutes"}
LINK_KEYS = {"name", "mbit_per_s", "stream_mbit_per_s"}
RECEIVER_KEYS = {"max_streams"}
# Keys a tenant may set, and [defaults] may set for every tenant.
TENANT_KEYS = {
    "daily_mb", "daily_kb_per_resident", "compress_mb_per_s", "compression_ratio",
    "overlap", "setup_s", "link", "population", "priority", "earliest", "deadline",
    "full_mb", "full_kb_per_resident", "full_every_days", "rpo_hours", "rto_hours",
    "repo", "key_file",
}
# Keys of a tenant the planner ignores: the BCP report's (validated by drsync.report.settings).
REPORT_TENANT_KEYS = {"code", "datasets", "report"}
DEFAULT_PRIORITY = 10  # as Bareos: 1 is the most important
DEFAULT_RPO_HOURS = 24.0  # the age of the newest restorable point a tenant accepts
DEFAULT_RTO_HOURS = 24.0  # how long bringing a tenant back may take (`drsync dr plan`)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables; ConfigError naming the file (``what``: "fleet file")."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read {what}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_fleet(path: str | Path, overrides: Iterable[str] = (), *,
               planning: bool = True) -> Fleet:
    """Read, override and validate a fleet file; ConfigError names file and key.

    ``planning`` False (``dr``, ``drill --fleet``, ``catalog rebuild``): a fleet file
    that only says how to open the tenants (``[keys]``, ``[dr]``, each tenant's repo,
    key_file, priority, rto_hours, rpo_hours) is enough; the planner's ``[window]``,
    ``[[link]]`` and per-tenant rates may be absent (what is there is still checked).
    """
    path = Path(path)
    raw = read_toml(path, "fleet file")
    overridden = apply_overrides(raw, overrides)
    return fleet_from_dict(raw, source=str(path), overridden=overridden, planning=planning)


# What a fleet file read for recovery only (``planning`` False) stands in for the planner's
# numbers it does not give: valid, and never planned with.
_UNPLANNED_WINDOW = {"start": "00:00", "minutes": 1440}
_UNPLANNED_LINK = {"name": "unplanned", "mbit_per_s": 1}
_UNPLANNED_TENANT = {"daily_mb": 1, "compress_mb_per_s": 1, "compression_ratio": 1}


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, str]:
    """Apply ``key=value`` overrides to a raw fleet dict in place.

    Returns {dotted key: the flag as given} so validation can blame the flag.
    """
    overridden: dict[str, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item}: expected key=value")
        value = _parse_value(text.strip())
        parts = key.split(".")
        section = parts[0]
        if section in ("window", "receiver") and len(parts) == 2:
            allowed = WINDOW_KEYS if section == "window" else RECEIVER_KEYS
            _check_known(item, parts[1], allowed)
            raw.setdefault(section, {})[parts[1]] = value
        elif section == "defaults" and len(parts) == 2:
            _check_known(item, parts[1], TENANT_KEYS)
            raw.setdefault("defaults", {})[parts[1]] = value
        elif section in ("link", "tenant") and len(parts) >= 3:
            name, field = ".".join(parts[1:-1]), parts[-1]
            _check_known(item, field, (LINK_KEYS if section == "link" else TENANT_KEYS) - {"name"})
            table = _named(raw, section, name)
            if table is None:
                raise UsageError(f"--set {item}: no {section} named {name!r} in the fleet")
            table[field] = value
        else:
            raise UsageError(
                f"--set {item}: unknown key {key!r} (use window.KEY, receiver.KEY, "
                "defaults.KEY, link.NAME.KEY or tenant.NAME.KEY)"
            )
        overridden[key] = item
    return overridden


def fleet_from_dict(
    raw: Mapping[str, Any], source: str = "<fleet>", overridden: Mapping[str, str] | None = None,
    *, planning: bool = True,
) -> Fleet:
    """Validate a parsed fleet file; the checks ``load_fleet`` runs after TOML parsing."""
    v = _Validator(source, overridden or {})
    v.known(raw, TOP_KEYS, "")
    if not planning:
        raw = {**raw}
        raw.setdefault("window", _UNPLANNED_WINDOW)
        if not raw.get("link"):
            raw["link"] = [_UNPLANNED_LINK]
    window = _window(v, v.table(raw, "window", required=True))
    links = _links(v, raw.get("link"))
    receiver = v.table(raw, "receiver", required=False)
    v.known(receiver, RECEIVER_KEYS, "receiver.")
    max_streams = UNLIMITED_STREAMS
    if "max_streams" in receiver:
        max_streams = int(v.number(receiver["max_streams"], "receiver.max_streams", integer=True))
    defaults = v.table(raw, "defaults", required=False)
    v.known(defaults, TENANT_KEYS, "defaults.")
    if not planning:
        defaults = {**_UNPLANNED_TENANT, **defaults}
    tenants = _tenants(v, raw.get("tenant"), defaults, window, {lk.name for lk in links})
    keys = v.table(raw, "keys", required=False)
    v.known(keys, KEYS_KEYS, "keys.")
    escrow_key = v.path(keys["escrow_key"], "keys.escrow_key") if "escrow_key" in keys else None
    dr = v.table(raw, "dr", required=False)
    v.known(dr, DR_KEYS, "dr.")
    restore_rate = None
    if "restore_mbit_per_s" in dr:
        restore_rate = v.number(dr["restore_mbit_per_s"], "dr.restore_mbit_per_s")
    return Fleet(window, links, tenants, max_streams, source, escrow_key=escrow_key,
                 restore_mbit_per_s=restore_rate)


def _window(v: _Validator, table: Mapping[str, Any]) -> Window:
    v.known(table, WINDOW_KEYS, "window.")
    start = table.get("start", "00:00")
    v.clock(start, "window.start")
    if "minutes" not in table:
        v.fail("window.minutes", "is required (the window's length in minutes)")
    minutes = v.number(table["minutes"], "window.minutes")
    if minutes > 24 * 60:
        v.fail("window.minutes", f"must be at most 1440 (one day), got {minutes:g}")
    return Window(_clock_text(start), minutes)


def _links(v: _Validator, items: Any) -> tuple[Link, ...]:
    if not isinstance(items, list) or not items:
        v.fail("link", "at least one [[link]] table with a name and mbit_per_s is required")
    links: list[Link] = []
    for i, item in enumerate(items):
        where = f"link[{i}]"
        if not isinstance(item, dict):
            v.fail(where, "must be a table")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            v.fail(f"{where}.name", "is required (a non-empty string)")
        if any(lk.name == name for lk in links):
            v.fail(f"link.{name}", "is defined twice")
        v.known(item, LINK_KEYS, f"link.{name}.")
        if "mbit_per_s" not in item:
            v.fail(f"link.{name}.mbit_per_s", "is required")
        rate = v.number(item["mbit_per_s"], f"link.{name}.mbit_per_s")
        cap = None
        if "stream_mbit_per_s" in item:
            cap = v.number(item["stream_mbit_per_s"], f"link.{name}.stream_mbit_per_s")
        links.append(Link(name, rate, cap))
    return tuple(links)


def _tenants(
    v: _Validator, items: Any, defaults: Mapping[str, Any], window: Window, link_names: set[str]
) -> tuple[Tenant, ...]:
    if not isinstance(items, list) or not items:
        v.fail("tenant", "at least one [[tenant]] table is required")
    tenants: list[Tenant] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            v.fail(f"tenant[{i}]", "must be a table")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            v.fail(f"tenant[{i}].name", "is required (a non-empty string)")
        if name in seen:
            v.fail(f"tenant.{name}", "is defined twice")
        seen.add(name)
        v.known(item, TENANT_KEYS | REPORT_TENANT_KEYS | {"name"}, f"tenant.{name}.")
        tenants.append(_tenant(v, name, item, defaults, window, link_names))
    return tuple(tenants)


def _tenant(
    v: _Validator, name: str, item: Mapping[str, Any], defaults: Mapping[str, Any],
    window: Window, link_names: set[str],
) -> Tenant:
    values = {**defaults, **item}

    def where(k: str) -> str:
        # Blame [defaults] when that is where the value came from.
        return f"defaults.{k}" if k in defaults and k not in item else f"tenant.{name}.{k}"

    def need(k: str) -> Any:
        if k not in values:
            v.fail(f"tenant.{name}.{k}", "is required (set it here or in [defaults])")
        return values[k]

    def num(k: str, *, zero_ok: bool = False, integer: bool = False) -> float:
        return v.number(need(k), where(k), zero_ok=zero_ok, integer=integer)

    population = int(num("population", zero_ok=True, integer=True)) if "population" in values \
        else 0
    daily_mb = _volume(v, name, values, where, population, "daily_mb", "daily_kb_per_resident")
    if daily_mb is None:
        v.fail(f"tenant.{name}.daily_mb", "is required (or population and daily_kb_per_resident)")
    full_mb = _volume(v, name, values, where, population, "full_mb", "full_kb_per_resident")
    full_every = None
    if "full_every_days" in values:
        full_every = int(num("full_every_days", integer=True))
    if (full_mb is None) != (full_every is None):
        v.fail(f"tenant.{name}.full_every_days", "full_mb and full_every_days go together")
    link = values.get("link")
    if link is None and len(link_names) == 1:
        link = next(iter(link_names))
    if not isinstance(link, str) or link not in link_names:
        v.fail(where("link"), f"must name a [[link]] ({', '.join(sorted(link_names))})"
               f", got {link!r}")
    overlap = values.get("overlap", False)
    if not isinstance(overlap, bool):
        v.fail(where("overlap"), f"must be true or false, got {overlap!r}")
    priority = DEFAULT_PRIORITY
    if "priority" in values:
        priority = int(num("priority", integer=True))
    earliest = 0.0
    if "earliest" in values:
        earliest = v.offset(values["earliest"], window, where("earliest"), end=False)
    deadline = window.seconds
    if "deadline" in values:
        deadline = v.offset(values["deadline"], window, where("deadline"), end=True)
    if deadline <= earliest:
        v.fail(f"tenant.{name}.deadline", "must be after the tenant's earliest start")
    rpo_hours = num("rpo_hours") if "rpo_hours" in values else DEFAULT_RPO_HOURS
    rto_hours = num("rto_hours") if "rto_hours" in values else DEFAULT_RTO_HOURS
    repo = v.path(values["repo"], where("repo"), url=True) if "repo" in values else None
    key_file = v.path(values["key_file"], where("key_file")) if "key_file" in values else None
    return Tenant(
        name=name,
        daily_mb=daily_mb,
        compress_mb_per_s=num("compress_mb_per_s"),
        compression_ratio=num("compression_ratio"),
        overlap=overlap,
        setup_s=num("setup_s", zero_ok=True) if "setup_s" in values else 0.0,
        link=link,
        population=population,
        priority=priority,
        earliest_s=earliest,
        deadline_s=deadline,
        full_mb=full_mb,
        full_every_days=full_every,
        rpo_hours=rpo_hours,
        rto_hours=rto_hours,
        repo=repo,
        key_file=key_file,
    )


def _volume(
    v: _Validator, name: str, values: Mapping[str, Any], where: Callable[[str], str],
    population: int, mb_key: str, per_resident_key: str,
) -> float | None:
    """An explicit volume wins; otherwise population times the per-resident volume."""
    if mb_key in values:
        return v.number(values[mb_key], where(mb_key), zero_ok=True)
    if per_resident_key in values:
        per = v.number(values[per_resident_key], where(per_resident_key), zero_ok=True)
        if population <= 0:
            v.fail(f"tenant.{name}.population",
                   f"is required (> 0) to derive {mb_key} from {per_resident_key}")
        return population * per / 1000.0
    return None


class _Validator:
    """Checks values and raises one-line errors that name the file (or flag) and key."""

    def __init__(self, source: str, overridden: Mapping[str, str]) -> None:
        self.source = source
        self.overridden = overridden

    def fail(self, key: str, message: str) -> NoReturn:
        flag = self.overridden.get(key)
        if flag is None and key.startswith("tenant."):
            flag = self.overridden.get("defaults." + key.rsplit(".", 1)[-1])
        if flag is not None:
            raise UsageError(f"--set {flag}: {key} {message}")
        raise ConfigError(f"{self.source}: {key}: {message}")

    def known(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                self.fail(f"{prefix}{k}", f"unknown key (known: {', '.join(sorted(allowed))})")

    def table(self, raw: Mapping[str, Any], k: str, *, required: bool) -> Mapping[str, Any]:
        value = raw.get(k)
        if value is None:
            if required:
                self.fail(k, f"the [{k}] table is required")
            return {}
        if not isinstance(value, dict):
            self.fail(k, f"must be a [{k}] table")
        return dict(value)

    def number(self, value: Any, key: str, *, zero_ok: bool = False,
               integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {value!r}")
        if integer and (isinstance(value, float) and not value.is_integer()):
            self.fail(key, f"must be a whole number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            self.fail(key, f"must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        return float(value)

    def path(self, value: Any, key: str, *, url: bool = False) -> str:
        """A path (or, with ``url``, a repository URL); relative paths are relative to the
        fleet file, not to the working directory."""
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {value!r}")
        if (url and "://" in value) or os.path.isabs(value) or self.source.startswith("<"):
            return value
        return str(Path(self.source).absolute().parent / value)

    def clock(self, value: Any, key: str) -> int:
        """Seconds after midnight of an "HH:MM" (or "HH:MM:SS", or TOML time) value."""
        if isinstance(value, dt.time):
            return value.hour * 3600 + value.minute * 60 + value.second
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) in (2, 3) and all(p.isdigit() and len(p) == 2 for p in parts):
                h, m, s = (int(p) for p in [*parts, "00"][:3])
                if h < 24 and m < 60 and s < 60:
                    return h * 3600 + m * 60 + s
        self.fail(key, f'must be a time of day "HH:MM", got {value!r}')

    def offset(self, value: Any, window: Window, key: str, *, end: bool) -> float:
        """Seconds from the window start of a time of day inside the window."""
        start = self.clock(window.start, "window.start")
        rel = float((self.clock(value, key) - start) % 86400)
        if end and rel == 0:
            rel = 86400.0
        if rel > window.seconds or (not end and rel >= window.seconds):
            span = f"{window.start}+{window.minutes:g}min"
            self.fail(key, f"{_clock_text(value)} is outside the window ({span})")
        return rel


def _named(raw: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    items = raw.get(section)
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("name") == name:
                return item
    return None


def _check_known(item: str, field: str, allowed: set[str]) -> None:
    if field not in allowed:
        known = ", ".join(sorted(allowed))
        raise UsageError(f"--set {item}: unknown key {field!r} (known: {known})")


def _parse_value(text: str) -> Any:
    """A TOML value (number, bool, quoted string, time); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _clock_text(value: Any) -> str:
    if isinstance(value, dt.time):
        return value.strftime("%H:%M") if value.second == 0 else value.strftime("%H:%M:%S")
    return str(value)
