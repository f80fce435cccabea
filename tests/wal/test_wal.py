"""WAL archiving without a server: the object format, wal-push durability and refusals,
wal-ship, wal-fetch, and coverage. Commands run through the installed executable."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from drsync.errors import WalConflict
from drsync.repo.crypto import MasterKey
from drsync.repo.objects import FormatError
from drsync.repo.wal import open_wal, parse_wal_header, seal_wal
from drsync.sources.postgres.doctor import judge
from drsync.testing import make_repository
from drsync.wal.coverage import BaseBackup, next_segment, parse_history, wal_coverage

SEG = "000000010000000000000003"


def _segment(path: Path, seed: int = 0, size: int = 16 << 20) -> Path:
    rng = random.Random(seed)  # half random pages, half empty ones: compresses about 2:1
    data = b"".join(rng.randbytes(8192) + bytes(8192) for _ in range(size // 16384))
    path.write_bytes(data[:size])
    return path


class Wal:
    def __init__(self, exe: str, base: Path) -> None:
        self.exe = exe
        self.base = base
        self.spool = base / "spool"
        self.env = {**os.environ, "DRSYNC_REPO": str(base / "repo"),
                    "DRSYNC_KEY_FILE": str(base / "agent.key"), "DRSYNC_SPOOL": str(self.spool)}

    def __call__(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def wal(drsync_bin: str, tmp_path: Path) -> Wal:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "agent.key")
    return Wal(drsync_bin, tmp_path)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_wal_object_round_trip_and_tampering() -> None:
    key = MasterKey.generate()
    data = os.urandom(1000) + bytes(100_000)
    sealed = seal_wal(key, SEG, data)
    head, plain = open_wal(key, sealed, SEG)
    assert plain == data and head.name == SEG and head.size == len(data)
    assert sealed[:6] == b"DRSYW\x01" and len(sealed) < len(data)
    with pytest.raises(FormatError):
        open_wal(key, sealed, "000000010000000000000004")
    renamed = sealed.replace(SEG.encode(), b"000000010000000000000004")
    with pytest.raises(FormatError, match="authentication"):
        open_wal(key, renamed)
    flipped = bytearray(sealed)
    flipped[-20] ^= 1
    with pytest.raises(FormatError):
        open_wal(key, bytes(flipped))
    with pytest.raises(FormatError):
        open_wal(MasterKey.generate(), sealed)
    with pytest.raises(ValueError):
        seal_wal(key, "../etc/passwd", data)
    assert parse_wal_header(sealed).content_id == key.chunk_id(data)


def test_push_twice_same_content_succeeds_different_content_fails(wal: Wal,
                                                                   tmp_path: Path) -> None:
    seg = _segment(tmp_path / SEG)
    assert wal("wal-push", str(seg)).returncode == 0
    stored = (wal.spool / SEG).read_bytes()
    again = wal("wal-push", str(seg))
    assert again.returncode == 0
    _segment(seg, seed=1)
    done = wal("wal-push", str(seg))
    assert done.returncode == WalConflict.exit_code
    assert "different content" in _one_line(done)
    assert (wal.spool / SEG).read_bytes() == stored  # never overwritten


def test_refusals_are_one_line_and_non_zero(wal: Wal, tmp_path: Path) -> None:
    seg = _segment(tmp_path / SEG, size=1 << 20)
    done = wal("--config", str(tmp_path / "absent.toml"), "wal-push", str(seg))
    assert done.returncode == 4 and "absent.toml" in _one_line(done)
    done = wal("wal-push", "--config", str(tmp_path / "absent.toml"), str(seg))
    assert done.returncode == 4 and "absent.toml" in _one_line(done)
    done = wal("wal-push", str(tmp_path / "000000010000000000000009"))
    assert done.returncode == 15 and "cannot read" in _one_line(done)
    (tmp_path / "notwal").write_bytes(b"x")
    done = wal("wal-push", str(tmp_path / "notwal"))
    assert done.returncode == 15 and _one_line(done)
    done = wal("wal-push", str(seg), env={"DRSYNC_KEY_FILE": str(tmp_path / "absent.key")})
    assert done.returncode == 4 and "absent.key" in _one_line(done)
    assert not (wal.spool / SEG).exists()


def test_push_needs_no_store_once_the_key_wrapping_is_cached(wal: Wal, tmp_path: Path) -> None:
    first = _segment(tmp_path / SEG, size=1 << 20)
    assert wal("wal-push", str(first)).returncode == 0
    (tmp_path / "repo").rename(tmp_path / "repo-unreachable")
    second = _segment(tmp_path / "000000010000000000000004", size=1 << 20)
    done = wal("wal-push", str(second), env={"DRSYNC_REPO": ""})
    assert done.returncode == 0, done.stderr


def test_full_spool_disk_exits_non_zero_and_leaves_nothing(wal: Wal, tmp_path: Path) -> None:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip()}")
        pytest.skip(f"needs root to mount a tmpfs: {done.stderr.strip()}")
    try:
        seg = _segment(tmp_path / SEG, seed=5, size=4 << 20)
        done = wal("wal-push", str(seg), env={"DRSYNC_SPOOL": str(mount_point / "spool")})
        assert done.returncode == 14
        assert "no space left" in _one_line(done)
        assert os.listdir(mount_point / "spool") in ([], [n for n in os.listdir(
            mount_point / "spool") if n.startswith(".key-")])
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_killed_push_never_leaves_a_partial_segment(wal: Wal, tmp_path: Path) -> None:
    """SIGKILL at many points: the final name holds a whole, valid object or nothing.

    Half the kills come after a random delay, half the moment the push's temporary file
    appears. A kill that leaves a temporary behind landed while the segment was being
    written, the moment that matters; the loop runs until several have, so it cannot pass
    on kills that all came after the push had finished."""
    from drsync.store.local import TMP_PREFIX
    from drsync.wal.push import spool_key
    from drsync.wal.spool import Spool

    seg = _segment(tmp_path / SEG, seed=3)
    assert wal("wal-push", str(_segment(tmp_path / "000000010000000000000001", size=8192))
               ).returncode == 0  # caches the key wrapping
    key = spool_key(Spool(wal.spool), str(tmp_path / "agent.key"), None,
                    lambda: MasterKey.generate())

    def temporaries() -> set[str]:
        return {n for n in os.listdir(wal.spool) if n.startswith(TMP_PREFIX)}

    rng = random.Random(7)
    outcomes: dict[str, int] = {}
    for attempt in range(80):
        if attempt >= 12 and outcomes.get("killed mid-write", 0) >= 3:
            break
        (wal.spool / SEG).unlink(missing_ok=True)
        before = temporaries()
        proc = subprocess.Popen([wal.exe, "wal-push", str(seg)], env=wal.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt % 2:
            time.sleep(rng.uniform(0.02, 0.2))
        else:
            while proc.poll() is None and not temporaries() - before:
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        final = wal.spool / SEG
        if code == 0:
            outcome = "finished before the kill"
            assert final.exists()
        else:
            assert code == -signal.SIGKILL
            outcome = ("killed mid-write" if temporaries() - before
                       else "killed after the link" if final.exists()
                       else "killed before writing")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if final.exists():
            _head, plain = open_wal(key, final.read_bytes(), SEG)
            assert plain == seg.read_bytes()
        # PostgreSQL retries: the retry always succeeds.
        assert wal("wal-push", str(seg)).returncode == 0
    assert outcomes.get("killed mid-write", 0) >= 3, outcomes


def test_ship_then_fetch_verifies_and_missing_is_exit_1(wal: Wal, tmp_path: Path) -> None:
    seg = _segment(tmp_path / SEG, size=1 << 20)
    history = tmp_path / "00000002.history"
    history.write_text("1\t0/3000000\tno recovery target specified\n")
    assert wal("wal-push", str(seg)).returncode == 0
    assert wal("wal-push", str(history)).returncode == 0
    done = wal("wal-ship", "--json")
    assert done.returncode == 0, done.stderr
    assert '"shipped": 2' in done.stdout
    assert [n for n in os.listdir(wal.spool) if not n.startswith(".")] == []
    stored = tmp_path / "repo" / "wal" / SEG
    assert stored.exists()
    out = tmp_path / "restore" / "pg_wal"
    out.mkdir(parents=True)
    env = {"DRSYNC_SPOOL": ""}
    assert wal("wal-fetch", SEG, str(out / "RECOVERYXLOG"), env=env).returncode == 0
    assert (out / "RECOVERYXLOG").read_bytes() == seg.read_bytes()
    assert wal("wal-fetch", "00000002.history", str(out / "h"), env=env).returncode == 0
    missing = wal("wal-fetch", "000000010000000000000007", str(out / "x"), env=env)
    assert missing.returncode == 1 and not (out / "x").exists()
    assert missing.stderr == ""  # PostgreSQL asks for files that do not exist: no log noise
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    damaged = wal("wal-fetch", SEG, str(out / "y"), env=env)
    assert damaged.returncode == 126  # fatal for PostgreSQL: recovery stops, never ends early
    assert SEG in _one_line(damaged) and not (out / "y").exists()


def test_ship_keeps_a_segment_that_conflicts_with_the_store(wal: Wal, tmp_path: Path) -> None:
    seg = _segment(tmp_path / SEG, size=1 << 20)
    assert wal("wal-push", str(seg)).returncode == 0
    assert wal("wal-ship").returncode == 0
    _segment(seg, seed=9, size=1 << 20)
    assert wal("wal-push", str(seg)).returncode == 0  # the spool no longer has it
    done = wal("wal-ship")
    assert done.returncode == WalConflict.exit_code and SEG in _one_line(done)
    assert (wal.spool / SEG).exists()


def test_coverage_needs_the_backups_wal_and_follows_it_to_the_first_gap() -> None:
    base = BaseBackup("s1", "2026-11-27T03:00:00Z", 1, "000000010000000000000003",
                      "000000010000000000000004")
    names = ["000000010000000000000003", "000000010000000000000004", "000000010000000000000005",
             "000000010000000000000007"]
    [cov] = wal_coverage([base], set(names))
    assert cov.complete and cov.last_wal == "000000010000000000000005"
    [cov] = wal_coverage([base], set(names[:1]))
    assert not cov.complete and cov.missing == "000000010000000000000004"
    assert next_segment("0000000100000000000000FF") == "000000010000000100000000"
    assert cov.tail == [] and cov.last_wal is None


def test_coverage_follows_a_timeline_switch_onto_the_newest_child() -> None:
    # A restore of timeline 1 was promoted inside segment 6 (timeline 2), and a later
    # restore of timeline 2 was promoted inside segment 8 (timeline 3). Timeline 1's
    # segment 6 exists only as .partial, as PostgreSQL archives it.
    base = BaseBackup("s1", "2026-11-27T03:00:00Z", 1, "000000010000000000000003",
                      "000000010000000000000004")
    names = {"000000010000000000000003", "000000010000000000000004",
             "000000010000000000000005", "000000010000000000000006.partial",
             "000000020000000000000006", "000000020000000000000007",
             "000000020000000000000008", "000000030000000000000008",
             "000000030000000000000009", "00000002.history", "00000003.history"}
    switches = {2: parse_history("1\t0/6000123\tno recovery target specified\n"),
                3: parse_history("1\t0/6000123\tno recovery target specified\n"
                                 "# a comment\n2\t0/8000ABC\tbefore 2026-11-28 01:00\n")}
    assert switches[3] == (2, 0x8000ABC)
    [cov] = wal_coverage([base], names, switches)  # type: ignore[arg-type]
    assert cov.complete and cov.last_wal == "000000030000000000000009" and cov.timeline == 3
    assert cov.tail[-3:] == ["000000020000000000000007", "000000030000000000000008",
                             "000000030000000000000009"]
    # Without the history files the run stops where timeline 1 does.
    [cov] = wal_coverage([base], names)
    assert cov.last_wal == "000000010000000000000005" and cov.timeline == 1
    # A switch inside the backup's own WAL range is not followed (it could not be reached).
    early = {2: (1, 0x4000000)}
    [cov] = wal_coverage([base], names, early)
    assert cov.timeline == 1
    assert parse_history("# only comments\n") is None


def test_doctor_advice_for_a_default_server() -> None:
    findings = {f.setting: f for f in judge({
        "wal_level": "replica", "archive_mode": "off", "archive_command": "(disabled)",
        "archive_timeout": "0", "wal_compression": "off", "full_page_writes": "on",
        "max_wal_senders": "10", "data_checksums": "off"})}
    assert findings["wal_level"].ok and findings["full_page_writes"].ok
    assert findings["wal_compression"].ok
    for name in ("archive_mode", "archive_command", "archive_timeout", "data_checksums"):
        assert not findings[name].ok
        assert findings[name].advice.startswith(("set ", "enable "))


@pytest.mark.parametrize(("setting", "value", "words"), [
    ("wal_compression", "zstd", "14-61% more bytes on the link"),
    ("wal_compression", "on", "set wal_compression = off"),
    ("archive_timeout", "10s", "mostly-empty 16 MB segment, 8640 a day"),
    ("archive_timeout", "0", "unarchived forever"),
    ("archive_timeout", "2h", "up to 7200 s of commits unarchived"),
    ("full_page_writes", "off", "torn pages"),
])
def test_doctor_warns_about_what_costs_link_bytes_or_safety(setting: str, value: str,
                                                            words: str) -> None:
    good = {"wal_level": "replica", "archive_mode": "on",
            "archive_command": "drsync wal-push %p", "archive_timeout": "300s",
            "wal_compression": "off", "full_page_writes": "on", "max_wal_senders": "10",
            "data_checksums": "on"}
    assert all(f.ok for f in judge(good))
    [finding] = [f for f in judge({**good, setting: value}) if not f.ok]
    assert finding.setting == setting and words in finding.advice


def test_new_commands_have_help_with_an_example(drsync_bin: str) -> None:
    for command in ("wal-push", "wal-receive", "wal-ship", "wal-fetch", "pitr-range", "doctor"):
        done = subprocess.run([drsync_bin, command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "Example" in done.stdout, command
    done = subprocess.run([drsync_bin, "restore", "--help"], capture_output=True, text=True)
    assert "--pgdata" in done.stdout and "--pg-restore" in done.stdout


def test_ship_goes_through_the_shared_upload_limit(wal: Wal, tmp_path: Path) -> None:
    # The process-wide token bucket (--limit-upload, tested with a virtual clock in
    # tests/store) is what paces wal-ship. Here the cap is one the transfer certainly
    # exceeds without it: about 0.55 MB of sealed WAL at 1 MB/s must take at least
    # (bytes - burst) / rate, about half a second, where an unthrottled local put takes
    # milliseconds. Only a lower bound: a slow machine can never fail it.
    seg = _segment(tmp_path / SEG, size=1 << 20)
    assert wal("wal-push", str(seg)).returncode == 0
    rate, burst = 1e6, 64 * 1024  # "8Mbit"; the burst is max(64 KiB, rate / 20)
    done = wal("--limit-upload", "8Mbit", "wal-ship", "--json")
    assert done.returncode == 0, done.stderr
    shipped = json.loads(done.stdout)
    assert shipped["shipped"] == 1 and shipped["bytes"] > 4 * burst
    assert shipped["duration_s"] >= (shipped["bytes"] - burst) / rate
    bad = wal("--limit-upload", "fast", "wal-ship")
    assert bad.returncode == 2 and "fast" in bad.stderr
