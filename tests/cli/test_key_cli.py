"""`drsync key ...` end to end: list, add, remove, passwd, escrow and recovery."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from drsync.testing import make_repository
from tests.cli.test_cli import Cli, _error_line


@pytest.fixture
def cli(drsync_bin: str, tmp_path: Path) -> Cli:
    """A repository with a passphrase (DRSYNC_PASSWORD) and the key file agent.key."""
    make_repository(str(tmp_path / "repo"), "correct horse", tmp_path / "agent.key")
    return Cli(drsync_bin, tmp_path)


def _keys(cli: Cli, *args: str) -> list[dict[str, object]]:
    doc = cli.json("key", "list", *args)
    assert isinstance(doc, dict)
    return list(doc["keys"])


def _restore(cli: Cli, target: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return cli(*args, "restore", "latest", "--target", str(target))


def test_list_add_remove(cli: Cli, tmp_path: Path) -> None:
    keys = _keys(cli)
    assert sorted(k["kind"] for k in keys) == ["keyfile", "passphrase"]
    assert all(k["created"] and k["host"] for k in keys)
    assert [k["kind"] for k in keys if k["in_use"]] == ["passphrase"]  # opened by DRSYNC_PASSWORD
    agent_id = next(k["id"] for k in keys if k["kind"] == "keyfile")
    pass_id = next(k["id"] for k in keys if k["kind"] == "passphrase")

    cli("key", "add", "--new-key-file", str(tmp_path / "second.key"))
    assert stat.S_IMODE((tmp_path / "second.key").stat().st_mode) == 0o600
    assert len(_keys(cli)) == 3
    cli("--key-file", str(tmp_path / "second.key"), "snapshots")

    cli("key", "remove", str(agent_id))
    done = cli("--key-file", str(tmp_path / "agent.key"), "snapshots", ok=False)
    assert done.returncode == 11 and "wrong key file" in _error_line(done)

    refused = cli("key", "remove", str(pass_id), ok=False)
    assert refused.returncode == 2 and "in use" in _error_line(refused)
    # Opened by the second key file, removing the passphrase is fine; then the key file in
    # use is the last tenant key and stays, even with --force.
    by_second = ("--key-file", str(tmp_path / "second.key"))
    cli(*by_second, "key", "remove", str(pass_id)[:6])
    remaining = json.loads(cli(*by_second, "key", "list", "--json").stdout)["keys"]
    assert [k["kind"] for k in remaining] == ["keyfile"]
    last = cli(*by_second, "key", "remove", "--force", str(remaining[0]["id"]), ok=False)
    assert last.returncode == 2 and "last passphrase or key file" in _error_line(last)
    cli(*by_second, "snapshots")


def test_passwd_replaces_the_passphrase(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "new.pw").write_text("new battery staple\n")
    before = {k["id"] for k in _keys(cli) if k["kind"] == "passphrase"}
    cli("key", "passwd", "--new-password-file", str(tmp_path / "new.pw"))
    old = cli("snapshots", ok=False)
    assert old.returncode == 11 and "wrong passphrase" in _error_line(old)
    new_env = {"DRSYNC_PASSWORD": "new battery staple"}
    after = {k["id"] for k in json.loads(cli("key", "list", "--json", env=new_env).stdout)["keys"]
             if k["kind"] == "passphrase"}
    assert len(after) == 1 and after.isdisjoint(before)
    by_file = cli("--key-file", str(tmp_path / "agent.key"), "key", "passwd",
                  "--new-password-file", str(tmp_path / "new.pw"), ok=False)
    assert by_file.returncode == 2


def test_escrow_recovers_a_tenant_whose_keys_are_lost(drsync_bin: str, tmp_path: Path) -> None:
    op = Cli(drsync_bin, tmp_path / "operator")
    (tmp_path / "operator").mkdir()
    gen = json.loads(op("key", "gen-escrow", "--out", str(tmp_path / "operator"), "--json").stdout)
    escrow_key, escrow_pub = Path(gen["private"]), Path(gen["public"])
    assert stat.S_IMODE(escrow_key.stat().st_mode) == 0o600
    again = op("key", "gen-escrow", "--out", str(tmp_path / "operator"), ok=False)
    assert again.returncode == 4 and "already exists" in _error_line(again)

    tenant = Cli(drsync_bin, tmp_path)
    tenant.env["DRSYNC_PASSWORD"] = "forgotten at the town hall"
    tenant("init", "--escrow-pubkey", str(escrow_pub), "--new-key-file",
           str(tmp_path / "tenant.key"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "registry.csv").write_bytes(b"resident,address\n" * 5000 + bytes(range(256)))
    tenant("--key-file", str(tmp_path / "tenant.key"), "backup", str(data))
    kinds = sorted(k["kind"] for k in json.loads(tenant("--key-file", str(tmp_path / "tenant.key"),
                                                         "key", "list", "--json").stdout)["keys"])
    assert kinds == ["escrow", "keyfile", "passphrase"]

    # Every key is lost: the key file deleted, the passphrase forgotten.
    (tmp_path / "tenant.key").unlink()
    lost = Cli(drsync_bin, tmp_path)
    lost.env["DRSYNC_PASSWORD"] = "a guess"
    assert lost("snapshots", ok=False).returncode == 11

    other = tmp_path / "other-operator"
    other.mkdir()
    op("key", "gen-escrow", "--out", str(other))
    wrong = lost("key", "recover", "--escrow-key", str(other / "escrow.key"),
                 "--new-key-file", str(tmp_path / "recovered.key"), ok=False)
    assert wrong.returncode == 11 and "opens no wrapping" in _error_line(wrong)
    assert not (tmp_path / "recovered.key").exists()
    # The escrow private key is no key file either.
    as_key_file = lost("--key-file", str(escrow_key), "snapshots", ok=False)
    assert as_key_file.returncode == 4

    lost("key", "recover", "--escrow-key", str(escrow_key),
         "--new-key-file", str(tmp_path / "recovered.key"))
    _restore(lost, tmp_path / "out", "--key-file", str(tmp_path / "recovered.key"))
    restored = next((tmp_path / "out").rglob("registry.csv"))
    assert restored.read_bytes() == (data / "registry.csv").read_bytes()


def test_rotate_then_back_up_more_and_restore_both(cli: Cli, tmp_path: Path) -> None:
    agent = ("--key-file", str(tmp_path / "agent.key"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "tax.csv").write_bytes(b"household,premium\n" * 20000)
    cli(*agent, "backup", str(data))
    refused = cli(*agent, "key", "rotate", ok=False)  # the passphrase cannot be re-wrapped
    assert refused.returncode == 2 and "--key-file-also" in _error_line(refused)
    done = json.loads(cli("key", "rotate", "--key-file-also", str(tmp_path / "agent.key"),
                          "--json").stdout)
    assert (done["previous"], done["generation"]) == (0, 1) and done["removed"] == []
    first = (data / "tax.csv").read_bytes()
    (data / "tax.csv").write_bytes(first + b"new household,0\n" * 100)
    cli(*agent, "backup", str(data))
    assert {k["generation"] for k in _keys(cli)} == {1}
    snaps = json.loads(cli(*agent, "snapshots", "--json").stdout)
    ids = [s["id"] for s in (snaps["snapshots"] if isinstance(snaps, dict) else snaps)]
    assert len(ids) == 2
    wanted = (first, (data / "tax.csv").read_bytes())
    for n, (snap_id, want) in enumerate(zip(ids, wanted, strict=True)):
        for who in ((), agent):
            out = tmp_path / f"out-{n}-{len(who)}"
            cli(*who, "restore", snap_id, "--target", str(out))
            assert next(out.rglob("tax.csv")).read_bytes() == want


def test_rotate_reencrypt_and_resume(cli: Cli, tmp_path: Path) -> None:
    agent = ("--key-file", str(tmp_path / "agent.key"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "premium.bin").write_bytes(os.urandom(3 << 20))
    cli(*agent, "backup", str(data))
    usage = cli(*agent, "key", "rotate", "--resume", ok=False)
    assert usage.returncode == 2 and "--reencrypt" in _error_line(usage)
    done = json.loads(cli("key", "rotate", "--key-file-also", str(tmp_path / "agent.key"),
                          "--reencrypt", "--json").stdout)
    assert done["generation"] == 1 and done["reencrypt"]["packs_rewritten"] >= 1
    again = json.loads(cli(*agent, "key", "rotate", "--reencrypt", "--resume", "--json").stdout)
    assert again["reencrypt"]["packs_rewritten"] == 0 and "generation" not in again
    cli(*agent, "restore", "latest", "--target", str(tmp_path / "out"))
    assert next((tmp_path / "out").rglob("premium.bin")).read_bytes() == \
        (data / "premium.bin").read_bytes()
    assert cli(*agent, "check", "--read-data").returncode == 0


def test_wal_sealed_after_a_rotation_is_fetched_and_pushed_at_the_new_generation(
        cli: Cli, tmp_path: Path) -> None:
    """The spool caches the key file's wrapping (wal-push reads no store). After `key rotate
    --reencrypt` the cached copy was of the retired generation: wal-fetch of the rewritten
    WAL failed (exit 13, PostgreSQL's recovery stopped), and every later push sealed with
    the retired key. Found by an edge hunt."""
    agent = ("--key-file", str(tmp_path / "agent.key"))
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    first, second = "000000010000000000000001", "000000010000000000000002"
    wal = tmp_path / "pg_wal"
    wal.mkdir()
    (wal / first).write_bytes(os.urandom(1 << 20))
    (wal / second).write_bytes(os.urandom(1 << 20))
    cli(*agent, "wal-push", str(wal / first), env=env)
    cli(*agent, "wal-ship", env=env)
    cached = next((tmp_path / "state").rglob(".key-*"))
    retired = cached.read_bytes()
    cli(*agent, "key", "rotate", "--remove-others", "--reencrypt", env=env)
    fetched = cli(*agent, "wal-fetch", first, str(tmp_path / "restored"), env=env)
    assert (tmp_path / "restored").read_bytes() == (wal / first).read_bytes(), fetched.stderr
    assert cached.read_bytes() == retired  # wal-fetch never writes the spool
    shipped = cli(*agent, "wal-ship", env=env)
    assert "predated a key rotation: replaced" in shipped.stderr.decode()
    store_copy = next((tmp_path / "repo" / "keys").iterdir()).read_bytes()
    assert cached.read_bytes() == store_copy != retired
    cli(*agent, "wal-push", str(wal / second), env=env)
    cli(*agent, "wal-ship", env=env)
    # Sealed at the new generation: a repository opened whole reads it, and so does a
    # fresh host that knows only the current wrapping.
    fresh = {"XDG_STATE_HOME": str(tmp_path / "other-host")}
    cli(*agent, "wal-fetch", second, str(tmp_path / "second"), env=fresh)
    assert (tmp_path / "second").read_bytes() == (wal / second).read_bytes()
    assert "predated" not in cli(*agent, "wal-ship", env=env).stderr.decode()


def test_wal_push_with_another_repositorys_key_file_is_a_wrong_key(cli: Cli,
                                                                   tmp_path: Path) -> None:
    """It was exit 10 ("no repository") with "no key ... in repository", where snapshots
    and wal-ship say exit 11, wrong key file. Found by an edge hunt."""
    make_repository(str(tmp_path / "other"), "pw", tmp_path / "other.key")
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(os.urandom(1 << 16))
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    done = cli("--key-file", str(tmp_path / "other.key"), "wal-push", str(segment), env=env,
               ok=False)
    assert done.returncode == 11, done.stderr
    assert "wrong key file" in _error_line(done) or "opens no wrapping" in _error_line(done)


def test_recovering_with_an_escrow_wrapping_older_than_the_repository_warns(
        drsync_bin: str, tmp_path: Path) -> None:
    """A rotation cut short before it re-wrapped the escrow key leaves the escrow at the
    older generation: `key recover` said "recovered" and issued a key file that cannot
    read what was sealed since. Found by an edge hunt."""
    op = Cli(drsync_bin, tmp_path)
    gen = json.loads(op("key", "gen-escrow", "--out", str(tmp_path / "op"), "--json").stdout)
    op("init", "--escrow-pubkey", gen["public"], "--new-key-file", str(tmp_path / "t.key"))
    keys = tmp_path / "repo" / "keys"
    kinds = {k["id"] if "id" in k else k["key_id"]: k["kind"] for k in json.loads(
        op("key", "list", "--json").stdout)["keys"]}
    (escrow_id,) = [k for k, kind in kinds.items() if kind == "escrow"]
    older = (keys / escrow_id).read_bytes()
    op("key", "rotate", "--key-file-also", str(tmp_path / "t.key"))
    for path in keys.iterdir():  # as if the rotate had stopped before the escrow key
        if path.read_bytes() != older and "escrow" in path.read_text(errors="replace"):
            path.chmod(0o600)
            path.unlink()
    (keys / escrow_id).write_bytes(older)
    done = op("key", "recover", "--escrow-key", gen["private"], "--new-key-file",
              str(tmp_path / "recovered.key"))
    assert "the escrow wrapping holds master-key generation 0, the repository 1" in \
        done.stderr.decode()
