"""``drsync report``: the BCP audit report of a fleet, its attestations, its verification."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from drsync.cli.context import open_catalog, settings_from
from drsync.cli.render import print_json

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


class _ReportGroup(click.Group):
    """``drsync report FLEET ...`` is ``drsync report build FLEET ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group("report", cls=_ReportGroup)
def report_cmd() -> None:
    """The BCP audit report: per municipality and for the fleet, from recorded evidence.

    `drsync report FLEET ...` is short for `drsync report build FLEET ...`.

    \b
    Examples:
      drsync report keygen --out /etc/drsync/report
      drsync report fleet.toml --period 2026-11-01..2026-11-30 --out reports/2026-11
      drsync report attest fleet.toml --item exercise --tenant Nobeoka --by "総務課 山田" \\
          --date 2026-11-12 --statement "tabletop exercise, report R-12"
      drsync report verify reports/2026-11 --public-key /etc/drsync/report/report-signing.pub
    """


@report_cmd.command("build")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--period", required=True, metavar="FIRST..LAST",
              help="Whole days, inclusive, of [report] timezone (default UTC): "
                   "2026-11-01..2026-11-30.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The new report directory (must not exist).")
@click.option("--format", "formats", default="html,json,csv", show_default=True,
              help="Renderings, comma-separated: json (always), csv, html, pdf.")
@click.option("--signing-key", type=click.Path(dir_okay=False),
              help="Ed25519 private key (report keygen); default: [report] signing_key.")
@click.option("--previous", type=click.Path(file_okay=False),
              help="The report before this one, to chain to (its manifest's hash).")
@json_option
@click.pass_context
def build_cmd(ctx: click.Context, fleet: str, period: str, out_dir: str, formats: str,
              signing_key: str | None, previous: str | None, as_json: bool) -> int:
    """Build the sealed report of FLEET for PERIOD into OUT.

    Built only from recorded evidence: the catalog's runs and drills, and what
    each tenant's copies hold (snapshots, key wrappings, Object Lock), read
    with the tenant's key_file (else [keys] escrow_key). Missing evidence is
    NOT_EVALUATED, never PASS. OUT holds report.json (the source of truth),
    controls.csv and tenants.csv (UTF-8 with BOM), report.html, report.pdf, the
    evidence used under evidence/, and manifest.json signed in manifest.sig.

    Exit 0 when every tenant is compliant (every control PASS, WARN or EXEMPT),
    1 otherwise.

    \b
    Example:
      drsync report build fleet.toml --period 2026-11-01..2026-11-30 --out report-2026-11
    """
    from drsync.plan.fleetfile import load_fleet
    from drsync.report.build import make_report, parse_formats, parse_period
    from drsync.report.settings import load_report_settings

    wanted = parse_formats(formats)
    parse_period(period)  # a bad flag is named before the fleet file is read
    parsed = load_fleet(fleet)
    report = load_report_settings(parsed)
    span = parse_period(period, report.timezone)
    key = signing_key or report.signing_key
    if not key:
        from drsync.errors import UsageError

        raise UsageError("no signing key: give --signing-key FILE or [report] signing_key "
                         "(make one with: drsync report keygen --out DIR)")
    catalog = open_catalog(ctx)
    try:
        with _status("collecting evidence and rendering", enabled=not as_json):
            built = make_report(parsed, report, catalog, settings_from(ctx), span, out_dir,
                                formats=wanted, signing_key=key, previous=previous)
    finally:
        catalog.close()
    doc = built.document
    summary = doc["summary"]
    if as_json:
        print_json({"directory": str(built.directory), "report_id": built.report_id,
                    "files": list(built.files), "summary": summary,
                    "tenants": {t["name"]: {c: r["status"] for c, r in t["controls"].items()}
                                for t in doc["tenants"]}})
    else:
        _print_matrix(doc)
        click.echo(f"report {built.report_id[:12]} in {built.directory}: "
                   f"{summary['compliant']} of {summary['tenants']} tenants compliant; "
                   f"{len(built.files)} files, signed by key {doc['signer']['key_id']}")
    return 0 if summary["compliant"] == summary["tenants"] else 1


class _status:
    """A spinner on stderr while the report is made, only on a terminal."""

    def __init__(self, text: str, *, enabled: bool) -> None:
        self.text, self.enabled, self._ctx = text, enabled and sys.stderr.isatty(), None

    def __enter__(self) -> None:
        if self.enabled:
            from rich.console import Console

            self._ctx = Console(stderr=True).status(self.text)  # type: ignore[assignment]
            self._ctx.__enter__()  # type: ignore[attr-defined]

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


_STYLE = {"PASS": "bold green", "WARN": "bold black on yellow", "FAIL": "bold white on red",
          "NOT_EVALUATED": "bold white on grey35", "EXEMPT": "bold blue"}


def _print_matrix(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    controls = doc["order"]["controls"]
    table = Table(title=f"BCP report {doc['period']['first']}..{doc['period']['last']}",
                  header_style="bold")
    table.add_column("tenant")
    for c in controls:
        table.add_column(c)
    for t in doc["tenants"]:
        table.add_row(escape(t["name"]), *(f"[{_STYLE[t['controls'][c]['status']]}]"
                                           f"{t['controls'][c]['status']}[/]"
                                           for c in controls))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


@report_cmd.command("attest")
@click.argument("fleet", type=click.Path(dir_okay=False))
@click.option("--item", required=True,
              help="What is attested: policy-approval, bia, hazard-assessment, exercise, "
                   "access-review, call-in-plan, alternate-site, plan-revision.")
@click.option("--by", "by", required=True, help="Who attests (name and role).")
@click.option("--date", "when", required=True, metavar="YYYY-MM-DD",
              help="When the attested thing happened or was approved.")
@click.option("--tenant", help="The tenant it is about (default: the whole fleet).")
@click.option("--statement", default="", help="What is stated, with any document reference.")
@click.option("--file", "path", type=click.Path(dir_okay=False),
              help="The attestations file (default: [report] attestations).")
@json_option
def attest_cmd(fleet: str, item: str, by: str, when: str, tenant: str | None,
               statement: str, path: str | None, as_json: bool) -> None:
    """Record a human attestation (who, what, when) for the next reports.

    Attestations are statements, shown in the report as such (who said so, and
    when it was recorded), never turned into a computed status.

    \b
    Example:
      drsync report attest fleet.toml --item bia --by 'Sato, BCP officer' --date 2026-10-01
    """
    from drsync.errors import UsageError
    from drsync.plan.fleetfile import load_fleet
    from drsync.report.attest import Attestation, append_attestation
    from drsync.report.settings import load_report_settings

    parsed = load_fleet(fleet)
    report = load_report_settings(parsed)
    target = path or report.attestations
    if not target:
        raise UsageError("no attestations file: give --file or set [report] attestations")
    if tenant is not None and tenant not in {t.name for t in parsed.tenants}:
        raise UsageError(f"--tenant {tenant}: no such tenant in {fleet}")
    try:
        day = dt.date.fromisoformat(when)
    except ValueError:
        raise UsageError(f"--date {when}: expected YYYY-MM-DD") from None
    attestation = Attestation(item, tenant, by, day, statement, dt.datetime.now(dt.UTC))
    append_attestation(target, attestation)
    if as_json:
        print_json({"file": target, **attestation.to_json()})
    else:
        click.echo(f"recorded {item} by {by} ({when}) in {target}")


@report_cmd.command("verify")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--public-key", type=click.Path(dir_okay=False),
              help="The signer's public key (report-signing.pub): pins who must have signed.")
@click.option("--previous", type=click.Path(file_okay=False),
              help="Where the previous report is, when not beside this one.")
@json_option
def verify_cmd(directory: str, public_key: str | None, previous: str | None,
               as_json: bool) -> int:
    """Check a report: its signature, every file's SHA-256, and the chain before it.

    Exit 0 when everything verifies; 13 with one line per problem (the file
    changed, added or missing, a bad signature, a broken chain) otherwise.

    \b
    Example:
      drsync report verify report-2026-11 --public-key report-signing.pub
    """
    from drsync.errors import IntegrityError
    from drsync.report.seal import load_public_key, verify_report

    key = load_public_key(public_key) if public_key else None
    result = verify_report(directory, public_key=key, previous=previous)
    if as_json:
        print_json(result.to_json())
    else:
        for problem in result.problems:
            click.echo(f"error: {problem}")
        if result.ok:
            pin = "" if result.pinned else " (key not pinned: give --public-key to trust it)"
            click.echo(f"report {str(result.report_id)[:12]}: {result.files} files verified, "
                       f"signed by key {result.key_id}{pin}; chain of "
                       f"{len(result.chain)} report(s) intact")
    return 0 if result.ok else IntegrityError.exit_code


@report_cmd.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report-signing.key (private, 0600) and report-signing.pub.")
@json_option
def keygen_cmd(out_dir: str, as_json: bool) -> None:
    """Make the Ed25519 key pair reports are signed with. Keep the .key on the reporting
    host only; give the .pub to auditors (report verify --public-key).

    \b
    Example:
      drsync report keygen --out /etc/drsync/report-key
    """
    from drsync.report.seal import generate_key, key_id, load_public_key

    private, public = generate_key(out_dir)
    kid = key_id(load_public_key(public))
    if as_json:
        print_json({"key_id": kid, "private": str(private), "public": str(public)})
    else:
        click.echo(f"report signing key {kid}: private {private} (mode 0600), public {public}")
