"""The server settings a backup depends on, each judged with one line of advice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drsync.sources.postgres.tools import PgTools

__all__ = ["MIN_ARCHIVE_TIMEOUT_S", "Finding", "check_server", "judge"]

# Below this an idle server switches segments faster than anything is written to them.
MIN_ARCHIVE_TIMEOUT_S = 60

SETTINGS = ("wal_level", "archive_mode", "archive_command", "archive_timeout",
            "wal_compression", "full_page_writes", "max_wal_senders", "data_checksums")


@dataclass(frozen=True)
class Finding:
    setting: str
    value: str
    ok: bool
    advice: str

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting, "value": self.value, "ok": self.ok,
                "advice": self.advice}


def judge(values: dict[str, str]) -> list[Finding]:
    """Pure: settings in, findings out."""
    out = []

    def add(name: str, ok: bool, good: str, bad: str) -> None:
        out.append(Finding(name, values.get(name, "?"), ok, good if ok else bad))

    add("wal_level", values.get("wal_level") in ("replica", "logical"),
        "enough for base backups and WAL archiving",
        "set wal_level = replica (restart): 'minimal' WAL cannot be archived or replayed")
    add("archive_mode", values.get("archive_mode") in ("on", "always"),
        "WAL is handed to archive_command",
        "set archive_mode = on (restart): without it no WAL reaches drsync, no PITR")
    cmd = values.get("archive_command", "")
    add("archive_command", "drsync" in cmd and "wal-push" in cmd, "archives through drsync",
        "set archive_command = 'drsync wal-push --config /etc/drsync/agent.toml %p' (reload)")
    timeout = _seconds(values.get("archive_timeout", "0"))
    if 0 < timeout < MIN_ARCHIVE_TIMEOUT_S:
        add("archive_timeout", False, "",
            f"set archive_timeout = '5min' (reload): every {timeout} s a quiet server closes a "
            f"mostly-empty 16 MB segment, {86400 // timeout} a day to seal, ship and keep")
    elif timeout > 600:
        add("archive_timeout", False, "",
            f"set archive_timeout = '5min' (reload): a quiet server may hold up to {timeout} s "
            f"of commits unarchived")
    else:
        add("archive_timeout", timeout > 0, "bounds the RPO of a quiet server",
            "set archive_timeout = '5min' (reload): a quiet server may hold WAL unarchived "
            "forever")
    # Measured on a municipal day (README, "PostgreSQL", doctor): with wal_compression on,
    # drsync's own zstd gets less out of the full-page images and the link carries 14-61%
    # more bytes than with it off, whatever the client-side codec.
    add("wal_compression", values.get("wal_compression", "off") == "off",
        "drsync compresses the WAL it ships; full-page images compress best left raw",
        "set wal_compression = off (reload): compressed full-page images cost 14-61% more "
        "bytes on the link than drsync's zstd of uncompressed WAL (measured)")
    add("full_page_writes", values.get("full_page_writes") == "on",
        "torn pages are repairable from WAL",
        "set full_page_writes = on (reload): without it a base backup can hold torn pages")
    add("max_wal_senders", int(values.get("max_wal_senders", "0") or 0) >= 2,
        "room for pg_basebackup and pg_receivewal",
        "set max_wal_senders = 10 (restart): pg_basebackup needs a WAL sender")
    add("data_checksums", values.get("data_checksums") == "on",
        "corrupt pages are detected when read",
        "enable checksums (pg_checksums --enable, cluster stopped): silent page corruption "
        "would otherwise be backed up unnoticed")
    return out


def _seconds(text: str) -> int:
    text = text.strip()
    units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(int(text[: -len(unit)]) * units[unit])
    return int(text) if text.isdigit() else 0


def check_server(dsn: str, tools: PgTools | None = None) -> list[Finding]:
    tools = tools or PgTools()
    names = ",".join(f"'{n}'" for n in SETTINGS)
    rows = tools.query(dsn, f"SELECT name, setting, coalesce(unit, '') FROM pg_settings "
                            f"WHERE name IN ({names})")
    values = {}
    for name, setting, unit in rows:
        values[name] = setting + ("s" if unit == "s" else "")
    return judge(values)
