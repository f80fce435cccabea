"""The fleet page in a real headless browser (Debian's chromium): it renders every tenant
row, logs no console error, and its screenshot is a real picture with the status colours.

`make test` installs chromium when it is missing; elsewhere the test skips saying so,
and under CI a missing chromium fails.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.fleet.conftest import FleetSetup

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE(?::|\()\d*\)?\]\s*(.*)")


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = "chromium is not installed (make test installs it: apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def _browse(chromium: str, tmp_path: Path, page: Path, *args: str) -> tuple[str, list[str]]:
    """(stdout, console messages) of one headless run on ``page``."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args,
                           page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [m.group(1) for m in CONSOLE.finditer(done.stderr)]


def test_console_errors_are_seen(chromium: str, tmp_path: Path) -> None:
    """The detector the next test relies on catches a page's console errors."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("control-error");'
                    "missingFunction();</script></body></html>")
    _dom, console = _browse(chromium, tmp_path, page, "--dump-dom")
    assert any("control-error" in m for m in console), console
    assert any("missingFunction" in m for m in console), console


def test_fleet_page_renders_in_chromium(chromium: str, fleet_setup: FleetSetup,
                                        tmp_path: Path) -> None:
    page = tmp_path / "fleet.html"
    done = fleet_setup.run("fleet", "status", str(fleet_setup.fleet), "--schedule",
                           str(fleet_setup.schedule), "--html", str(page))
    assert done.returncode == 1, done.stderr
    dom, console = _browse(chromium, tmp_path, page, "--dump-dom")
    assert console == []
    rows = re.findall(r'<tr class="([a-z-]+)" data-tenant="([^"]+)">', dom)
    assert rows == [("no-report", "Shiiba"), ("rpo-exceeded", "Kushima"),
                    ("degraded", "Hyuga"), ("ok", "Nobeoka")]
    assert "store unreachable: connect timed out" in dom

    shot = tmp_path / "fleet.png"
    _out, console = _browse(chromium, tmp_path, page, f"--screenshot={shot}",
                            "--window-size=1200,800", "--hide-scrollbars")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 800)
    assert len(data) > 10_000
    from PIL import Image  # matplotlib's own dependency

    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, table, badges: not a blank page
    counts = {rgb: n for n, rgb in colours}
    # The status colours were painted (the CSS: red rpo-exceeded, green ok badges).
    assert counts.get((0xcf, 0x22, 0x2e), 0) > 100
    assert counts.get((0x2d, 0xa4, 0x4e), 0) > 100
