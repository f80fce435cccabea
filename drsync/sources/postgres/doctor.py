"""The server settings a backup depends on, each judged with one line of advice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drsync.sources.postgres.tools import PgTools

__all__ = ["Finding", "check_server", "judge"]

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
    add("archive_timeout", 0 < timeout <= 600, "bounds the RPO of a quiet server",
        "set archive_timeout = '5min' (reload): a quiet server may hold WAL unarchived forever")
    add("wal_compression", values.get("wal_compression", "off") != "off",
        "smaller full-page images, less WAL to ship",
        "set wal_compression = zstd (or lz4/on; reload): full-page images dominate WAL volume")
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
