"""What one command costs, with everything it starts: wall, CPU, peak RSS of its tree.

``run_measured`` starts a command and, until it exits, samples ``/proc``
every ``interval`` seconds: the RSS of the command and all its descendants is
summed per sample (the ``runuser`` wrapper that drops root is left out), and
the peak of that sum is reported; so is the peak of the summed PSS, which
counts pages the processes share (libraries, pgBackRest's forked locals)
once. CPU is ``os.wait4``'s rusage of the command, which includes every
descendant it waited for (pg_basebackup under drsync, pgBackRest's local
processes). A server's backends are not descendants: give
``server_pid`` (the postmaster) and the CPU its direct children spent during
the command (walsender, checkpointer, the backup's session) is reported on
its own, from their ``/proc/PID/stat`` times at the last sample each was seen.
Sampling costs this process about 2 ms of CPU a sample on a quiet machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "run_measured"]

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float  # user + system of the command and its waited-for descendants
    peak_rss: int  # bytes, max over samples of the tree's summed RSS
    peak_pss: int  # bytes, the same with PSS: shared pages counted once across the tree
    server_cpu_s: float  # user + system of the server's backends meanwhile
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class _Proc:
    ppid: int
    comm: str
    cpu_ticks: int
    rss_pages: int


def _processes() -> dict[int, _Proc]:
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is stat's field 3 (state): ppid 4, utime 14, stime 15, rss 24.
        procs[int(name)] = _Proc(int(fields[1]), comm, int(fields[11]) + int(fields[12]),
                                 int(fields[21]))
    return procs


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # gone meanwhile
    return 0


def _tree(procs: dict[int, _Proc], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def run_measured(cmd: Sequence[str], *, server_pid: int | None = None,
                 cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 interval: float = 0.01) -> Measured:
    """Run ``cmd`` to its end, sampling its process tree; its output is returned as text."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=cwd, env=env)
        server_start: dict[int, int] = {}
        server_last: dict[int, int] = {}
        peak = peak_pss = 0
        first = True
        while True:
            procs = _processes()
            tree = _tree(procs, proc.pid)
            tool = [p for p in tree if procs[p].comm != "runuser"]
            peak = max(peak, sum(procs[p].rss_pages for p in tool) * PAGE)
            peak_pss = max(peak_pss, sum(_pss(p) for p in tool))
            if server_pid is not None:
                for pid, p in procs.items():
                    if p.ppid == server_pid:
                        if first:
                            server_start[pid] = p.cpu_ticks
                        server_last[pid] = p.cpu_ticks
            first = False
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(interval)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        server_ticks = sum(last - server_start.get(pid, 0) for pid, last in server_last.items())
        return Measured(wall, usage.ru_utime + usage.ru_stime, peak, peak_pss,
                        server_ticks / TICK,
                        proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"))
