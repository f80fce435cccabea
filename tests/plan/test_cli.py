"""``drsync plan`` through click: JSON parsed, flags checked, files written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drsync.cli import cli
from drsync.errors import ConfigError, UsageError

from .conftest import KYUSHU, TRIAL


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["plan", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


def test_plan_json_has_the_documented_fields() -> None:
    out = run_json(str(KYUSHU))
    assert out["window_s"] == 10800 and out["fits"] == 36 and out["all_fit"] is True
    assert out["unscheduled"] == []
    assert set(out["utilisation"]) == {"miyazaki", "kagoshima"}
    assert 0 < out["makespan_s"] <= 10800
    tenant = out["tenants"][0]
    assert {"name", "link", "start_s", "end_s", "send"} <= set(tenant)
    assert {"from_s", "to_s", "mbit_per_s"} == set(tenant["send"][0])


def test_max_fit_json_trial_numbers() -> None:
    serial = run_json(str(TRIAL), "--max-fit", "Nobeoka", "--strategy", "serial")
    assert (serial["max_tenants"], serial["per_tenant_s"]) == (12, 888.889)
    planned = run_json(str(TRIAL), "--max-fit", "Nobeoka")
    assert {"tenant", "max_tenants", "per_tenant_s", "bound"} <= set(planned)
    assert (planned["tenant"], planned["max_tenants"], planned["bound"]) == ("Nobeoka", 72, 72)
    assert len(planned["schedule"]["tenants"]) == 72


def test_set_changes_the_answer() -> None:
    out = run_json(str(TRIAL), "--max-fit", "Nobeoka", "--set", "link.lgwan.mbit_per_s=3.84")
    assert out["max_tenants"] == int((10800 - 750) / (300 / 9 / 0.48))


def test_tables_for_people() -> None:
    text = run(str(KYUSHU), "--set", "link.kagoshima.mbit_per_s=0.2")
    assert "does not fit" in text and "Kagoshima" in text and "utilisation" in text
    assert "12 tenants like Nobeoka" in run(str(TRIAL), "--max-fit", "Nobeoka",
                                            "--strategy", "serial")
    assert "every night of the 28-night cycle fits" in run(str(KYUSHU), "--cycle")


def test_cycle_json() -> None:
    out = run_json(str(KYUSHU), "--cycle")
    assert out["days"] == 28 and out["fits"] is True and len(out["nights"]) == 28


def test_chart_and_schedule_files(tmp_path: Path) -> None:
    chart, schedule = tmp_path / "n.svg", tmp_path / "s.json"
    run(str(KYUSHU), "--chart", str(chart), "--write-schedule", str(schedule))
    assert chart.stat().st_size > 1000
    doc = json.loads(schedule.read_text())
    assert doc["format"] == "drsync-schedule" and doc["version"] == 1
    assert doc["tenants"]["Miyazaki"]["start"] == "23:00:00"


def test_learn_from_csv(tmp_path: Path) -> None:
    csv = tmp_path / "h.csv"
    csv.write_text("tenant,date,bytes_in,bytes_out,prep_s,send_s\n"
                   "Nobeoka,2024-04-01,600000000,66666667,1500,300\n")
    out = run_json(str(TRIAL), "--learn", str(csv))
    assert out["learned"]["estimates"][0]["overran"] is True
    assert out["tenants"][0]["end_s"] == pytest.approx(1500 + 277.778, abs=0.01)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (["--strategy", "serial"], UsageError, "--strategy goes with --max-fit"),
        (["--max-fit", "Tokyo"], UsageError, "no such tenant"),
        (["--chart", "x.pdf"], UsageError, ".png or .svg"),
        (["--cycle", "--max-fit", "Nobeoka"], UsageError, "one at a time"),
        (["--set", "link.lgwan.colour=red"], UsageError, "unknown key"),
    ],
)
def test_bad_flags(args: list[str], error: type[Exception], match: str) -> None:
    result = CliRunner().invoke(cli, ["plan", str(TRIAL), *args])
    assert isinstance(result.exception, error)
    assert match in str(result.exception)


def test_bad_fleet_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "f.toml"
    bad.write_text("[window]\nminutes = 'long'\n")
    result = CliRunner().invoke(cli, ["plan", str(bad)])
    assert isinstance(result.exception, ConfigError)
    assert "window.minutes" in str(result.exception)


def test_learn_from_the_catalogs_backup_runs(tmp_path: Path) -> None:
    import io

    from drsync.backup import BackupRequest, run_backup
    from drsync.catalog import RunJournal
    from drsync.testing import make_repo, text_like

    catalog = str(tmp_path / "catalog.sqlite")
    repo = make_repo()
    dump = text_like(3_000_000, seed=1)
    result = run_backup(repo, BackupRequest(stdin_name="log", stdin=io.BytesIO(dump),
                                            host="Nobeoka"), catalog=RunJournal(catalog))
    done = CliRunner().invoke(cli, ["--catalog", catalog, "plan", str(TRIAL), "--learn-catalog",
                                    "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    (estimate,) = json.loads(done.output)["learned"]["estimates"]
    assert estimate["tenant"] == "Nobeoka" and estimate["nights"] == 1
    assert estimate["daily_mb"] == pytest.approx(len(dump) / 1e6)
    assert estimate["compression_ratio"] == pytest.approx(len(dump) / result.bytes_added)


def test_learn_from_the_catalog_matches_runs_by_tenant_not_host(tmp_path: Path) -> None:
    """An agent's tenant name is not its machine's host name: an overrun night on record
    under tenant Nobeoka, host vm, is Nobeoka's (runbooks/window-overrun.md step 2)."""
    import io

    from drsync.backup import BackupRequest, run_backup
    from drsync.catalog import RunJournal
    from drsync.errors import RunInterrupted
    from drsync.testing import make_repo, text_like

    catalog = str(tmp_path / "catalog.sqlite")
    repo = make_repo(chunk_avg=64 << 10, chunk_min=16 << 10, chunk_max=256 << 10,
                     pack_size=1 << 20)
    dump = text_like(3_000_000, seed=1)
    run_backup(repo, BackupRequest(stdin_name="log", stdin=io.BytesIO(dump), host="vm",
                                   tenant="Nobeoka"), catalog=RunJournal(catalog))
    with pytest.raises(RunInterrupted):
        run_backup(repo, BackupRequest(stdin_name="log2", stdin=io.BytesIO(dump), host="vm",
                                       tenant="Nobeoka", should_stop=lambda: "deadline"),
                   catalog=RunJournal(catalog))
    done = CliRunner().invoke(cli, ["--catalog", catalog, "plan", str(TRIAL), "--learn-catalog",
                                    "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    learned = json.loads(done.output)["learned"]
    assert learned["unknown_tenants"] == []
    (estimate,) = learned["estimates"]
    assert estimate["tenant"] == "Nobeoka"
    assert (estimate["nights"], estimate["overrun_nights"]) == (1, 1)
