"""The renderings of one full report of the real fleet (built once for the module, every
format): CSV with a BOM, the self-contained HTML in headless Chromium, the charts, the PDF
with its pages and attachments.

Chromium and poppler's pdftoppm are installed by `make test` (`report-deps`, `chromium`);
elsewhere the tests needing them skip saying so, and under CI a missing one fails. The
report and the browser's screenshot of it are kept in $DRSYNC_TEST_ARTIFACTS (default
.test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unavailable
from tests.report.conftest import ReportFleet

pytestmark = pytest.mark.slow  # one full report (charts, PDF) and a browser: ~30 s

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE(?::|\()\d*\)?\]\s*(.*)")
ARTIFACTS = Path(os.environ.get("DRSYNC_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / ".test-artifacts"))


@pytest.fixture(scope="module")
def full_report(report_fleet: ReportFleet) -> Path:
    try:
        import weasyprint  # noqa: F401  (loads Pango)
    except OSError as err:
        unavailable(f"WeasyPrint cannot load the system's Pango ({err}); make test "
                    "installs it")
    out = report_fleet.base / "reports" / "full"
    done = report_fleet.run("report", str(report_fleet.fleet), "--period", report_fleet.period,
                            "--out", str(out), "--format", "html,json,csv,pdf")
    assert done.returncode == 1, done.stderr  # one tenant of six is compliant
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ARTIFACTS / "report", ignore_errors=True)
    shutil.copytree(out, ARTIFACTS / "report")  # for a person to read
    return out


def _doc(report: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return doc


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make test installs it)")
    assert path is not None
    return path


def test_every_file_is_sealed(report_fleet: ReportFleet, full_report: Path) -> None:
    files = sorted(p.relative_to(full_report).as_posix() for p in full_report.rglob("*")
                   if p.is_file())
    assert files == ["controls.csv", "evidence/evidence.json", "evidence/fleet.toml",
                     "manifest.json", "manifest.sig", "report.html", "report.json",
                     "report.pdf", "tenants.csv"]
    done = report_fleet.run("report", "verify", str(full_report), "--public-key",
                            str(report_fleet.public_key))
    assert done.returncode == 0, done.stdout
    assert "files verified" in done.stdout


def test_csv_opens_in_excel_with_its_japanese(full_report: Path) -> None:
    doc = _doc(full_report)
    raw = (full_report / "controls.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 6 * 7
    assert {(r["tenant"], r["control"]): r["status"] for r in rows} == {
        (t["name"], c): t["controls"][c]["status"] for t in doc["tenants"]
        for c in doc["order"]["controls"]}
    kobayashi = next(r for r in rows if r["tenant"] == "Kobayashi")
    assert kobayashi["団体コード"] == "452050" and kobayashi["判定"] == "適合"
    assert [r["control"] for r in rows[:7]] == doc["order"]["controls"]
    tenants = list(csv.DictReader(io.StringIO(
        (full_report / "tenants.csv").read_bytes().decode("utf-8-sig"))))
    assert sum(int(t["cost_share_yen"]) for t in tenants) == 12_000_000
    assert [t["tenant"] for t in tenants] == [t["name"] for t in doc["tenants"]]


def test_html_is_self_contained_and_says_what_the_json_says(full_report: Path) -> None:
    html = (full_report / "report.html").read_text(encoding="utf-8")
    doc = _doc(full_report)
    assert not re.search(r"""(?:src|href)=["'](?!data:|#)""", html)  # nothing fetched
    assert "<script" not in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 6 + 6  # fleet charts, and one per tenant
    for data in images:
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    for t in doc["tenants"]:
        cells = re.findall(rf'<tr data-tenant="{t["name"]}">(.*?)</tr>', html, re.S)[0]
        found = re.findall(r'class="cell [a-z_]+"[^>]*>([A-Z_\u200b-]+)<', cells)
        assert [f.replace("\u200b", "") for f in found] == [
            t["controls"][c]["status"] for c in doc["order"]["controls"]]
    for label in ("BCP監査報告書", "団体別 / Per tenant", "非常時優先業務", "住民基本台帳事務",
                  "費用分担 / Cost sharing", "証言 / Human attestations", "@page"):
        assert label in html
    assert doc["report_id"] in html and doc["config_sha256"] in html


def test_html_renders_in_chromium(full_report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("chromium is not installed (make test installs it)")
    assert chromium is not None
    # A copy with a probe appended (the report itself has no script): it writes, into the
    # DOM, how many images there are and how many loaded with a size.
    page = tmp_path / "probe.html"
    probe = ('<script>window.addEventListener("load", () => {const i = [...document.images];'
             'document.body.setAttribute("data-images", i.length + "/" + i.filter(x => '
             'x.complete && x.naturalWidth > 0).length);});</script>')
    page.write_text((full_report / "report.html").read_text(encoding="utf-8")
                    .replace("</body>", probe + "</body>"), encoding="utf-8")

    def browse(target: Path, *args: str) -> tuple[str, list[str]]:
        profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
        done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args,
                               target.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, [m.group(1) for m in CONSOLE.finditer(done.stderr)]

    dom, console = browse(page, "--virtual-time-budget=5000", "--dump-dom")
    assert console == []
    assert 'data-images="12/12"' in dom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-html.png"
    _out, console = browse(full_report / "report.html", f"--screenshot={shot}",
                           "--window-size=1280,2400", "--hide-scrollbars")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2400)
    from PIL import Image

    with Image.open(shot) as image:
        colours = {rgb: n for n, rgb in image.convert("RGB").getcolors(1 << 22) or []}
    assert colours.get((0x2d, 0xa4, 0x4e), 0) > 200  # PASS green was painted
    assert colours.get((0xcf, 0x22, 0x2e), 0) > 200  # FAIL red


def test_pdf_renders_to_pages_and_carries_its_json(full_report: Path, tmp_path: Path) -> None:
    pdftoppm = _tool("pdftoppm")
    pdf = full_report / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    done = subprocess.run([pdftoppm, "-r", "30", "-png", str(pdf), str(tmp_path / "page")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2 + 6  # cover, summary, a page per tenant at least
    from PIL import Image

    with Image.open(pages[0]) as first:
        assert first.width < first.height  # A4 portrait
        assert len(first.convert("L").getcolors(256) or []) > 10  # text, not a blank page
    detach = _tool("pdfdetach")
    done = subprocess.run([detach, "-saveall", "-o", str(tmp_path), str(pdf)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.json").read_bytes() == (full_report / "report.json").read_bytes()
    assert (tmp_path / "controls.csv").read_bytes() == (full_report / "controls.csv").read_bytes()


def test_charts_are_drawn_from_the_document(full_report: Path) -> None:
    from PIL import Image

    from drsync.report.charts import STATUS_COLOURS

    html = (full_report / "report.html").read_text(encoding="utf-8")
    alts = dict((unescape(alt), data) for data, alt in re.findall(
        r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', html))
    assert set(alts) >= {
        "Heatmap of every tenant's status per control",
        "Recovery-point age of every tenant against its RPO",
        "Restore time of the last drill against the RTO",
        "Days since each tenant's last drill against its limit",
        "Backup runs per night, ok and not ok", "Gantt chart of the planner's night window",
        "Ebino: recovery-point age against the RPO"}
    heat = base64.b64decode(alts["Heatmap of every tenant's status per control"])
    with Image.open(io.BytesIO(heat)) as image:
        colours = {rgb for _n, rgb in image.convert("RGB").getcolors(1 << 20) or []}
    # Every status of the known mix has its colour in the heatmap.
    for status in ("PASS", "WARN", "FAIL", "NOT_EVALUATED", "EXEMPT"):
        hexcolour = STATUS_COLOURS[status].lstrip("#")
        assert tuple(int(hexcolour[i:i + 2], 16) for i in (0, 2, 4)) in colours, status
