"""The resident pusher (drsync.wal.resident): look-ahead of .ready segments, the answer
for a segment it already spooled, conflicts through it, and kill -9 of it.

Every push goes through the installed console script, as archive_command runs it; the
pusher a cold push leaves behind is found by its command line and killed at the end."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from drsync.repo.crypto import MasterKey
from drsync.repo.wal import open_wal
from drsync.testing import make_repository, resident_pushers
from drsync.wal.push import spool_key
from drsync.wal.spool import Spool
from tests.wal.test_wal import Wal, _segment

NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 13)]


_residents = resident_pushers  # by the test's directory; conftest stops them after each test


@pytest.fixture
def wal(drsync_bin: str, tmp_path: Path) -> Wal:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "agent.key")
    return Wal(drsync_bin, tmp_path)


def _pg_wal(base: Path, count: int, size: int = 1 << 20) -> Path:
    """A pg_wal directory with ``count`` segments, each marked .ready."""
    status = base / "pg_wal" / "archive_status"
    status.mkdir(parents=True)
    for i, name in enumerate(NAMES[:count]):
        _segment(base / "pg_wal" / name, seed=i, size=size)
        (status / f"{name}.ready").touch()
    return base / "pg_wal"


def _key(wal: Wal, spool: Path) -> MasterKey:
    return spool_key(Spool(spool), str(wal.base / "agent.key"), None,
                     lambda: MasterKey.generate())


def _wait_spooled(spool: Path, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all((spool / n).exists() for n in names):
        assert time.monotonic() < deadline, sorted(os.listdir(spool))
        time.sleep(0.02)


def _read_bytes(pid: int) -> int:
    """Bytes the process has read so far (rchar of /proc/PID/io): not a timer."""
    line = next(x for x in Path(f"/proc/{pid}/io").read_text().splitlines()
                if x.startswith("rchar:"))
    return int(line.split()[1])


def _ident(path: Path) -> tuple[Any, ...]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def test_look_ahead_spools_the_ready_segments_exactly_and_answers_for_them(
        wal: Wal, tmp_path: Path) -> None:
    pg_wal = _pg_wal(tmp_path, 6)
    names = NAMES[:6]
    assert wal("wal-push", str(pg_wal / names[0])).returncode == 0  # cold: leaves the pusher
    assert _residents(str(tmp_path))
    _wait_spooled(wal.spool, names)  # the other five, pushed ahead
    key = _key(wal, wal.spool)
    for name in names:
        _head, plain = open_wal(key, (wal.spool / name).read_bytes(), name)
        assert plain == (pg_wal / name).read_bytes(), name
    before = {n: _ident(wal.spool / n) for n in names}

    # A segment changed after it was pushed ahead is pushed for real: the conflict.
    _segment(pg_wal / names[5], seed=99, size=1 << 20)
    done = wal("wal-push", str(pg_wal / names[5]))
    assert done.returncode == 20
    assert "already archived with different content" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    # PostgreSQL's calls for the others: success, the spooled objects untouched, and
    # answered without reading the segment again (the pusher's read count says so).
    (pusher,) = _residents(str(tmp_path))
    for name in names[1:4]:
        read_before = _read_bytes(pusher)
        done = wal("wal-push", str(pg_wal / name))
        assert done.returncode == 0, done.stderr
        assert _read_bytes(pusher) - read_before < (pg_wal / name).stat().st_size
        (pg_wal / "archive_status" / f"{name}.ready").rename(
            pg_wal / "archive_status" / f"{name}.done")  # as PostgreSQL does
    assert {n: _ident(wal.spool / n) for n in names} == before

    # A spooled object gone meanwhile (shipped) is not answered from memory: pushed again.
    (wal.spool / names[4]).unlink()
    read_before = _read_bytes(pusher)
    assert wal("wal-push", str(pg_wal / names[4])).returncode == 0
    assert _read_bytes(pusher) - read_before >= (pg_wal / names[4]).stat().st_size
    _head, plain = open_wal(key, (wal.spool / names[4]).read_bytes(), names[4])
    assert plain == (pg_wal / names[4]).read_bytes()
    before[names[4]] = _ident(wal.spool / names[4])

    # Another file under a spooled name, through the pusher: still the conflict.
    other = tmp_path / "other" / names[2]
    other.parent.mkdir()
    _segment(other, seed=42, size=1 << 20)
    done = wal("wal-push", str(other))
    assert done.returncode == 20 and "already archived" in done.stderr
    # And the same content from elsewhere: a duplicate, success.
    same = tmp_path / "same" / names[3]
    same.parent.mkdir()
    same.write_bytes((pg_wal / names[3]).read_bytes())
    assert wal("wal-push", str(same)).returncode == 0
    assert _ident(wal.spool / names[3]) == before[names[3]]


def test_pusher_refuses_once_the_config_changed(wal: Wal, tmp_path: Path) -> None:
    """A config edit (here: another spool) is obeyed at once, not after the idle exit."""
    pg_wal = _pg_wal(tmp_path, 2)
    config = tmp_path / "agent.toml"
    config.write_text(f'[wal]\nspool = "{tmp_path / "one"}"\n')
    env = {"DRSYNC_CONFIG": str(config), "DRSYNC_SPOOL": ""}
    (pg_wal / "archive_status" / f"{NAMES[1]}.ready").unlink()
    assert wal("wal-push", str(pg_wal / NAMES[0]), env=env).returncode == 0
    assert _residents(str(tmp_path))
    config.write_text(f'[wal]\nspool = "{tmp_path / "two"}"\n')
    assert wal("wal-push", str(pg_wal / NAMES[1]), env=env).returncode == 0
    assert (tmp_path / "two" / NAMES[1]).exists()
    assert not (tmp_path / "one" / NAMES[1]).exists()


def test_an_edit_before_the_forked_pusher_looks_is_seen(wal: Wal, tmp_path: Path) -> None:
    """The pusher is forked after its parent read the config: an edit in between (the race
    the test above lost once in CI) is an edit, though the pusher never saw the old file."""
    from drsync.settings import resolve
    from drsync.wal.resident import _Pusher

    config = tmp_path / "agent.toml"
    config.write_text(f'[wal]\nspool = "{tmp_path / "one"}"\n')
    pg_wal = _pg_wal(tmp_path, 1)
    env = {**wal.env, "DRSYNC_CONFIG": str(config), "DRSYNC_SPOOL": ""}
    assert wal("wal-push", str(pg_wal / NAMES[0]), env=env).returncode == 0  # a key there
    settings = resolve(str(config), {}, env)  # the parent's read
    config.write_text(f'[wal]\nspool = "{tmp_path / "two"}"\n')  # the same size
    pusher = _Pusher(["test", str(tmp_path), "0", str(tmp_path)], settings,
                     Spool(str(tmp_path / "one")))
    try:
        assert not pusher.unchanged()
        config.write_text(f'[wal]\nspool = "{tmp_path / "one"}"\n')  # back as it was read
        assert pusher.unchanged()
    finally:
        pusher.sock.close()


def test_resident_false_leaves_no_pusher(wal: Wal, tmp_path: Path) -> None:
    pg_wal = _pg_wal(tmp_path, 2)
    config = tmp_path / "agent.toml"
    config.write_text("[wal]\nresident = false\n")
    assert wal("wal-push", str(pg_wal / NAMES[0]),
               env={"DRSYNC_CONFIG": str(config)}).returncode == 0
    assert not _residents(str(tmp_path))
    assert not (wal.spool / NAMES[1]).exists()


def test_killed_pusher_leaves_a_consistent_spool(wal: Wal, tmp_path: Path) -> None:
    """SIGKILL of the pusher during look-ahead, at random points in it: every spooled name
    is a whole object of exactly its segment, and PostgreSQL's calls then all succeed.

    The pusher is held with SIGSTOP while the segments are marked ready and then let run
    in short steps until it has read a random number of bytes, so the kill lands inside
    look-ahead however fast this machine is (a sleep before the kill did not: on an idle
    machine the pusher could finish first)."""
    pg_wal = _pg_wal(tmp_path, 1, size=4 << 20)
    for i, name in enumerate(NAMES[1:12], start=1):
        _segment(pg_wal / name, seed=i, size=4 << 20)
    rng = random.Random(5)
    cut_short = 0
    for round_ in range(4):
        spool = tmp_path / f"spool-{round_}"  # a new identity: a new pusher
        env = {"DRSYNC_SPOOL": str(spool)}
        status = pg_wal / "archive_status"
        for name in NAMES[1:12]:
            (status / f"{name}.ready").unlink(missing_ok=True)
        assert wal("wal-push", str(pg_wal / NAMES[0]), env=env).returncode == 0
        pids = [p for p in _residents(str(pg_wal / NAMES[0]))
                if str(spool).encode() in Path(f"/proc/{p}/environ").read_bytes()]
        assert len(pids) == 1
        pid = pids[0]
        os.kill(pid, signal.SIGSTOP)
        for name in NAMES[1:12]:
            (status / f"{name}.ready").touch()
        until = _read_bytes(pid) + rng.randint(0, 40 << 20)  # of the 44 MiB ahead
        while _read_bytes(pid) < until and len(os.listdir(spool)) < 12:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.002)
            os.kill(pid, signal.SIGSTOP)
        os.kill(pid, signal.SIGKILL)
        key = _key(wal, spool)
        spooled = sorted(n for n in os.listdir(spool) if not n.startswith("."))
        cut_short += len(spooled) < 12  # the kill landed during look-ahead
        for name in spooled:
            _head, plain = open_wal(key, (spool / name).read_bytes(), name)
            assert plain == (pg_wal / name).read_bytes(), name
        for name in NAMES[1:12]:
            done = wal("wal-push", str(pg_wal / name), env=env)
            assert done.returncode == 0, done.stderr
        for name in NAMES[:12]:
            _head, plain = open_wal(key, (spool / name).read_bytes(), name)
            assert plain == (pg_wal / name).read_bytes(), name
    assert cut_short, "no kill landed during look-ahead"


def test_archiving_backlog_is_pushed_ahead_from_a_real_cluster(tenant_factory: Any) -> None:
    """A cluster that could not archive for a while: once archive_command works, the first
    call's pusher takes the backlog of .ready segments; all arrive, byte for byte."""
    t = tenant_factory({"archive_command": "'/bin/false'"})
    t.cluster.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v "
                   "FROM generate_series(1, 20000) g")
    names = []
    for _ in range(5):
        t.cluster.psql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        names.append(t.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    pg_wal = t.cluster.data / "pg_wal"
    copies = {n: (pg_wal / n).read_bytes() for n in names}
    assert all((pg_wal / "archive_status" / f"{n}.ready").exists() for n in names)
    t.cluster.psql(f"ALTER SYSTEM SET archive_command = "
                   f"'{t.exe} wal-push --config {t.config} %p'")
    t.cluster.psql("SELECT pg_reload_conf()")
    t.cluster.wait_archived(names[-1])
    key = spool_key(Spool(t.spool), str(t.key), None, lambda: MasterKey.generate())
    for name, data in copies.items():
        _head, plain = open_wal(key, (t.spool / name).read_bytes(), name)
        assert plain == data, name
    assert _residents(str(t.config))  # stopped by the tenant's close()
