"""wal-recompress: spooled WAL resealed with LZMA, durable at every moment, read by every reader."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from drsync.errors import RepositoryLocked
from drsync.repo.crypto import CODEC_LZMA, CODEC_ZSTD, MasterKey
from drsync.repo.objects import FormatError
from drsync.repo.wal import open_wal, parse_wal_header, recompress_wal, seal_wal
from drsync.testing import make_repository
from drsync.wal.recompress import CpuBudget, recompress_spool
from drsync.wal.spool import Spool
from tests.wal.test_wal import Wal

NAMES = [f"0000000100000000000000{i:02X}" for i in range(1, 9)]


def _wal_like(seed: int, size: int = 512 << 10) -> bytes:
    """Row images of a municipal table: repetitive text with scattered numbers, the kind of
    content LZMA packs much better than fast zstd."""
    rng = random.Random(seed)
    towns = ["延岡市", "日向市", "佐伯市", "門川町", "椎葉村"]
    out = bytearray()
    while len(out) < size:
        out += (f"{rng.randrange(10**9):09d}|住民{rng.randrange(10**6)}|宮崎県"
                f"{rng.choice(towns)}{rng.randrange(1, 40)}-{rng.randrange(1, 30)}|"
                f"{rng.randrange(1930, 2024)}-{rng.randrange(1, 13):02d}|").encode()
        if rng.random() < 0.05:
            out += bytes(rng.randrange(64, 2048))
    return bytes(out[:size])


@pytest.fixture
def wal(drsync_bin: str, tmp_path: Path) -> Wal:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "agent.key")
    return Wal(drsync_bin, tmp_path)


def _codec(obj: bytes) -> int:
    return obj[parse_wal_header(obj).length] & 0x7F


def _codecs(spool: Path) -> set[int]:
    """The codecs of the spooled objects now (one being replaced may be read either way)."""
    found = set()
    for name in NAMES:
        try:
            found.add(_codec((spool / name).read_bytes()))
        except (FileNotFoundError, FormatError, IndexError):
            continue
    return found


def test_reseal_keeps_the_header_and_the_content() -> None:
    key = MasterKey.generate()
    data = _wal_like(1)
    old = seal_wal(key, NAMES[0], data)
    new = recompress_wal(key, old, NAMES[0], preset=6)
    assert new is not None
    assert _codec(old) == CODEC_ZSTD and _codec(new) == CODEC_LZMA
    head = parse_wal_header(old)
    assert new[:head.length] == old[:head.length]  # name, content id, size, push time
    assert open_wal(key, new, NAMES[0])[1] == data
    assert len(new) < len(old) * 0.9
    assert recompress_wal(key, new, NAMES[0], preset=6) is None  # already LZMA
    flipped = bytearray(new)
    flipped[-30] ^= 1
    with pytest.raises(FormatError):
        open_wal(key, bytes(flipped), NAMES[0])
    with pytest.raises(FormatError):
        recompress_wal(key, bytes(flipped), NAMES[0], preset=6)
    with pytest.raises(FormatError):
        recompress_wal(key, old, NAMES[1], preset=6)  # moved to another name
    # Random bytes do not shrink: left as they are.
    noise = seal_wal(key, NAMES[1], os.urandom(100_000))
    assert recompress_wal(key, noise, NAMES[1], preset=6) is None


def test_cpu_budget_paces_on_a_virtual_clock() -> None:
    now, cpu, slept = [0.0], [0.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    budget = CpuBudget(0.25, cpu=lambda: cpu[0], clock=lambda: now[0], sleep=sleep)
    cpu[0] += 1.0
    now[0] += 1.0  # one CPU-second in one wall second: 4 s allowed, wait 3 more
    budget.pace()
    assert slept == [3.0]
    now[0] += 10.0  # idle for a while: no wait
    budget.pace()
    assert slept == [3.0] and budget.waited == 3.0
    with pytest.raises(ValueError):
        CpuBudget(0)
    with pytest.raises(ValueError):
        CpuBudget(1.5)


def _push_all(wal: Wal, tmp_path: Path, names: list[str] = NAMES) -> dict[str, bytes]:
    contents = {}
    for i, name in enumerate(names):
        path = tmp_path / "pg_wal" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_wal_like(i))
        contents[name] = path.read_bytes()
        assert wal("wal-push", str(path)).returncode == 0
    return contents


def test_every_reader_reads_recompressed_wal(wal: Wal, tmp_path: Path) -> None:
    contents = _push_all(wal, tmp_path)
    before = sum((wal.spool / n).stat().st_size for n in NAMES)
    done = wal("wal-recompress", "--json", "--cpu-budget", "100%")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["recompressed"] == len(NAMES) and doc["bytes_before"] == before
    after = sum((wal.spool / n).stat().st_size for n in NAMES)
    assert doc["bytes_after"] == after < before * 0.9
    assert doc["priority"]["nice"] == 19
    assert not [n for n in os.listdir(wal.spool) if n.startswith(".tmp")]
    # Again: nothing left to do.
    again = json.loads(wal("wal-recompress", "--json").stdout)
    assert again["recompressed"] == 0 and again["already"] == len(NAMES)
    # PostgreSQL retrying a push after a crash: still "the same file".
    assert wal("wal-push", str(tmp_path / "pg_wal" / NAMES[0])).returncode == 0
    # wal-fetch from the spool, then ship, check and fetch from the store.
    out = tmp_path / "fetched"
    assert wal("wal-fetch", NAMES[2], str(out)).returncode == 0
    assert out.read_bytes() == contents[NAMES[2]]
    shipped = wal("wal-ship", "--json")
    assert shipped.returncode == 0 and json.loads(shipped.stdout)["shipped"] == len(NAMES)
    stored = tmp_path / "repo" / "wal" / NAMES[3]
    assert _codec(stored.read_bytes()) == CODEC_LZMA
    checked = wal("check", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert wal("wal-fetch", NAMES[3], str(out)).returncode == 0
    assert out.read_bytes() == contents[NAMES[3]]


def test_damaged_spooled_file_is_named_and_left_alone(wal: Wal, tmp_path: Path) -> None:
    _push_all(wal, tmp_path, NAMES[:2])
    victim = wal.spool / NAMES[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    done = wal("wal-recompress", "--preset", "1", "--cpu-budget", "100%")
    assert done.returncode == 13
    [line] = done.stderr.strip().splitlines()
    assert NAMES[1] in line and str(wal.spool) in line
    assert victim.read_bytes() == bytes(data)


def test_bad_budget_and_no_spool_are_one_line(wal: Wal, tmp_path: Path) -> None:
    done = wal("wal-recompress", "--cpu-budget", "150%")
    assert done.returncode == 2 and "150%" in done.stderr
    done = wal("wal-recompress", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["recompressed"] == 0
    assert not wal.spool.exists()  # never created


def test_one_run_at_a_time(tmp_path: Path) -> None:
    import fcntl

    key = MasterKey.generate()
    spool = Spool(tmp_path / "spool")
    spool.write_new(NAMES[0], seal_wal(key, NAMES[0], _wal_like(0, 100_000)))
    fd = os.open(spool.path(".recompress.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RepositoryLocked, match="another wal-recompress"):
            recompress_spool(spool, key)
    finally:
        os.close(fd)
    assert recompress_spool(spool, key).recompressed == [NAMES[0]]


def test_kill_9_at_any_moment_leaves_every_segment_whole(wal: Wal, tmp_path: Path) -> None:
    contents = _push_all(wal, tmp_path)
    rng = random.Random(7)
    key_env = {**wal.env}
    for round_ in range(6):
        proc = subprocess.Popen([wal.exe, "wal-recompress", "--preset", "6",
                                 "--cpu-budget", "100%", "--no-idle"], env=key_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_ == 0:  # killed as soon as the first file is recompressed, not by a timer
            while proc.poll() is None and CODEC_LZMA not in _codecs(wal.spool):
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert sorted(n for n in os.listdir(wal.spool) if not n.startswith(".")) == NAMES
        if round_ == 0:  # about 2 CPU-s of LZMA: killed before the last file was done
            assert CODEC_ZSTD in _codecs(wal.spool)
        out = tmp_path / "fetched"
        for name in NAMES:
            assert wal("wal-fetch", name, str(out)).returncode == 0
            assert out.read_bytes() == contents[name]
    done = wal("wal-recompress", "--json", "--cpu-budget", "100%")
    assert done.returncode == 0, done.stderr
    assert not [n for n in os.listdir(wal.spool) if n.startswith(".tmp")]
    codecs = {_codec((wal.spool / n).read_bytes()) for n in NAMES}
    assert codecs == {CODEC_LZMA}


def test_ship_while_recompressing_loses_nothing(wal: Wal, tmp_path: Path) -> None:
    contents = _push_all(wal, tmp_path)
    recompress = subprocess.Popen([wal.exe, "wal-recompress", "--preset", "6",
                                   "--cpu-budget", "100%"], env=wal.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    shipped = wal("wal-ship")
    _, err = recompress.communicate(timeout=300)
    assert recompress.returncode == 0, err
    assert shipped.returncode == 0, shipped.stderr
    again = wal("wal-ship")  # whatever the recompressor had in hand when shipping started
    assert again.returncode == 0, again.stderr
    out = tmp_path / "fetched"
    for name in NAMES:
        assert (tmp_path / "repo" / "wal" / name).exists()
        assert wal("wal-fetch", name, str(out)).returncode == 0
        assert out.read_bytes() == contents[name]
    assert [n for n in os.listdir(wal.spool) if not n.startswith(".")] == []
