"""`[agent] schedule = "s3://bucket/key"`: the schedule the planner's side published in the
store, read with the config file's own store settings (no AWS variable needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest

from drsync.agent.config import agent_config, tenant_slot
from drsync.errors import ConfigError
from drsync.settings import resolve
from tests.agent.conftest import Tenant


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


def _config(tmp_path: Path, endpoint: str, schedule: str) -> Path:
    creds = tmp_path / "s3.credentials"
    creds.write_text("[planner]\naws_access_key_id = AKIDPLANNER\n"
                     "aws_secret_access_key = planner-secret\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'repo = "{tmp_path / "repo"}"\n'
        f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
        f'credentials_file = "{creds}"\nprofile = "planner"\naddressing_style = "path"\n'
        f'[agent]\ntenant = "Nobeoka"\nschedule = "{schedule}"\nship_wal = true\n')
    return config


def test_an_s3_schedule_is_read_with_the_configs_store_settings(
        tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    local = Tenant(tmp_path / "planner")
    local.write_schedule(opens_in_s=60, start_s=12.0, end_s=40.0, deadline_s=90.0,
                         sends=[(12.0, 40.0, 1.5)], max_mbit=3.0)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="a", aws_secret_access_key="b")
    client.create_bucket(Bucket="dc2-plans")
    client.put_object(Bucket="dc2-plans", Key="tonight/schedule.json",
                      Body=local.schedule.read_bytes())
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    config = _config(tmp_path, endpoint, "s3://dc2-plans/tonight/schedule.json")
    slot = tenant_slot(agent_config(resolve(str(config), {}, {})))
    doc = json.loads(local.schedule.read_text())["tenants"]["Nobeoka"]
    assert (slot.start_s, slot.end_s, slot.deadline_s, slot.max_mbit_per_s) == \
        (doc["start_s"], doc["end_s"], doc["deadline_s"], doc["max_mbit_per_s"])
    assert [(s.from_s, s.to_s, s.mbit_per_s) for s in slot.sends] == [(12.0, 40.0, 1.5)]

    missing = _config(tmp_path, endpoint, "s3://dc2-plans/tonight/none.json")
    with pytest.raises(ConfigError, match=r"s3://dc2-plans/tonight/none.json: schedule file "
                                          r"not found"):
        tenant_slot(agent_config(resolve(str(missing), {}, {})))
    client.put_object(Bucket="dc2-plans", Key="tonight/bad.json", Body=b'{"format": "x"}')
    bad = _config(tmp_path, endpoint, "s3://dc2-plans/tonight/bad.json")
    with pytest.raises(ConfigError, match=r"^s3://dc2-plans/tonight/bad.json: "):
        tenant_slot(agent_config(resolve(str(bad), {}, {})))
