"""Every bad input gets one clear answer: the corpus in tests/data/bad through the real CLI.

File- and mapping-level problems exit 2 with a message naming the file, send nothing and write
nothing; row-level problems put the row in the error workbook and import the rest. Each case
runs `validate` (offline) and `run` (against the sandbox on loopback).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openpyxl
import pytest

from importer import loader, report, workbook_zip
from importer.loader import load_sheet
from tests.conftest import FAST_LIMIT, run_cli
from tests.data.bad import make_bad

BAD = Path(__file__).parent / "data" / "bad"
MAPPING = BAD / "mapping.yaml"
OPP = make_bad.OPP

Check = Callable[[object, dict[int, dict[str, object]], Path], None]


@dataclass(frozen=True)
class Case:
    """One corpus file and what the tool must answer to it."""

    file: str
    exit: int
    message: str = ""  # on stderr; for exit 2, the whole answer
    mapping: str = "mapping.yaml"
    args: tuple[str, ...] = ()
    failed: dict[int, str] = field(default_factory=dict)  # source row -> part of its Error
    posted: int = 0  # activities the sandbox holds after `run`
    check: Check | None = None  # more checks on (sandbox, workbook rows by source row, workbook path)

    def __str__(self) -> str:
        return f"{self.file}-{self.mapping}" if self.mapping != "mapping.yaml" else self.file


def _stored(sandbox, opportunity: str = OPP[0]):
    (activity,) = sandbox.activities(opportunity)
    return activity


def _serials(sandbox, _rows, _workbook) -> None:
    activity = _stored(sandbox)
    assert activity.activity_datetime == "2024-03-26 14:15:00"
    assert activity.fields["mx_Custom_3"] == "2024-03-31 00:00:00"


def _trimmed(sandbox, _rows, _workbook) -> None:
    activity = _stored(sandbox)
    assert activity.owner_email == make_bad.OWNER
    assert (activity.fields["mx_Custom_1"], activity.fields["mx_Custom_2"]) == ("ABCDE1234F", "2500")


def _lowered(sandbox, _rows, _workbook) -> None:
    assert _stored(sandbox).owner_email == "asha.rao@example.com"


def _newlines(sandbox, _rows, workbook) -> None:
    assert _stored(sandbox).note == "line one\nline two"
    reread = load_sheet(workbook)  # as a fixed workbook is read back: the cell exactly, CR included
    assert reread.frame["Note"].tolist() == ["first\r\nsecond"]


def _long_cell(sandbox, rows, _workbook) -> None:
    assert _stored(sandbox).note == make_bad.LONG_NOTE  # sent whole
    assert rows[3]["Note"] == make_bad.LONG_NOTE[:32_767]
    assert "cut to the first 32,767 characters" in rows[3]["Error"]


def _merged(sandbox, _rows, _workbook) -> None:
    assert sorted(a.fields["mx_Custom_1"] for a in sandbox.activities(OPP[0])) == ["P2", "P3", "P4"]


def _formulas(sandbox, _rows, _workbook) -> None:
    assert _stored(sandbox).fields["mx_Custom_2"] == "2500"  # the value Excel calculated and stored


def _dates_1904(sandbox, _rows, _workbook) -> None:
    activity = _stored(sandbox)
    assert activity.activity_datetime == "2024-03-26 14:15:00"
    assert activity.fields["mx_Custom_3"] == "2024-03-31 00:00:00"


def _utf16(sandbox, _rows, _workbook) -> None:
    assert _stored(sandbox).note == "Café, reçu"


def _utf8_kept(sandbox, _rows, _workbook) -> None:
    assert _stored(sandbox).note == "Café visit"  # the good rows are not read as cp1252


CASES = [
    Case("good.csv", 0, posted=2),
    # files that cannot be used at all
    Case("empty.csv", 2, "the file is empty"),
    Case("binary_garbage.csv", 2, "holds a NUL byte: this is a binary file, not CSV"),
    Case("nul_bytes.csv", 2, "line 3 holds a NUL byte"),
    Case("utf16_no_bom.csv", 2, "UTF-16 text without a byte order mark"),
    Case("not_text.csv", 2, "line 3: the text is neither UTF-8 nor Windows-1252"),
    Case("csv_named.xlsx", 2, "this is a text (CSV) file with a workbook name: rename it to .csv"),
    Case("xlsx_named.csv", 2, "this is an Excel workbook saved with a .csv name: rename it to .xlsx"),
    Case("web_page.xls", 2, "this is a web page (HTML/XML) with a workbook name"),
    Case("truncated.xlsx", 2, "the workbook is damaged or incomplete"),
    Case("encrypted.xlsx", 2, "the workbook is password-protected"),
    Case(
        "good.xlsx",
        2,
        "there is no sheet named 'Visits'; the sheets are 'Activities'",
        args=("--sheet", "Visits"),
    ),
    Case("ragged_long.csv", 2, "row 3 has 9 cells but the header has 8"),
    Case("duplicate_headers.csv", 2, "the header 'Note' appears twice: columns C and I"),
    Case("blank_header.csv", 2, "column I has no header but row 2 has a value in it"),
    Case("unclosed_quote.csv", 2, 'row 3: a quoted cell is never closed (a " without its closing ")'),
    # files that are fine, however they look
    Case("header_only.csv", 0, "no data rows under the header: nothing to import"),
    Case("legacy.xls", 0, posted=2),
    Case("utf16_tab.txt", 0, posted=2, check=_utf16),
    Case("date1904.xlsx", 0, posted=1, check=_dates_1904),
    Case(
        "merged.xlsx",
        0,
        "merged cells A2:A4: each row they span was given the merged value",
        posted=4,
        check=_merged,
    ),
    Case("whitespace.csv", 0, posted=1, check=_trimmed),
    # row-level problems: the row goes to the workbook, the rest is imported
    Case(
        "ragged_short.csv",
        1,
        failed={3: "PAN Number (mx_Custom_1): is empty, but a value is required"},
        posted=2,
    ),
    Case(
        "invalid_utf8.csv",
        1,
        "is UTF-8 text, but some bytes in it are not",
        failed={3: "Note: holds bytes that are not UTF-8 text"},
        posted=2,
        check=_utf8_kept,
    ),
    Case(
        "formulas.xlsx",
        1,
        failed={
            3: "Amount (mx_Custom_2): is a formula that was never calculated",
            4: "Amount (mx_Custom_2): shows the error #N/A",
        },
        posted=2,
        check=_formulas,
    ),
    Case(
        "excel_ids.csv",
        1,
        failed={
            3: "Opportunity ID: '1.23457E+17' looks corrupted by Excel",
            4: "Reference (mx_Custom_5): '1.23457E+17' looks corrupted by Excel",
        },
        posted=2,
    ),
    Case(
        "long_number_ids.xlsx",
        1,
        failed={3: "Reference (mx_Custom_5): is a number of 16 digits or more, and Excel keeps only 15"},
        posted=2,
    ),
    Case(
        "serial_dates.csv",
        1,
        failed={3: "Due Date (mx_Custom_3): not a date in the form YYYY-MM-DD"},
        posted=1,
        check=_serials,
    ),
    Case(
        "emails.csv",
        1,
        failed={3: "ends with a '.'", 4: "an address has exactly one '@'"},
        posted=1,
        check=_lowered,
    ),
    Case("newlines.csv", 1, failed={3: "Amount (mx_Custom_2): not a number: 'x'"}, posted=2, check=_newlines),
    Case(
        "long_cell.csv", 1, failed={3: "Amount (mx_Custom_2): not a number: 'x'"}, posted=1, check=_long_cell
    ),
    # mappings that cannot be used
    Case("good.csv", 2, "line 3, column 1: invalid YAML: expected ',' or '}'", mapping="yaml_syntax.yaml"),
    Case(
        "good.csv",
        2,
        "'fields.mx_Custom_1.required': Input should be a valid boolean",
        mapping="wrong_types.yaml",
    ),
    Case(
        "good.csv",
        2,
        "'fields': expected one line per field under it, like  mx_Custom_1: {column: \"PAN\"}, not a list",
        mapping="fields_as_list.yaml",
    ),
    Case("good.csv", 2, "unknown key 'colour'", mapping="unknown_key.yaml"),
    Case("good.csv", 2, "line 2, column 8: YAML aliases (*name) are not allowed", mapping="alias_bomb.yaml"),
    Case("good.csv", 2, "the mapping is empty", mapping="maps_nothing.yaml"),
    Case(
        "good.csv",
        2,
        "names column 'Amout', which the sheet lacks (did you mean 'Amount'?)",
        mapping="missing_column.yaml",
    ),
    Case(
        "good.csv",
        2,
        "custom activity fields are named mx_Custom_1 to mx_Custom_50",
        mapping="not_a_field.yaml",
    ),
]


def _workbook_rows(path: Path) -> dict[int, dict[str, object]]:
    rows = list(openpyxl.load_workbook(path)["Errors"].iter_rows(values_only=True))
    return {line[0]: dict(zip(rows[0], line, strict=True)) for line in rows[1:]}


def _named_in(case: Case, err: str) -> None:
    """An exit-2 answer is one line naming the file it is about."""
    named = BAD / (case.mapping if case.mapping != "mapping.yaml" else case.file)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert str(named) in lines[0], err


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_validate_answers_offline(case, tmp_path, sandbox, env):
    errors = tmp_path / "errors.xlsx"
    result = run_cli(
        "validate", BAD / case.file, "--mapping", BAD / case.mapping, "--errors", errors, *case.args, env=env
    )
    assert result.code == case.exit, result.output
    assert "Traceback" not in result.out + result.err
    assert case.message in result.err, result.output
    assert sandbox.stats.requests == 0
    if case.exit == 2:
        _named_in(case, result.err)
    assert errors.exists() == bool(case.failed)
    if case.failed:
        assert sorted(_workbook_rows(errors)) == sorted(case.failed)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_run_imports_the_rest_or_nothing(case, tmp_path, sandbox, env):
    errors, summary = tmp_path / "errors.xlsx", tmp_path / "summary.json"
    result = run_cli(
        "run",
        BAD / case.file,
        "--mapping",
        BAD / case.mapping,
        "--errors",
        errors,
        "--summary-json",
        summary,
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        *case.args,
        env=env,
    )
    assert result.code == case.exit, result.output
    assert "Traceback" not in result.out + result.err
    assert case.message in result.err, result.output
    if case.exit == 2:  # file or mapping level: nothing sent, no workbook, the summary says why
        _named_in(case, result.err)
        assert sandbox.stats.requests == 0
        assert not errors.exists()
        told = json.loads(summary.read_text())
        assert (told["exit_code"], told["input"]) == (2, str(BAD / case.file))
        assert case.message in told["error"]
        return
    assert len(sandbox.activities()) == case.posted
    rows = _workbook_rows(errors) if case.failed else {}
    assert errors.exists() == bool(case.failed)
    assert sorted(rows) == sorted(case.failed)
    for number, message in case.failed.items():
        assert rows[number]["Error Stage"] == "validation"
        assert message in rows[number]["Error"], rows[number]["Error"]
    if case.check:
        case.check(sandbox, rows, errors)


# --- What cannot be a committed file ----------------------------------------------------------


def _run(tmp_path: Path, env: dict[str, str], source: Path, *extra: str | Path):
    return run_cli(
        "run",
        source,
        "--mapping",
        MAPPING,
        "--errors",
        tmp_path / "errors.xlsx",
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        *extra,
        env=env,
    )


def test_bad_input_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, sandbox, env):
    bomb = make_bad.zip_bomb(tmp_path / "bomb.xlsx", gigabytes=2)
    assert bomb.stat().st_size < 10_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = _run(tmp_path, env, bomb)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.code == 2, result.output
    assert "xl/worksheets/sheet1.xml would unpack from" in result.err
    assert "to 2.1 GB, which no real spreadsheet does (a 'zip bomb')" in result.err
    assert "Traceback" not in result.err
    assert sandbox.stats.requests == 0
    assert grown_mb < 100  # refused from the zip's directory, never unpacked


def test_bad_input_workbook_too_large_when_unpacked_is_refused(tmp_path, sandbox, env, monkeypatch):
    monkeypatch.setattr(workbook_zip, "MAX_UNPACKED_BYTES", 10_000)  # good.xlsx unpacks to ~12 kB
    result = _run(tmp_path, env, BAD / "good.xlsx")
    assert result.code == 2, result.output
    assert "the workbook unpacks to" in result.err
    assert "save the sheet as CSV" in result.err
    assert sandbox.stats.requests == 0


def test_bad_input_csv_too_large_is_refused_with_a_message(tmp_path, sandbox, env, monkeypatch):
    monkeypatch.setattr(loader, "MAX_TEXT_BYTES", 100)
    result = _run(tmp_path, env, BAD / "good.csv")
    assert result.code == 2, result.output
    assert "files over 0 MB are not read" in result.err
    assert "split it into smaller files" in result.err
    assert sandbox.stats.requests == 0


@pytest.mark.skipif(
    not os.environ.get("LSQ_BIG_TESTS"),
    reason="writes a 200 MB file and reads it for ~25 s: set LSQ_BIG_TESTS=1",
)
def test_bad_input_200_mb_csv_is_read_and_validated(tmp_path, env):
    source = tmp_path / "big.csv"
    rows = make_bad.big_csv(source, 200)
    result = run_cli("validate", source, "--mapping", MAPPING, env=env)
    assert result.code == 0, result.output
    assert f"{rows} rows, {rows} valid, 0 invalid" in result.out


def test_bad_input_disk_full_leaves_no_half_written_workbook(tmp_path, sandbox, env, monkeypatch):
    errors = tmp_path / "errors.xlsx"
    shutil.copy(BAD / "good.xlsx", errors)  # last night's workbook
    old = errors.read_bytes()

    def full(file, _sheets):  # the disk fills up halfway through the workbook
        file.write(b"PK\x03\x04 half a workbook")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "_write_workbook", full)
    result = _run(tmp_path, env, BAD / "excel_ids.csv", "--summary-json", tmp_path / "summary.json")
    assert result.code == 1, result.output  # rows were sent: the run's counts are still told
    assert "Error workbook NOT written" in result.out
    assert f"{errors}: cannot write the error workbook: No space left on device" in result.err
    assert "Traceback" not in result.err
    assert errors.read_bytes() == old  # the old workbook is intact, not replaced by half a new one
    assert list(tmp_path.glob(".errors.xlsx*")) == []  # no temp file left behind
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["rows_posted"], summary["rows_failed"], summary["error_report"]) == (2, 2, None)
    assert "No space left on device" in summary["error_report_problem"]


def test_bad_input_disk_full_before_sending_exits_2(tmp_path, sandbox, env, monkeypatch):
    def full(file, _sheets):
        file.write(b"PK\x03\x04 half a workbook")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "_write_workbook", full)
    result = run_cli(
        "validate", BAD / "excel_ids.csv", "--mapping", MAPPING, "--errors", tmp_path / "e.xlsx", env=env
    )
    assert result.code == 2, result.output
    assert "cannot write the error workbook: No space left on device" in result.err
    assert sorted(tmp_path.glob("*e.xlsx*")) == []


# --- The environment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "extra", "code", "message"),
    [
        ({"LSQ_SECRET_KEY": ""}, (), 2, "LSQ_SECRET_KEY not set"),
        ({"LSQ_ACCESS_KEY": " "}, (), 2, "LSQ_ACCESS_KEY not set"),
        (
            {"LSQ_SECRET_KEY": "abc\ndef"},
            (),
            2,
            "LSQ_SECRET_KEY holds a character an HTTP header cannot carry",
        ),
        (
            {"LSQ_SECRET_KEY": "abc\u201ddef"},
            (),
            2,
            "LSQ_SECRET_KEY holds a character an HTTP header cannot carry",
        ),
        ({"LSQ_HOST": "http://api.leadsquared.com"}, (), 2, "the API keys would travel in clear text"),
        ({"LSQ_HOST": "ftp://api.leadsquared.com"}, (), 2, "is not a host name or an http(s) URL"),
        (
            {},
            ("--ca-bundle", "/nonexistent/proxy.pem"),
            2,
            "--ca-bundle /nonexistent/proxy.pem: no such file",
        ),
        ({"LSQ_SECRET_KEY": "wrong"}, (), 3, "refused the API keys"),
    ],
    ids=[
        "no-secret",
        "blank-access",
        "newline-in-key",
        "curly-quote-in-key",
        "http-off-loopback",
        "ftp",
        "missing-ca-bundle",
        "wrong-keys",
    ],
)
def test_bad_input_environment(tmp_path, sandbox, env, change, extra, code, message):
    result = _run(tmp_path, {**env, **change}, BAD / "good.csv", *extra)
    assert result.code == code, result.output
    assert message in result.err
    assert "Traceback" not in result.err
    assert sandbox.stats.bulk_calls == 0
    if "LSQ_SECRET_KEY" in change and change["LSQ_SECRET_KEY"].strip():
        assert change["LSQ_SECRET_KEY"] not in result.out + result.err


def test_bad_input_unreachable_host_sends_nothing_and_lists_rows_not_sent(tmp_path, env):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _run(
        tmp_path, {**env, "LSQ_HOST": f"http://127.0.0.1:{port}"}, BAD / "good.csv", "--retries", "0"
    )
    assert result.code == 3, result.output
    assert f"cannot reach http://127.0.0.1:{port}" in result.err
    assert {row["Error Stage"] for row in _workbook_rows(tmp_path / "errors.xlsx").values()} == {"not sent"}


def test_bad_input_unwritable_errors_path_is_found_before_sending(tmp_path, sandbox, env):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run_cli(
        "run",
        BAD / "excel_ids.csv",
        "--mapping",
        MAPPING,
        "--errors",
        blocker / "errors.xlsx",
        "--rate-limit",
        FAST_LIMIT,
        "--no-progress",
        env=env,
    )
    assert result.code == 2, result.output
    assert f"{blocker / 'errors.xlsx'}: cannot write here" in result.err
    assert sandbox.stats.requests == 0


# --- TLS --------------------------------------------------------------------------------------


class _Answer401(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            b'{"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException", "ExceptionMessage": "no"}'
        )
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path):
    """An HTTPS server on loopback with a self-signed certificate for IP 127.0.0.1; yields (url, cert)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer401)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_bad_input_tls_failure_is_clear_and_never_unverified(tmp_path, env, https_server):
    url, _cert = https_server
    result = _run(tmp_path, {**env, "LSQ_HOST": url}, BAD / "good.csv")
    assert result.code == 3, result.output
    assert f"TLS verification of {url} failed" in result.err
    assert "pass its certificate with --ca-bundle" in result.err
    assert "Traceback" not in result.err
    rows = _workbook_rows(tmp_path / "errors.xlsx")
    assert {row["Error Stage"] for row in rows.values()} == {"not sent"}


def test_bad_input_ca_bundle_makes_the_tls_error_go_away(tmp_path, env, https_server):
    url, cert = https_server
    result = _run(tmp_path, {**env, "LSQ_HOST": url}, BAD / "good.csv", "--ca-bundle", str(cert))
    assert result.code == 3, result.output  # the server answers 401 to everything
    assert "TLS verification" not in result.err
    assert f"{url} refused the API keys" in result.err
