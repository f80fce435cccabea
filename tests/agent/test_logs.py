"""Agent log lines: JSON objects off a terminal, human lines on one; tenant and run id in each."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from drsync.agent.logs import setup_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
             for n in ("drsync", "apscheduler")}
    yield
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).propagate = propagate


def test_json_lines_when_not_a_terminal(restore_loggers: None) -> None:
    out = io.StringIO()
    setup_logging(lambda: ("Nobeoka", "abc123"), out)
    logging.getLogger("drsync.agent").info("run %s", "ok", extra={"event": "run_finished"})
    logging.getLogger("drsync.store").warning("a store warning")
    logging.getLogger("apscheduler.scheduler").warning("misfire")
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["message"] for d in docs] == ["run ok", "a store warning", "misfire"]
    assert all(d["tenant"] == "Nobeoka" and d["run_id"] == "abc123" for d in docs)
    assert docs[0]["event"] == "run_finished" and docs[1]["level"] == "warning"


def test_human_lines_on_a_terminal(restore_loggers: None) -> None:
    out = Terminal()
    setup_logging(lambda: ("Saga", "-"), out)
    logging.getLogger("drsync.agent").info("next run at 22:10:00")
    [line] = out.getvalue().splitlines()
    assert line.endswith("info    Saga run -: next run at 22:10:00")
    assert not line.startswith("{")
