"""The error workbook as a person sees it: printed by LibreOffice, read back from the PDF.

The demo's import (the package's sample sheet and mapping, against the sandbox) writes a typical
workbook: ten failed rows over sixteen columns. LibreOffice headless prints it to PDF, poppler turns
the pages into PNGs kept in tests/artifacts/workbook/ (git-ignored) for a person to look at, and the
PDF's text must hold every message whole. Needs Debian's `libreoffice-calc` and `poppler-utils`;
without them the test is skipped, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import FAST_LIMIT, REPO, run_cli
from tests.helpers import error_rows

ARTIFACTS = REPO / "tests" / "artifacts" / "workbook"
TOOLS = ("soffice", "pdftoppm", "pdftotext", "pdfinfo")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"needs {', '.join(MISSING)}: apt-get install -y libreoffice-calc poppler-utils",
)


def _print_to_pdf(workbook: Path, folder: Path) -> Path:
    profile = folder / "lo-profile"  # a profile of its own: never the user's, never another run's
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(folder),
            str(workbook),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return folder / f"{workbook.stem}.pdf"


def _pages(pdf: Path) -> list[tuple[float, float]]:
    """Each page's (width, height) in points."""
    info = subprocess.run(
        ["pdfinfo", "-f", "1", "-l", "99", str(pdf)], check=True, capture_output=True, text=True
    ).stdout
    return [
        (float(w), float(h)) for w, h in re.findall(r"^Page\s+\d+\s+size:\s+([\d.]+) x ([\d.]+)", info, re.M)
    ]


def _squeezed(text: str) -> str:
    """Text without whitespace: a wrapped message reads the same as the whole one."""
    return "".join(text.split())


def test_error_workbook_prints_on_one_landscape_page_per_sheet_with_whole_messages(tmp_path, env):
    sample = resources.files("importer") / "sample_data" / "activities.csv"
    mapping = resources.files("importer") / "mappings" / "example.yaml"
    workbook = tmp_path / "activities.errors.xlsx"
    result = run_cli(
        "run",
        str(sample),
        "--mapping",
        str(mapping),
        "--errors",
        workbook,
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        "--settle-time",
        "0",
        env=env,
    )
    assert result.code == 1, result.output
    rows = error_rows(workbook)
    assert len(rows) == 10

    pdf = _print_to_pdf(workbook, tmp_path)
    pages = _pages(pdf)
    assert len(pages) == 2, pages  # Errors and Summary, each fitted to one page's width
    assert all(width > height for width, height in pages), pages  # landscape

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("activities.errors-*.png"):
        old.unlink()
    subprocess.run(
        ["pdftoppm", "-png", "-r", "110", str(pdf), str(ARTIFACTS / "activities.errors")],
        check=True,
        timeout=120,
    )
    shutil.copy(pdf, ARTIFACTS / "activities.errors.pdf")
    assert sorted(path.name for path in ARTIFACTS.glob("activities.errors-*.png")) == [
        "activities.errors-1.png",
        "activities.errors-2.png",
    ]

    text = subprocess.run(
        ["pdftotext", "-raw", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    printed = _squeezed(text)
    for row in rows:
        assert _squeezed(str(row["Error"])) in printed, row["Error"]
    assert "Exception" not in "".join(str(row["Error"]) for row in rows)
    assert "%d" not in text
    for line in ("Rows in the file 200", "Posted to LeadSquared 190", "How to fix and re-upload"):
        assert _squeezed(line) in printed, line
