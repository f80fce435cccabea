"""Shipped configuration examples load as they are."""

from __future__ import annotations

from pathlib import Path

from drsync.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_agent_example_config_is_valid() -> None:
    settings = load_settings(str(ROOT / "config" / "agent.example.toml"))
    assert settings.repo == "/srv/drsync/secondary-dc/registry"
    assert settings.compression_level == 3 and settings.tags == ["nightly"]
