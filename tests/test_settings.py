"""The settings model: TOML in, one clear error per problem, paths relative to the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from drsync.errors import ConfigError
from drsync.settings import Settings, load_settings


def test_full_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        'repo = "file:///srv/dr/tenant"\nkey_file = "tenant.key"\n'
        'catalog = "postgresql://catalog/drsync"\nhost = "registry-db"\n'
        '[backup]\ncompression_level = 6\nworkers = 2\ntags = ["nightly"]\n'
        '[init]\nchunk_avg_kib = 512\npack_size_mib = 32\n'
    )
    s = load_settings(str(cfg))
    assert s.repo == "file:///srv/dr/tenant"
    assert s.key_file == str(tmp_path / "tenant.key")  # relative to the config file
    assert s.catalog == "postgresql://catalog/drsync"
    assert (s.compression_level, s.workers, s.tags) == (6, 2, ["nightly"])
    assert (s.chunk_avg_kib, s.pack_size_mib) == (512, 32)


def test_flags_override_file_but_none_does_not() -> None:
    s = Settings(repo="a", compression_level=3).override(repo="b", compression_level=None)
    assert (s.repo, s.compression_level) == ("b", 3)


@pytest.mark.parametrize(("text", "message"), [
    ('repo = 3\n', "key 'repo' must be a string"),
    ('colour = "blue"\n', "unknown key 'colour'"),
    ('[backup]\nlevel = 3\n', "unknown key 'backup.level'"),
    ('[backup]\ncompression_level = true\n', "'backup.compression_level' must be an integer"),
    ('[backup]\ntags = "nightly"\n', "'backup.tags' must be a list of strings"),
    ('[init]\npack_size_mib = -1\n', "'init.pack_size_mib' must not be negative"),
    ('[nonsense]\nx = 1\n', "unknown key 'nonsense'"),
    ('repo = \n', "not valid TOML"),
])
def test_each_problem_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg))
    assert message in str(info.value) and str(cfg) in str(info.value)
