"""The PDF rendering: the same HTML, laid out by WeasyPrint, with the canonical JSON and
the CSV files embedded as attachments (so the PDF carries its own source of truth).

WeasyPrint needs the system's Pango (Debian: libpango-1.0-0, libpangoft2-1.0-0, which
``make test`` installs when missing) and a Japanese font (fonts-ipafont-gothic)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drsync.errors import ConfigError

__all__ = ["write_pdf"]


def write_pdf(html: str, path: Path, *, attachments: Sequence[Path] = ()) -> Path:
    try:
        import weasyprint
    except (ImportError, OSError) as err:  # OSError: the Pango libraries are missing
        raise ConfigError(f"--format pdf: WeasyPrint cannot load ({err}); install the "
                          "system's Pango (apt-get install libpango-1.0-0 libpangoft2-1.0-0)"
                          ) from None
    files = [weasyprint.Attachment(filename=str(p), description=p.name) for p in attachments]
    weasyprint.HTML(string=html, base_url=str(path.parent)).write_pdf(
        str(path), attachments=files, pdf_variant="pdf/a-3b")
    return path
