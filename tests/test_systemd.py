"""The systemd units: the agent, WAL streaming per tenant, and the timer kept as the
no-daemon alternative. `systemd-analyze verify` checks them where systemd is
installed (skipped with the reason elsewhere; under CI its absence fails).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
INSTALLED = "/usr/local/bin/drsync"  # where the units expect drsync (README: Installation)


def _directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _sep, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_agent_unit_is_hardened_and_runs_the_agent() -> None:
    agent = _directives(UNITS / "drsync-agent.service")
    assert agent["ExecStart"] == [f"{INSTALLED} agent run --config /etc/drsync/agent.toml"]
    for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                       ("Restart", "on-failure"), ("User", "drsync"),
                       ("EnvironmentFile", "-/etc/drsync/agent.env")):
        assert agent[key] == [value], key
    # Writable: the state directory, the spool and the metrics directory, nothing else.
    assert agent["ReadWritePaths"] == [
        "/var/lib/drsync -/var/spool/drsync -/var/lib/prometheus/node-exporter"]
    assert agent["StateDirectory"] == ["drsync"]
    receive = _directives(UNITS / "drsync-wal-receive@.service")
    assert receive["ExecStart"] == [
        f"{INSTALLED} --config /etc/drsync/%i.toml wal-receive ${{DRSYNC_WAL_DSN}}"]
    assert receive["ProtectSystem"] == ["strict"] and receive["Restart"] == ["on-failure"]
    binlogs = _directives(UNITS / "drsync-binlog-receive@.service")
    assert binlogs["ExecStart"] == [
        f"{INSTALLED} --config /etc/drsync/%i.toml binlog-receive ${{DRSYNC_BINLOG_DSN}} "
        "--defaults-file ${DRSYNC_BINLOG_OPTIONS} --rotate-every 300"]
    assert binlogs["ProtectSystem"] == ["strict"] and binlogs["KillMode"] == ["mixed"]
    timer = _directives(UNITS / "drsync-backup@.timer")
    assert timer["OnCalendar"] == ["*-*-* 00:00:00"]  # the no-daemon alternative stays
    env = (UNITS / "agent.env.example").read_text()
    assert re.search(r"^#DRSYNC_CATALOG=postgresql://", env, re.M)


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        reason = "systemd-analyze is not installed (systemd is not on this machine)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _copies(tmp_path: Path, drsync_bin: str) -> Path:
    """The units with drsync's installed path pointed at this checkout's executable:
    verify checks that every command exists."""
    for unit in UNITS.iterdir():
        text = unit.read_text()
        if unit.suffix == ".service":
            assert INSTALLED in text, unit.name
        (tmp_path / unit.name).write_text(text.replace(INSTALLED, drsync_bin))
    return tmp_path


def _verify(systemd_analyze: str, *units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze, "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=120)


def test_verify_finds_a_misspelt_directive(systemd_analyze: str, tmp_path: Path) -> None:
    """verify says so on stderr (even with exit 0): what the next test relies on."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nProtectSytem=strict\n")
    done = _verify(systemd_analyze, bad)
    assert "ProtectSytem" in done.stderr


def test_units_pass_systemd_analyze_verify(systemd_analyze: str, drsync_bin: str,
                                           tmp_path: Path) -> None:
    units = _copies(tmp_path, drsync_bin)
    done = _verify(systemd_analyze, units / "drsync-agent.service",
                   units / "drsync-wal-receive@Nobeoka.service",
                   units / "drsync-binlog-receive@Nobeoka.service",
                   units / "drsync-backup@registry.service", units / "drsync-backup@registry.timer")
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr
    for name in ("drsync-agent.service", "drsync-wal-receive@.service",
                 "drsync-binlog-receive@.service"):
        score = subprocess.run([systemd_analyze, "security", "--offline=yes", "--no-pager",
                                str(units / name)], capture_output=True, text=True, timeout=120)
        level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", score.stdout)
        assert level is not None, score.stdout[-500:] + score.stderr
        assert float(level.group(1)) <= 4.0, (name, level.group(0))  # systemd's "OK"
