"""wal-ship --continuous rides out a store outage: S3 (moto's server) behind the fault proxy
goes down, the shipper says so and backs off, and ships what waited once the store is back.
The other half: errors that are no store error still end it with their one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from drsync.errors import IntegrityError, WrongKey
from drsync.store import S3Options, StoreOptions
from drsync.testing import make_repository
from tests.store.conftest import AWS_ENV, new_bucket
from tests.store.faultproxy import FaultProxy

SEGS = [f"0000000100000000000000{n:02X}" for n in (0x0A, 0x0B, 0x0C)]


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    fault = FaultProxy((host, port))
    yield fault
    fault.close()
    server.stop()


def _until(what: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        time.sleep(0.1)


def _setup(tmp_path: Path, proxy: FaultProxy) -> tuple[dict[str, str], str, Path]:
    bucket = new_bucket(proxy.url)
    make_repository(f"s3://{bucket}/pg", "pw", tmp_path / "agent.key",
                    options=StoreOptions(s3=S3Options(endpoint_url=proxy.url)))
    config = tmp_path / "s3.toml"
    config.write_text("[store]\nretry_deadline_s = 2\n")
    env = {**os.environ, "DRSYNC_REPO": f"s3://{bucket}/pg", "DRSYNC_CONFIG": str(config),
           "DRSYNC_KEY_FILE": str(tmp_path / "agent.key"),
           "DRSYNC_SPOOL": str(tmp_path / "spool"), "AWS_ENDPOINT_URL": proxy.url}
    return env, bucket, tmp_path / "spool"


def _push(drsync_bin: str, env: dict[str, str], tmp_path: Path, name: str) -> None:
    seg = tmp_path / name
    seg.write_bytes(os.urandom(4096) * 16)
    done = subprocess.run([drsync_bin, "wal-push", str(seg)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _stored(bucket: str, proxy: FaultProxy) -> set[str]:
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
    listing = client.list_objects_v2(Bucket=bucket, Prefix="pg/wal/")
    return {o["Key"].rsplit("/", 1)[1] for o in listing.get("Contents", [])}


def test_continuous_ship_waits_out_a_store_outage_and_ships_what_waited(
        drsync_bin: str, tmp_path: Path, proxy: FaultProxy) -> None:
    env, bucket, spool = _setup(tmp_path, proxy)
    _push(drsync_bin, env, tmp_path, SEGS[0])  # the first push fetches the key wrapping
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        shipper = subprocess.Popen([drsync_bin, "wal-ship", "--continuous", "--interval", "0.2"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        _until(lambda: _stored(bucket, proxy) == {SEGS[0]}, 60, err.read_text)

        proxy.down = True  # the WAN link fails: every connection is reset
        proxy.cut_all()
        for name in SEGS[1:]:
            _push(drsync_bin, env, tmp_path, name)
        _until(lambda: "shipping again in 5 s" in err.read_text(), 60, err.read_text)
        _until(lambda: "shipping again in 10 s" in err.read_text(), 60, err.read_text)
        assert shipper.poll() is None, err.read_text()  # still there, backing off
        lines = err.read_text().splitlines()
        assert len(lines) == 2 and all(line.startswith("drsync: warning: ") for line in lines)
        assert f"2 file(s) wait in spool {spool}" in lines[0]
        assert sorted(n for n in os.listdir(spool) if not n.startswith(".")) == SEGS[1:]

        proxy.heal()
        _until(lambda: _stored(bucket, proxy) == set(SEGS), 60, err.read_text)
        _until(lambda: not [n for n in os.listdir(spool) if not n.startswith(".")], 30,
               err.read_text)
        assert "works again after" in err.read_text().splitlines()[-1]
        assert shipper.poll() is None
    finally:
        shipper.send_signal(signal.SIGTERM)
        code = shipper.wait(timeout=30)
    assert code == 0, err.read_text()


def test_continuous_ship_still_exits_on_a_wrong_key(drsync_bin: str, tmp_path: Path,
                                                    proxy: FaultProxy) -> None:
    env, _, _ = _setup(tmp_path, proxy)
    make_repository(str(tmp_path / "other"), "pw", tmp_path / "other.key")
    env["DRSYNC_KEY_FILE"] = str(tmp_path / "other.key")
    done = subprocess.run([drsync_bin, "wal-ship", "--continuous", "--interval", "0.2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == WrongKey.exit_code
    assert done.stderr.count("\n") == 1 and "wrong key file" in done.stderr


def test_continuous_ship_still_exits_on_a_damaged_spooled_file(drsync_bin: str,
                                                               tmp_path: Path) -> None:
    make_repository(str(tmp_path / "repo"), "pw", tmp_path / "agent.key")
    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"),
           "DRSYNC_KEY_FILE": str(tmp_path / "agent.key"), "DRSYNC_SPOOL": str(tmp_path / "sp")}
    _push(drsync_bin, env, tmp_path, SEGS[0])
    (tmp_path / "sp" / SEGS[1]).write_bytes(b"not a sealed WAL object")
    done = subprocess.run([drsync_bin, "wal-ship", "--continuous", "--interval", "0.2"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == IntegrityError.exit_code
    assert done.stderr.count("\n") == 1 and SEGS[1] in done.stderr


def test_the_shipper_unit_runs_it_continuously_and_restarts_it(tmp_path: Path,
                                                               drsync_bin: str) -> None:
    import shutil

    unit = Path(__file__).resolve().parents[2] / "systemd" / "drsync-wal-ship@.service"
    text = unit.read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert ("ExecStart=/usr/local/bin/drsync --config /etc/drsync/%i.toml wal-ship "
            "--continuous") in lines
    assert "Restart=on-failure" in lines and "ProtectSystem=strict" in lines
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / "drsync-wal-ship@Nobeoka.service"
    copy.write_text(text.replace("/usr/local/bin/drsync", drsync_bin))
    done = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
