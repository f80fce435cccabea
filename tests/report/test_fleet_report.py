"""`drsync report` over a real fleet (tests/report/conftest.py): the statuses of the known
mix (golden), the files of the report, attestations, and `report verify` catching one
changed byte, an added file and a broken chain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.report.conftest import ReportFleet

GOLDEN = Path(__file__).parent / "golden" / "fleet_statuses.json"


def _build(fleet: ReportFleet, out: Path, *extra: str, code: int = 1) -> dict[str, object]:
    done = fleet.run("report", str(fleet.fleet), "--period", fleet.period, "--out", str(out),
                     "--json", *extra)
    assert done.returncode == code, done.stderr
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def _verify(fleet: ReportFleet, out: Path, *extra: str) -> tuple[int, str]:
    done = fleet.run("report", "verify", str(out), "--public-key", str(fleet.public_key),
                     *extra)
    return done.returncode, done.stdout + done.stderr


def test_statuses_of_the_known_mix(report_fleet: ReportFleet) -> None:
    out = report_fleet.base / "reports" / "json-only"
    built = _build(report_fleet, out, "--format", "json")
    assert built["tenants"] == json.loads(GOLDEN.read_text())
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert doc["format"] == "drsync-bcp-report" and doc["schema_version"] == 1
    by_name = {t["name"]: t for t in doc["tenants"]}
    assert [n for n, t in by_name.items() if t["compliant"]] == ["Kobayashi"]
    assert doc["summary"]["compliant"] == 1 and doc["summary"]["tenants"] == 6
    # The expired exemption is shown, and not applied; the one in force is.
    drill = by_name["Takachiho"]["controls"]["DRILL"]
    assert drill["status"] == "FAIL" and "expired on" in drill["note"]
    zero = by_name["Takachiho"]["controls"]["ZERO-ERRORS"]
    assert zero["evaluated"] == "NOT_EVALUATED" and zero["exemption"]["approver"] == "総務課長 山田"
    # The evidence behind the claims: Ebino's gap spans the three missed nights,
    # Kobayashi's Object Lock date comes from the store, Nichinan's failure names the pack.
    assert 95 < by_name["Ebino"]["facts"]["worst_gap"]["hours"] < 97
    tokyo = next(c for c in by_name["Kobayashi"]["copies"] if c["name"] == "tokyo")
    assert tokyo["immutable_until"] and tokyo["escrow_keys"]
    assert "authentication failed" in by_name["Nichinan"]["controls"]["DRILL"]["summary"]
    assert by_name["Kobayashi"]["last_drill"]["within_rto"] is True
    assert by_name["Kobayashi"]["code"] == "452050"
    assert by_name["Kushima"]["controls"]["COVERAGE"]["summary"] == (
        "dataset 税務: no successful backup of sqlite:/srv/tax.db in the period")
    # The 4:6 rule over the populations, in whole yen summing to the total.
    shares = {c["tenant"]: c["yen"] for c in doc["costs"]["tenants"]}
    assert sum(shares.values()) == 12_000_000
    assert shares["Nichinan"] > shares["Kobayashi"] > shares["Shiiba"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["evidence/evidence.json", "evidence/fleet.toml", "manifest.json",
                     "manifest.sig", "report.json"]
    assert _verify(report_fleet, out)[0] == 0


def test_verify_catches_one_changed_byte_and_an_added_file(report_fleet: ReportFleet) -> None:
    from drsync.report.seal import load_public_key, verify_report

    out = report_fleet.base / "reports" / "tamper"
    _build(report_fleet, out, "--format", "json,csv")
    code, text = _verify(report_fleet, out)
    assert code == 0, text
    trusted = load_public_key(report_fleet.public_key)
    for name in ("report.json", "controls.csv", "evidence/evidence.json"):
        copy = report_fleet.base / "reports" / f"tamper-{name.replace('/', '-')}"
        shutil.copytree(out, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        assert verify_report(copy, public_key=trusted).problems == [
            f"{copy}: {name}: SHA-256 differs from the manifest (changed after signing)"]
    code, text = _verify(report_fleet, copy)  # the command: exit 13, the problem named
    assert code == 13 and "evidence/evidence.json: SHA-256 differs" in text
    added = report_fleet.base / "reports" / "tamper-added"
    shutil.copytree(out, added)
    (added / "extra.txt").write_text("not signed")
    assert "extra.txt: not in the manifest" in verify_report(added).problems[0]
    # Editing the manifest itself (to match an edited file) breaks the signature.
    forged = report_fleet.base / "reports" / "tamper-manifest"
    shutil.copytree(out, forged)
    manifest = (forged / "manifest.json").read_text().replace('"version": 1', '"version":  1')
    (forged / "manifest.json").write_text(manifest)
    assert "signature does not match" in verify_report(forged).problems[0]
    # Another key's public key: not the trusted signer.
    other = report_fleet.run("report", "keygen", "--out", str(report_fleet.base / "other"))
    assert other.returncode == 0, other.stderr
    done = report_fleet.run("report", "verify", str(out), "--public-key",
                            str(report_fleet.base / "other" / "report-signing.pub"))
    assert done.returncode == 13 and "not by the trusted key" in done.stdout


def test_chain_of_reports(report_fleet: ReportFleet) -> None:
    """Two reports side by side in an archive (tests/report/test_seal.py covers the rest
    of the chain rules in-process)."""
    archive = report_fleet.base / "chain"
    first, second = archive / "2026-10", archive / "2026-11"
    _build(report_fleet, first, "--format", "json")
    done = report_fleet.run("report", str(report_fleet.fleet), "--period",
                            report_fleet.period, "--out", str(second), "--format", "json",
                            "--previous", str(first))
    assert done.returncode == 1, done.stderr
    assert "1 of 6 tenants compliant" in done.stdout and "Kobayashi" in done.stdout
    done = report_fleet.run("report", "verify", str(second), "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"] and len(result["chain"]) == 2
    assert result["key_pinned"] is False
    doc = json.loads((second / "report.json").read_text())
    assert doc["previous"]["dir"] == "2026-10"
    # The earlier report changed after the next was chained to it.
    data = bytearray((first / "report.json").read_bytes())
    data[10] ^= 0x01
    (first / "report.json").write_bytes(bytes(data))
    code, text = _verify(report_fleet, second)
    assert code == 13 and "2026-10: report.json: SHA-256 differs" in text


def test_attestations_are_shown_as_statements(report_fleet: ReportFleet) -> None:
    done = report_fleet.run("report", "attest", str(report_fleet.fleet), "--item", "exercise",
                            "--tenant", "Kobayashi", "--by", "総務課 田中",
                            "--date", report_fleet.now.date().isoformat(),
                            "--statement", "机上訓練 報告書 R-12", "--json")
    assert done.returncode == 0, done.stderr
    bad = report_fleet.run("report", "attest", str(report_fleet.fleet), "--item", "vibes",
                           "--by", "x", "--date", "2026-11-01")
    assert bad.returncode == 2 and "unknown attestation item 'vibes'" in bad.stderr
    out = report_fleet.base / "reports" / "attested"
    _build(report_fleet, out, "--format", "json")
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(a["item"], a["by"], a["tenant"]) for a in doc["attestations"]] == [
        ("exercise", "総務課 田中", "Kobayashi")]
    by_name = {t["name"]: t for t in doc["tenants"]}
    assert by_name["Kobayashi"]["attested"]["exercise"]["by"] == "総務課 田中"
    assert by_name["Ebino"]["attested"]["exercise"] is None
    assert (out / "evidence" / "attestations.jsonl").read_text(encoding="utf-8").count(
        "机上訓練") == 1
    # Statements never change a computed status.
    assert {t["name"]: {c: r["status"] for c, r in t["controls"].items()}
            for t in doc["tenants"]} == json.loads(GOLDEN.read_text())


def test_bad_input_is_one_line(report_fleet: ReportFleet, tmp_path: Path) -> None:
    out = tmp_path / "never"
    for args, message in [
        (("--period", "2026-11-30..2026-11-01"), "the last day is before the first"),
        (("--period", "November"), "expected FIRST..LAST"),
        (("--period", report_fleet.period, "--format", "docx"), "unknown format 'docx'"),
    ]:
        done = report_fleet.run("report", str(report_fleet.fleet), "--out", str(out), *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    broken = tmp_path / "fleet.toml"
    broken.write_text(report_fleet.fleet.read_text().replace(
        'approver = "総務課長 山田"\nexpires', 'expires', 1))
    done = report_fleet.run("report", str(broken), "--period", report_fleet.period, "--out",
                            str(out))
    assert done.returncode == 4
    assert "tenant.Takachiho.report.exempt[0].approver: must be a non-empty string" \
        in done.stderr
    assert not out.exists()
    done = report_fleet.run("report", str(report_fleet.fleet), "--period",
                            report_fleet.period, "--out", str(out), "--signing-key",
                            str(tmp_path / "missing.key"))
    assert done.returncode == 4 and "missing.key: signing key not found" in done.stderr
    assert not out.exists()
    existing = report_fleet.base / "reports" / "exists"
    existing.mkdir(parents=True)
    done = report_fleet.run("report", str(report_fleet.fleet), "--period",
                            report_fleet.period, "--out", str(existing))
    assert done.returncode == 2 and "never rewritten" in done.stderr
