"""The settings model: TOML in, one clear error per problem, paths relative to the file;
resolve() layering flags, environment, config file and defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import drsync.settings
from drsync.errors import ConfigError
from drsync.settings import CONFIG_ENV, ENVIRONMENT, Settings, load_settings, resolve


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
    ('[backup]\ncompression_level = 99\n', "'backup.compression_level' must be 0..22 (got 99)"),
    ('[backup]\nworkers = 0\n', "'backup.workers' must be 1..64 (got 0)"),
    ('[store]\nconnections = 0\n', "'store.connections' must be 1..64 (got 0)"),
    ('[s3]\naddressing_style = "pathy"\n',
     "'s3.addressing_style' must be auto or path or virtual (got 'pathy')"),
    ('[s3]\nconditional_writes = "maybe"\n', "'s3.conditional_writes' must be auto or on or off"),
    ('[s3]\nobject_lock_mode = "strict"\n',
     "'s3.object_lock_mode' must be compliance or governance (got 'strict')"),
    ('[s3]\nendpoint_url = "127.0.0.1:5847"\n',
     "'s3.endpoint_url': must be http://HOST[:PORT] or https://HOST[:PORT], got '127.0.0.1:5847'"),
    ('[s3]\nendpoint_url = ""\n', "'s3.endpoint_url': must be http://HOST[:PORT]"),
    ('[s3]\nendpoint_url = "http://"\n', "'s3.endpoint_url': must be http://HOST[:PORT]"),
    ('[s3]\nendpoint_url = "http://127.0.0.1:notaport"\n', "'s3.endpoint_url': not a valid URL"),
    # A scheme without its '//' would be a relative directory: backups kept on this disk.
    ('repo = "s3:/dr-backups/registry"\n', "key 'repo': repository URL 's3:/dr-backups/registry' "
     "is not a URL (a scheme needs '://') nor a local path meant as one; did you mean "
     "'s3://dr-backups/registry'?"),
    ('repo = "s3:dr-backups/x"\n', "did you mean 's3://dr-backups/x'?"),
    ('repo = "file:/srv/dc2"\n', "did you mean 'file:///srv/dc2'?"),
    ('[retention]\nkeep_tags = [""]\n', "key 'retention.keep_tags': an empty tag"),
    # A catalog that can never be opened is found now, not by the first `runs` weeks later.
    ('catalog = "sqlite:/var/lib/drsync/catalog.sqlite"\n',
     "key 'catalog': catalog 'sqlite:/var/lib/drsync/catalog.sqlite' is not a URL (a scheme "
     "needs '://') nor a SQLite path meant as one; did you mean "
     "'sqlite:////var/lib/drsync/catalog.sqlite'?"),
    ('catalog = "postgresql:drsync@dc2/drsync"\n', "did you mean 'postgresql://drsync@dc2/drsync'?"),
    ('catalog = "sqlite://"\n', "an in-memory SQLite catalog keeps nothing"),
    ('catalog = "mysql://drsync@dc2/drsync"\n',
     "key 'catalog': catalog 'mysql://drsync@dc2/drsync': its database driver is not installed "
     "(MySQLdb); drsync comes with SQLite and PostgreSQL (psycopg)"),
    ('catalog = "postgresq://drsync@dc2/drsync"\n', "not a database URL drsync can open"),
    # Found when the store opened, as exit 2 or 14 without the file or key (edge hunt).
    ('[s3]\nobject_lock_mode = "governance"\n',
     "key 's3.object_lock_mode' needs 's3.object_lock_days' (the retention, at least 1 day)"),
    ('[s3]\nregion = "not a region!"\n', "key 's3.region' must be a region name such as "
     "us-east-1 (letters, digits and '-'; got 'not a region!')"),
    ('repo = "s3://dr-backups/uni/市町村"\n', "key 'repo': S3 URL 's3://dr-backups/uni/市町村': "
     "the prefix 'uni/市町村' is not a valid key ('/'-separated names of ASCII letters, digits, "
     "'.', '_' and '-', none starting with '.')"),
    ('repo = "s3://DR_Backups/x"\n', "'DR_Backups' is not a valid bucket name (3 to 63"),
])
def test_each_problem_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg))
    assert message in str(info.value) and str(cfg) in str(info.value)


def test_a_missing_ca_bundle_is_named_when_the_store_opens(tmp_path: Path) -> None:
    from drsync.settings import store_options

    cfg = tmp_path / "tenant.toml"
    cfg.write_text('repo = "s3://dr-backups/registry"\n[s3]\nca_bundle = "dc2-ca.pem"\n')
    settings = load_settings(str(cfg))  # an example may name one not made yet
    with pytest.raises(ConfigError) as info:
        store_options(settings)
    assert str(info.value) == (f"config file {cfg}: key 's3.ca_bundle': {tmp_path / 'dc2-ca.pem'}"
                               " does not exist (the PEM file of the CA that signed the "
                               "endpoint's certificate)")
    (tmp_path / "dc2-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert store_options(settings).s3.ca_bundle == str(tmp_path / "dc2-ca.pem")


def test_a_repository_url_typo_from_a_flag_is_refused_too() -> None:
    from drsync.errors import UsageError
    from drsync.store import open_store

    with pytest.raises(UsageError, match="did you mean 's3://dr-backups/registry'"):
        open_store("s3:/dr-backups/registry")
    assert open_store("backups:2026").url.endswith("backups:2026")  # no scheme of a store


def test_a_config_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    cfg = tmp_path / "notepad.toml"
    cfg.write_bytes("\ufeffrepo = \"/srv/dc2\"\n".encode())
    assert load_settings(str(cfg)).repo == "/srv/dc2"


def test_an_unreadable_config_is_one_line_exit_4(drsync_bin: str, tmp_path: Path) -> None:
    import subprocess

    for args in (["--config", str(tmp_path)], ["catalog", "rebuild", "--config", str(tmp_path)]):
        done = subprocess.run([drsync_bin, *args] + (["snapshots"] if len(args) == 2 else []),
                              capture_output=True, text=True)
        assert done.returncode == 4, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"drsync: error: cannot read config file {tmp_path}: Is a directory"]


# -- resolve(): flags, environment, config file, defaults ------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("variable", sorted(ENVIRONMENT))
def test_each_environment_variable_is_honoured_and_a_flag_beats_it(
        variable: str, tmp_path: Path) -> None:
    name = ENVIRONMENT[variable]
    value = "20Mbit" if "LIMIT" in variable else str(tmp_path / "from-env")
    assert getattr(resolve(None, {}, {variable: value}), name) == value
    assert getattr(resolve(None, {name: "flag"}, {variable: value}), name) == "flag"
    # An empty variable counts as unset, as it always did.
    assert getattr(resolve(None, {}, {variable: ""}), name) == getattr(resolve(None, {}, {}),
                                                                       name)


def test_environment_beats_the_config_file_which_beats_the_default(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('repo = "from-file"\ncatalog = "cat.sqlite"\n[wal]\nspool = "sp"\n'
                   '[store]\nlimit_upload = "1Mbit"\n')
    s = resolve(str(cfg), {}, {"DRSYNC_REPO": "from-env"})
    assert (s.repo, s.catalog, s.spool, s.limit_upload) == (
        "from-env", str(tmp_path / "cat.sqlite"), str(tmp_path / "sp"), "1Mbit")
    assert s.source == str(cfg)
    s = resolve(str(cfg), {"repo": "from-flag", "spool": None}, {"DRSYNC_REPO": "from-env"})
    assert (s.repo, s.spool) == ("from-flag", str(tmp_path / "sp"))


def test_config_comes_from_the_flag_else_drsync_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('host = "a"\n')
    b.write_text('host = "b"\n')
    assert resolve(None, {}, {CONFIG_ENV: str(b)}).host == "b"
    assert resolve(str(a), {}, {CONFIG_ENV: str(b)}).host == "a"
    assert resolve(None, {}, {CONFIG_ENV: ""}).source == ""


def test_defaults_live_under_the_state_directory(tmp_path: Path) -> None:
    s = resolve(None, {"repo": "/srv/dr/t"}, {"XDG_STATE_HOME": str(tmp_path / "xdg")})
    state = tmp_path / "xdg" / "drsync"
    assert s.state_dir == str(state)
    assert s.catalog == str(state / "catalog.sqlite")
    assert s.s3_spool_dir == str(state / "s3-spool")
    assert Path(s.wal_spool()).parent == state / "wal-spool"
    s = resolve(None, {}, {"HOME": str(tmp_path / "home")})
    assert s.state_dir == str(tmp_path / "home" / ".local" / "state" / "drsync")


def test_the_passphrase_is_never_in_the_settings_repr() -> None:
    s = resolve(None, {}, {"DRSYNC_PASSWORD": "s3cret-passphrase"})
    assert s.password == "s3cret-passphrase" and "s3cret" not in repr(s)


def test_every_key_and_variable_is_documented_where_users_read(tmp_path: Path) -> None:
    """The settings docstring lists every config key and environment variable; the README
    names every variable."""
    from drsync.settings import _SCHEMA

    doc = drsync.settings.__doc__ or ""
    readme = README.read_text()
    for variable in [*ENVIRONMENT, CONFIG_ENV]:
        assert variable in doc and variable in readme, variable
    for section, keys in _SCHEMA.items():
        for key in keys:
            line = next((ln for ln in doc.splitlines() if ln.strip().startswith(f"{key} =")),
                        None)
            assert line is not None, f"{section}.{key}"
        if section:
            assert f"[{section}]" in doc


def test_a_config_file_that_is_not_utf8_is_one_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('host = "Nobeoka-shi \u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg))
    assert str(cfg) in str(info.value) and "UTF-8" in str(info.value)
    done = subprocess.run([sys.executable, "-c", "from drsync.cli import main; main()",
                           "--config", str(cfg), "snapshots"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [f"drsync: error: {info.value}"]


def test_the_base_backup_method_from_file_environment_and_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[backup]\npg_base_method = "stream"\npg_base_reread = true\n')
    s = resolve(str(cfg), {}, {})
    assert (s.pg_base_method, s.pg_base_reread) == ("stream", True)
    s = resolve(str(cfg), {}, {"DRSYNC_PG_BASE_METHOD": "direct"})
    assert s.pg_base_method == "direct"
    s = resolve(str(cfg), {"pg_base_method": "auto", "pg_base_reread": None}, {})
    assert (s.pg_base_method, s.pg_base_reread) == ("auto", True)
    assert resolve(None, {}, {}).pg_base_method == "auto"


def test_an_unknown_base_backup_method_is_one_usage_error() -> None:
    from drsync.backup import BackupRequest
    from drsync.errors import UsageError

    with pytest.raises(UsageError, match="pg_base_method must be auto, direct or stream"):
        BackupRequest(pg_base="dbname=x", pg_base_method="rsync").kind()


def test_the_secret_comes_whole_from_the_highest_layer_that_gives_one(tmp_path: Path) -> None:
    cfg = tmp_path / "tenant.toml"
    cfg.write_text('key_file = "agent.key"\npassword_file = "registry.pass"\n')
    kf, pf = str(tmp_path / "agent.key"), str(tmp_path / "registry.pass")
    assert (resolve(str(cfg), {}, {}).key_file, resolve(str(cfg), {}, {}).password_file) == (
        kf, pf)
    # A passphrase file on the command line is used: not passed over for the file's key.
    flag = resolve(str(cfg), {"password_file": "/tmp/wrong.pass"}, {})
    assert (flag.key_file, flag.password_file) == (None, "/tmp/wrong.pass")
    # DRSYNC_PASSWORD beats the file's password_file and key_file...
    env = resolve(str(cfg), {}, {"DRSYNC_PASSWORD": "typed"})
    assert (env.key_file, env.password_file, env.password) == (None, None, "typed")
    # ...and a flag beats the environment's secret as a whole.
    both = resolve(str(cfg), {"key_file": "/k"}, {"DRSYNC_PASSWORD": "typed"})
    assert (both.key_file, both.password_file, both.password) == ("/k", None, None)


def test_a_catalog_typo_from_the_environment_stops_the_backup_before_it_starts(
        drsync_bin: str, tmp_path: Path) -> None:
    """A backup only appends to the run journal: a catalog that can never be opened was
    unnoticed (and ``sqlite:/x`` made a directory named ``sqlite:`` wherever it ran)."""
    import os

    env = {**os.environ, "DRSYNC_REPO": str(tmp_path / "repo"), "DRSYNC_PASSWORD": "pw",
           "DRSYNC_CATALOG": str(tmp_path / "catalog.sqlite")}
    subprocess.run([drsync_bin, "init"], env=env, check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    for catalog, exit_code in (("sqlite:/srv/catalog.sqlite", 2), ("mysql://dc2/drsync", 2)):
        done = subprocess.run([drsync_bin, "backup", "--stdin-name", "x"], input=b"rows\n",
                              env={**env, "DRSYNC_CATALOG": catalog}, cwd=work,
                              capture_output=True)
        lines = done.stderr.decode().splitlines()
        assert done.returncode == exit_code and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"drsync: error: catalog {catalog!r}")
    assert list(work.iterdir()) == []
    listed = subprocess.run([drsync_bin, "snapshots", "--json"], env=env, check=True,
                            capture_output=True)
    assert listed.stdout.strip() == b"[]"  # nothing was backed up into a lost catalog
