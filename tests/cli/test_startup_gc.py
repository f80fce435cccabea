"""The cyclic garbage collector is off while a CLI process starts and always comes back:
once the store is open, after GC_DEFERRAL seconds whatever the command does, and in a
forked child (drsync.malloc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from drsync.testing import make_repository

PROBE = """
import gc, json, os, sys, time
from drsync import malloc
{body}
"""


def _probe(body: str, tmp_path: Path, *argv: str,
           env: dict[str, str] | None = None) -> dict[str, object]:
    out = tmp_path / "probe.json"
    code = PROBE.format(body=body.replace("OUT", repr(str(out))))
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_opening_the_store_turns_the_collector_back_on_and_freezes_start_up(
        tmp_path: Path) -> None:
    got = _probe("""
malloc.defer_cyclic_gc(seconds=60)
off = gc.isenabled()
from drsync.store import open_store
open_store(sys.argv[1])
json.dump({"during": off, "after": gc.isenabled(), "frozen": gc.get_freeze_count()},
          open(OUT, "w"))
""", tmp_path, str(tmp_path / "store"))
    assert got["during"] is False
    assert got["after"] is True
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000


def test_a_command_that_opens_no_store_gets_it_back_after_the_deferral(tmp_path: Path) -> None:
    got = _probe("""
malloc.defer_cyclic_gc(seconds=0.2)
off = gc.isenabled()
deadline = time.monotonic() + 30
while not gc.isenabled() and time.monotonic() < deadline:
    time.sleep(0.05)
json.dump({"during": off, "after": gc.isenabled()}, open(OUT, "w"))
""", tmp_path)
    assert got == {"during": False, "after": True}


def test_a_forked_child_has_the_collector_at_once(tmp_path: Path) -> None:
    """The resident pusher and the WAL prefetcher are forked; the timer is not."""
    got = _probe("""
malloc.defer_cyclic_gc(seconds=60)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, b"1" if gc.isenabled() else b"0")
    os._exit(0)
os.waitpid(pid, 0)
json.dump({"child": os.read(r, 1).decode(), "parent": gc.isenabled()}, open(OUT, "w"))
""", tmp_path)
    assert got == {"child": "1", "parent": False}


def test_the_console_entry_point_defers_it_and_a_command_ends_with_it_on(
        tmp_path: Path) -> None:
    make_repository(str(tmp_path / "repo"), None, tmp_path / "tenant.key")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")},
           "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_KEY_FILE": str(tmp_path / "tenant.key"),
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite"), "HOME": str(tmp_path)}
    got = _probe("""
from drsync.entry import main
sys.argv = ["drsync", "snapshots", "--json"]
try:
    main()
except SystemExit:
    pass
json.dump({"after": gc.isenabled(), "frozen": gc.get_freeze_count()}, open(OUT, "w"))
""", tmp_path, env=env)
    assert got["after"] is True
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000


def test_a_library_caller_keeps_its_collector(tmp_path: Path) -> None:
    """main(argv) (tests, embedding) leaves the caller's process as it was."""
    got = _probe("""
from drsync.entry import main
try:
    main(["--version"])
except SystemExit:
    pass
json.dump({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}, open(OUT, "w"))
""", tmp_path)
    assert got == {"enabled": True, "frozen": 0}
