"""Shipped configuration examples load as they are."""

from __future__ import annotations

from pathlib import Path

from drsync.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_agent_example_config_is_valid() -> None:
    settings = load_settings(str(ROOT / "config" / "agent.example.toml"))
    assert settings.repo == "/srv/drsync/secondary-dc/registry"
    assert settings.compression_level == 3 and settings.tags == ["nightly"]
    from drsync.agent.config import agent_config

    agent = agent_config(settings)
    assert (agent.tenant, agent.ship_wal, agent.rpo_hours) == ("Nobeoka", True, 24.0)
    assert [j.source for j in agent.jobs] == ["sqlite", "pg-dump"]


def test_s3_example_config_is_valid() -> None:
    settings = load_settings(str(ROOT / "config" / "s3.example.toml"))
    assert settings.repo == "s3://dr-backups/registry"
    assert settings.limit_upload == "20Mbit" and settings.object_lock_days == 35
    assert settings.s3_ca_bundle == str(ROOT / "config" / "dc2-ca.pem")
    assert settings.s3_verify_tls is True and settings.connections == 4
