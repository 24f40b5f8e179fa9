"""The workbook's sheet parsed while the program starts is the loader's, and only for that file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import openpyxl
import pytest
import python_calamine as calamine

from importer import sheet_prefetch
from importer.errors import InputFileError
from importer.loader import load_sheet
from tests.conftest import run_cli
from tests.helpers import write_yaml


def workbook(path: Path, rows: list[list[object]], *, sheets: tuple[str, ...] = ("Visits",)) -> Path:
    book = openpyxl.Workbook()
    book.active.title = sheets[0]
    for name in sheets[1:]:
        book.create_sheet(name)
    for row in rows:
        book[sheets[-1]].append(row)
    book.save(path)
    return path


def parsed() -> None:
    """Wait for every parse begun in the background to end."""
    for thread in threading.enumerate():
        if thread.name == "sheet-prefetch":
            thread.join()


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The name of every sheet python-calamine parses, by anyone."""
    names: list[str] = []
    parse = calamine.CalamineWorkbook.get_sheet_by_name

    def counted(book: calamine.CalamineWorkbook, name: str) -> calamine.CalamineSheet:
        names.append(name)
        return parse(book, name)

    monkeypatch.setattr(calamine.CalamineWorkbook, "get_sheet_by_name", counted)
    return names


def test_the_loader_takes_the_sheet_begun_at_start_instead_of_parsing_it_again(tmp_path, parses):
    path = workbook(tmp_path / "visits.xlsx", [["Opportunity", "PAN"], ["o-1", "P1"], ["o-2", "P2"]])
    expected = load_sheet(path)
    assert parses == ["Visits"]
    sheet_prefetch.start(path, None)
    sheet = load_sheet(path)
    assert parses == ["Visits", "Visits"]  # once by the prefetch, not again by the loader
    assert (sheet.headers, sheet.frame.to_dict("records")) == (
        expected.headers,
        expected.frame.to_dict("records"),
    )


def test_a_file_changed_after_the_start_is_read_again(tmp_path, parses):
    path = workbook(tmp_path / "visits.xlsx", [["Opportunity", "PAN"], ["o-1", "P1"]])
    sheet_prefetch.start(path, None)
    parsed()  # the old file is parsed before it is written again
    workbook(path, [["Opportunity", "PAN"], ["o-1", "P1"], ["o-2", "P2 changed"]])
    os.utime(path, ns=(1, 1))  # whatever the clock's resolution, the file is not the one parsed
    sheet = load_sheet(path)
    assert sheet.frame["PAN"].tolist() == ["P1", "P2 changed"]
    assert len(parses) == 2


def test_another_sheet_asked_for_is_parsed_by_the_loader(tmp_path, parses):
    path = workbook(
        tmp_path / "visits.xlsx", [["Opportunity", "PAN"], ["o-1", "P1"]], sheets=("Notes", "Visits")
    )
    sheet_prefetch.start(path, None)  # begun on the first sheet...
    sheet = load_sheet(path, "visits")  # ...but the loader wants another (its name folded)
    assert sheet.frame["PAN"].tolist() == ["P1"]
    assert parses[-1] == "Visits"


def test_a_damaged_workbook_gets_the_loaders_own_message(tmp_path):
    path = tmp_path / "visits.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    sheet_prefetch.start(path, None)
    with pytest.raises(InputFileError, match="damaged or incomplete"):
        load_sheet(path)


def test_validate_of_a_workbook_through_the_cli_reads_its_rows(tmp_path):
    owner = "asha.rao@example.com"
    rows = [["Opportunity", "Owner", "PAN"], ["o-1", owner, "P1"], ["o-2", owner, ""]]
    path = workbook(tmp_path / "visits.xlsx", rows)
    mapping = write_yaml(
        tmp_path,
        "activity_event: {value: 201}\nopportunity_id: {column: Opportunity}\nowner_email: {column: Owner}\n"
        "fields:\n  mx_Custom_1: {column: PAN, required: true}\n",
    )
    result = run_cli("validate", path, "--mapping", mapping)
    assert result.code == 1, result.err
    assert "1 valid" in result.output
    assert "1 invalid" in result.output


def test_a_workbook_too_big_to_read_safely_is_left_unparsed_to_the_loaders_refusal(
    tmp_path, parses, monkeypatch
):
    path = workbook(tmp_path / "visits.xlsx", [["Opportunity", "PAN"], ["o-1", "P1"]])
    monkeypatch.setattr("importer.workbook_zip.MAX_UNPACKED_BYTES", 1_000)  # as if it unpacked to GBs
    sheet_prefetch.start(path, None)
    with pytest.raises(InputFileError, match="unpacks to"):
        load_sheet(path)
    parsed()
    assert parses == []  # nothing was unpacked in the background either
