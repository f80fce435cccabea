"""The agent's log: one JSON object per line when stdout is not a terminal (journald),
human lines on a terminal; every line carries the tenant and the run id ("-" between runs).

Services log through the ``drsync`` logger; the agent installs one handler on it (and on
APScheduler's) with a filter that stamps each record from the running agent.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["AgentFields", "HumanLines", "JsonLines", "setup_logging"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "tenant", "run_id"}


class AgentFields(logging.Filter):
    """Stamps ``tenant`` and ``run_id`` on every record, from ``fields()``."""

    def __init__(self, fields: Callable[[], tuple[str, str]]) -> None:
        super().__init__()
        self._fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        record.tenant, record.run_id = self._fields()
        return True


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(), "logger": record.name,
            "tenant": getattr(record, "tenant", "-"), "run_id": getattr(record, "run_id", "-"),
            "message": record.getMessage(),
        }
        doc.update(_extra(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class HumanLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = (f"{when} {record.levelname.lower():7} {getattr(record, 'tenant', '-')} "
                f"run {str(getattr(record, 'run_id', '-'))[:8]}: {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fields: Callable[[], tuple[str, str]], stream: IO[str] | None = None,
                  level: int = logging.INFO) -> logging.Handler:
    """Route the ``drsync`` and ``apscheduler`` loggers to ``stream`` (stdout), replacing
    their handlers; JSON lines unless the stream is a terminal."""
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    handler.setFormatter(HumanLines() if stream.isatty() else JsonLines())
    handler.addFilter(AgentFields(fields))
    for name, lvl in (("drsync", level), ("apscheduler", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(lvl)
        logger.propagate = False
    return handler
