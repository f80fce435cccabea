"""Key commands: list, add, remove, passwd, gen-escrow, escrow, recover, rotate.

Each opens the repository with the usual secret (``--password-file``, ``--key-file``),
calls one ``Repository`` method and renders the outcome; ``recover`` opens with the
operator's escrow private key instead.
"""

from __future__ import annotations

from typing import Any

import click

from drsync.cli.context import (
    open_repo,
    read_new_passphrase,
    resolve_secret,
    settings_from,
)
from drsync.cli.render import print_json

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def _write_new_key_file(repo: Any, path: str) -> str:
    from drsync.repo.keys import KeyFileSlot

    # The path is claimed first: a key file that cannot be written must not leave a
    # wrapping behind that nobody holds.
    slot = KeyFileSlot.claim(path)
    try:
        key_file = repo.add_key_file()
    except BaseException:
        slot.abandon()
        raise
    slot.fill(key_file)
    return str(key_file.key_id)


@click.group("key")
def key_group() -> None:
    """Manage the wrappings of the repository's master key.

    \b
    Examples:
      drsync key list
      drsync key add --new-key-file /etc/drsync/tenant-2.key
      drsync key remove 3f9a
      drsync key passwd --new-password-file /root/new-passphrase
      drsync key gen-escrow --out /srv/operator/escrow
      drsync key escrow --pubkey /srv/operator/escrow/escrow.pub
      drsync key recover --escrow-key /srv/operator/escrow/escrow.key --new-key-file t.key
      drsync --key-file /etc/drsync/tenant.key key rotate --remove-others
    """


@key_group.command("list")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the wrappings: id, kind (passphrase, keyfile, escrow), created, host.

    \b
    Examples:
      drsync key list
      drsync key list --json
    """
    repo = open_repo(ctx)
    rows = [{"id": w.key_id, "kind": w.kind, "created": w.created, "host": w.host,
             "generation": w.generation, "escrow_key": w.escrow_key,
             "in_use": w.key_id == repo.key_id} for w in repo.wrappings()]
    if as_json:
        print_json({"repository": repo.url, "keys": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("", "id", "kind", "generation", "created", "host"):
        table.add_column(column)
    for row in rows:
        kind = row["kind"] + (f" ({str(row['escrow_key'])[:8]})" if row["escrow_key"] else "")
        table.add_row("*" if row["in_use"] else "", row["id"], kind, str(row["generation"]),
                      row["created"], row["host"])
    Console().print(table)


@key_group.command("add")
@click.option("--new-key-file", type=click.Path(dir_okay=False),
              help="Add a key file (created with mode 0600) instead of a passphrase.")
@click.option("--new-password-file", type=click.Path(dir_okay=False),
              help="File holding the new passphrase (default: ask on the terminal).")
@json_option
@click.pass_context
def add_cmd(ctx: click.Context, new_key_file: str | None, new_password_file: str | None,
            as_json: bool) -> None:
    """Add a passphrase or key file wrapping (no data is re-encrypted).

    \b
    Examples:
      drsync key add --new-key-file /etc/drsync/registry-2.key
      drsync key add --new-password-file /root/second.pass
    """
    from drsync.errors import UsageError

    if new_key_file and new_password_file:
        raise UsageError("key add: give --new-key-file or --new-password-file, not both")
    repo = open_repo(ctx)
    if new_key_file:
        key_id, kind = _write_new_key_file(repo, new_key_file), "keyfile"
    else:
        key_id, kind = repo.add_passphrase(read_new_passphrase(new_password_file)), "passphrase"
    if as_json:
        print_json({"repository": repo.url, "added": key_id, "kind": kind})
    else:
        click.echo(f"added {kind} key {key_id}"
                   + (f" (key file {new_key_file})" if new_key_file else ""))


@key_group.command("remove")
@click.argument("key_id")
@click.option("--force", is_flag=True, help="Also remove the wrapping in use.")
@click.pass_context
def remove_cmd(ctx: click.Context, key_id: str, force: bool) -> None:
    """Remove a wrapping (by id or a unique prefix). Refuses to remove the last passphrase
    or key file, and the wrapping in use without --force. Takes effect at once.

    \b
    Examples:
      drsync key list   # the ids
      drsync key remove 3fa1c2d0
    """
    repo = open_repo(ctx)
    removed = repo.remove_wrapping(key_id, force=force)
    click.echo(f"removed {removed.kind} key {removed.key_id}")


@key_group.command("passwd")
@click.option("--new-password-file", type=click.Path(dir_okay=False),
              help="File holding the new passphrase (default: ask on the terminal).")
@click.pass_context
def passwd_cmd(ctx: click.Context, new_password_file: str | None) -> None:
    """Change the passphrase that opened the repository: a new wrapping is added, then the
    old one removed (a crash in between leaves both, never neither).

    \b
    Example:
      drsync key passwd --new-password-file /root/new.pass
    """
    from drsync.errors import UsageError

    repo = open_repo(ctx)
    old = next((w for w in repo.wrappings() if w.key_id == repo.key_id), None)
    if old is None or old.kind != "passphrase":
        raise UsageError("key passwd changes the passphrase that opened the repository; open "
                         "it with --password-file (or use key add / key remove)")
    new_id = repo.add_passphrase(read_new_passphrase(new_password_file))
    repo.remove_wrapping(old.key_id, force=True)
    click.echo(f"passphrase changed: key {old.key_id} replaced by {new_id}")


@key_group.command("gen-escrow")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for escrow.key (private, 0600) and escrow.pub (created 0700 if "
                   "missing).")
@json_option
def gen_escrow_cmd(out_dir: str, as_json: bool) -> None:
    """Make the fleet operator's escrow key pair (X25519). Keep escrow.key offline; give
    escrow.pub to every tenant's `init --escrow-pubkey`.

    \b
    Example:
      drsync key gen-escrow --out /media/offline/escrow
    """
    from drsync.repo.escrow import EscrowKeyPair

    pair = EscrowKeyPair.generate()
    priv, pub = pair.write(out_dir)
    if as_json:
        print_json({"escrow_key": pair.public.key_id, "private": str(priv), "public": str(pub)})
    else:
        click.echo(f"escrow key {pair.public.key_id}: private {priv} (mode 0600), public {pub}")


@key_group.command("escrow")
@click.option("--pubkey", required=True, type=click.Path(dir_okay=False),
              help="The operator's escrow.pub.")
@click.pass_context
def escrow_cmd(ctx: click.Context, pubkey: str) -> None:
    """Add a wrapping that only the operator's escrow private key opens.

    \b
    Example:
      drsync key escrow --pubkey /etc/drsync/escrow.pub
    """
    from drsync.repo.escrow import EscrowPublicKey

    public = EscrowPublicKey.load(pubkey)
    repo = open_repo(ctx)
    key_id = repo.add_escrow(public)
    click.echo(f"escrow key {public.key_id} wraps the master key as key {key_id}")


@key_group.command("recover")
@click.option("--escrow-key", required=True, type=click.Path(dir_okay=False),
              help="The operator's escrow.key (private half).")
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False),
              help="Key file to create for the tenant (mode 0600).")
@click.pass_context
def recover_cmd(ctx: click.Context, escrow_key: str, new_key_file: str) -> None:
    """Open a tenant whose own keys are lost with the escrow key, and give it a new key
    file. A wrong escrow key exits 11.

    \b
    Examples:
      drsync --repo s3://dr-backups/nobeoka key recover \
        --escrow-key /media/offline/escrow/escrow.key --new-key-file nobeoka.key
    """
    from drsync.repo.escrow import EscrowKeyPair
    from drsync.repo.keys import Secret

    pair = EscrowKeyPair.load(escrow_key)
    repo = open_repo(ctx, secret=Secret(escrow_key=pair, source=escrow_key))
    key_id = _write_new_key_file(repo, new_key_file)
    click.echo(f"recovered {repo.url} with escrow key {pair.public.key_id}; new key file "
               f"{new_key_file} (key {key_id})")
    newest = repo.generations()[-1]
    if repo.key.generation < newest:  # a rotation cut short before it re-wrapped the escrow
        click.echo(f"drsync: warning: the escrow wrapping holds master-key generation "
                   f"{repo.key.generation}, the repository {newest}: what was sealed since "
                   "cannot be read with it (nor with the new key file); find a key of "
                   "the newer generation and run `drsync key rotate` again", err=True)


@key_group.command("rotate")
@click.option("--key-file-also", "key_files", multiple=True, type=click.Path(dir_okay=False),
              help="Another key file to re-wrap under the new generation (repeatable).")
@click.option("--remove-others", is_flag=True,
              help="Remove the wrappings whose secrets are not given instead of refusing.")
@click.option("--reencrypt", is_flag=True,
              help="Also rewrite every pack and WAL file under the new generation (for a key "
                   "that must be treated as compromised).")
@click.option("--resume", is_flag=True,
              help="With --reencrypt: finish an interrupted re-encryption, no new generation.")
@json_option
@click.pass_context
def rotate_cmd(ctx: click.Context, key_files: tuple[str, ...], remove_others: bool,
               reencrypt: bool, resume: bool, as_json: bool) -> None:
    """Start a new master-key generation: new data is sealed with it, old data stays
    readable, nothing is re-uploaded. The key in use, the --key-file-also files and every
    escrow key are re-wrapped; a key file keeps its file and id.

    \b
    Examples:
      drsync --key-file /etc/drsync/tenant.key key rotate --remove-others
      drsync --key-file /etc/drsync/tenant.key key rotate --remove-others --reencrypt
      drsync --key-file /etc/drsync/tenant.key key rotate --reencrypt --resume
    """
    from drsync.errors import UsageError
    from drsync.repo.keys import KeyFile

    if resume and not reencrypt:
        raise UsageError("--resume finishes a re-encryption: give it with --reencrypt")
    settings = settings_from(ctx)
    secret = resolve_secret(settings)
    extra = tuple(KeyFile.load(path) for path in key_files)
    repo = open_repo(ctx, settings, secret=secret)
    doc: dict[str, Any] = {"repository": repo.url}
    if not resume:
        done = repo.rotate(secret, key_files=extra, remove_others=remove_others)
        doc.update({"generation": done.generation, "previous": done.old_generation,
                    "wrapped": done.wrapped, "removed": [w.key_id for w in done.removed]})
        if not as_json:
            click.echo(f"{repo.url}: master key generation {done.old_generation} -> "
                       f"{done.generation}; re-wrapped {len(done.wrapped)} key(s)")
            for w in done.removed:
                click.echo(f"removed {w.kind} key {w.key_id}")
    if reencrypt:
        from drsync.cli.render import human_bytes, progress_bar
        from drsync.repo.reencrypt import reencrypt as reencrypt_all

        with progress_bar("re-encrypt", enabled=not as_json) as (advance, set_total):
            result = reencrypt_all(repo, progress=advance, on_total=set_total)
        doc["reencrypt"] = result.to_json()
        if not as_json:
            click.echo(f"re-encrypted {result.packs_rewritten} pack(s) "
                       f"({human_bytes(result.bytes_rewritten)}) and {result.wal_rewritten} "
                       f"WAL file(s) under generation {result.generation}")
            for name in result.retained:
                click.echo(f"drsync: warning: object {name}: retained by the store (Object "
                           "Lock): the old generation still decrypts it", err=True)
    if as_json:
        print_json(doc)
