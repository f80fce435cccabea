"""wal-push through drsync.entry (no click) behaves exactly like the click command.

Each case runs twice from identical fresh state: once through the console
entry point (``drsync.entry.main``, the fast path where it applies) and once
through ``drsync.cli.main`` (always click). Exit code, standard error and
the resulting spool must be the same; the table also says which cases the
fast path takes (click never imported) and which it hands to click.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drsync.testing import make_repository

SEG = "000000010000000000000003"
RUNNER = """
import sys
from {module} import main
try:
    main()
finally:
    open({mark!r}, "w").write(str("click" in sys.modules))
"""

# (id, argv after "wal-push", extra environment, expected exit, fast path taken)
CASES = [
    ("env only", ["{seg}"], {}, 0, True),
    ("config before", ["--config", "{cfg}", "{seg}"], {"DRSYNC_SPOOL": "", "DRSYNC_KEY_FILE": ""},
     0, True),
    ("config after", ["{seg}", "--config", "{cfg}"], {"DRSYNC_SPOOL": ""}, 0, True),
    ("config equals", ["--config={cfg}", "{seg}"], {"DRSYNC_SPOOL": ""}, 0, True),
    ("spool option", ["--spool", "{dir}/spool", "{seg}"], {"DRSYNC_SPOOL": "{dir}/elsewhere"},
     0, True),
    ("subcommand config wins", ["--config", "{cfg}", "{seg}"],
     {"DRSYNC_CONFIG": "{dir}/absent.toml", "DRSYNC_SPOOL": ""}, 0, True),
    ("env config", ["{seg}"], {"DRSYNC_CONFIG": "{cfg}", "DRSYNC_SPOOL": ""}, 0, True),
    ("after double dash", ["--", "{seg}"], {}, 0, True),
    ("same content again", ["{dup}"], {}, 0, True),
    ("different content", ["{conflict}"], {}, 20, True),
    ("absent config", ["--config", "{dir}/absent.toml", "{seg}"], {}, 4, True),
    ("absent env config", ["{seg}"], {"DRSYNC_CONFIG": "{dir}/absent.toml"}, 4, True),
    ("absent key file", ["{seg}"], {"DRSYNC_KEY_FILE": "{dir}/absent.key"}, 4, True),
    ("absent segment", ["{dir}/000000010000000000000009"], {}, 15, True),
    ("not a WAL name", ["{dir}/notwal"], {}, 15, True),
    ("segment is a directory", ["{dir}/000000010000000000000005"], {}, 2, False),
    ("spool is a file", ["--spool", "{dir}/notwal", "{seg}"], {}, 2, False),
    ("no path", [], {}, 2, False),
    ("two paths", ["{seg}", "{seg}"], {}, 2, False),
    ("missing option value", ["{seg}", "--spool"], {}, 2, False),
    ("unknown option", ["--fast", "{seg}"], {}, 2, False),
    ("help", ["--help"], {}, 0, False),
    ("json", ["--json", "{seg}"], {}, 0, False),
    ("passphrase, no key file", ["{seg}"],
     {"DRSYNC_KEY_FILE": "", "DRSYNC_PASSWORD": "pw"}, 0, False),
    ("first push of a spool", ["--spool", "{dir}/fresh", "{seg}"], {}, 0, True),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository, a key file, a config, a spool whose key wrapping is cached."""
    base = tmp_path_factory.mktemp("fast")
    env = {**os.environ, "DRSYNC_REPO": str(base / "repo")}
    drsync = [sys.executable, "-c", "from drsync.cli import main; main()"]
    make_repository(str(base / "repo"), "pw", base / "agent.key")
    (base / SEG).write_bytes(os.urandom(4096) + bytes(1 << 20))
    (base / "dup").mkdir()
    (base / "dup" / "000000010000000000000002").write_bytes(b"same" * 1000)
    (base / "conflict").mkdir()
    (base / "conflict" / "000000010000000000000002").write_bytes(b"other" * 1000)
    (base / "notwal").write_bytes(b"x")
    (base / "000000010000000000000005").mkdir()
    (base / "agent.toml").write_text('key_file = "agent.key"\n[wal]\nspool = "spool"\n')
    subprocess.run([*drsync, "wal-push", str(base / "dup" / "000000010000000000000002")],
                   env={**env, "DRSYNC_KEY_FILE": str(base / "agent.key"),
                        "DRSYNC_SPOOL": str(base / "spool")}, check=True, capture_output=True)
    assert [p.name for p in (base / "spool").iterdir() if p.name.startswith(".key-")]
    return base


def _run(template: Path, work: Path, module: str, argv: list[str],
         env: dict[str, str]) -> tuple[int, str, list[str], bool]:
    shutil.copytree(template, work, symlinks=True)
    mark = work / "click-imported"
    fill = {"seg": str(work / SEG), "cfg": str(work / "agent.toml"), "dir": str(work),
            "dup": str(work / "dup" / "000000010000000000000002"),
            "conflict": str(work / "conflict" / "000000010000000000000002")}
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("DRSYNC_")},
            "DRSYNC_REPO": str(work / "repo"), "DRSYNC_KEY_FILE": str(work / "agent.key"),
            "DRSYNC_SPOOL": str(work / "spool"),
            **{k: v.format(**fill) for k, v in env.items()}}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(module=module, mark=str(mark)), "wal-push",
         *(a.format(**fill) for a in argv)],
        env=full, capture_output=True, text=True, timeout=60, cwd=work)
    spooled = sorted(str(p.relative_to(work)) for p in work.rglob("0000000*")
                     if "spool" in p.parts or "fresh" in p.parts)
    stderr = done.stderr.replace(str(work), "<dir>")
    return done.returncode, stderr, spooled, mark.read_text() == "False"


@pytest.mark.parametrize(("argv", "env", "code", "fast"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fast_path_matches_click(template: Path, tmp_path: Path, argv: list[str],
                                 env: dict[str, str], code: int, fast: bool) -> None:
    entry = _run(template, tmp_path / "entry", "drsync.entry", argv, env)
    click = _run(template, tmp_path / "click", "drsync.cli", argv, env)
    assert entry[:3] == click[:3]
    assert entry[0] == code, entry[1]
    assert entry[3] is fast
    assert click[3] is False
    if code not in (0, 2):
        assert len(entry[1].strip().splitlines()) == 1 and entry[1].startswith("drsync: error:")
