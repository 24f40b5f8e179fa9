"""The API keys never leave the process except in request headers.

Failing imports (bad keys, timeouts, 500s, dropped connections) run with recognisable keys at
the highest verbosity, with every output the tool can write, and every byte it printed or wrote
is searched for them: stdout, stderr, the log file, the summary, the journal (raw SQLite files),
the metadata cache and the error workbook (each member of the zip, unpacked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from importer.sandbox import BULK_ADD_PATH, Account, Faults, Sandbox, endpoint_name
from tests.conftest import run_cli
from tests.data.bad import make_bad

SECRET = "S3CRET-canary-4f2a"  # a canary: searched for in every output
ACCESS = "u$ACCESS-canary-9b1c"
CANARIES = [SECRET, ACCESS, quote(SECRET, safe=""), quote(ACCESS, safe="")]
BAD = Path(__file__).parent / "data" / "bad"


def _environment(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        "LSQ_ACCESS_KEY": ACCESS,
        "LSQ_SECRET_KEY": SECRET,
        "LSQ_HOST": sandbox.url,
        "LSQ_IMPORT_CACHE_DIR": str(tmp_path / "cache"),
        "LSQ_IMPORT_STATE_DIR": str(tmp_path / "state"),
    }


def _source(tmp_path: Path) -> Path:
    """Valid rows on several opportunities, and one invalid row, so every output gets written."""
    rows = [make_bad.row(make_bad.OPP[i % 4], PAN=f"P{i}") for i in range(8)] + [make_bad.row(Amount="x")]
    path = tmp_path / "visits.csv"
    path.write_text(make_bad.table_csv(rows), encoding="utf-8")
    return path


def _arguments(tmp_path: Path, log_format: str) -> list[str | Path]:
    return [
        "run",
        _source(tmp_path),
        "--mapping",
        BAD / "mapping.yaml",
        "-vv",
        "--log-file",
        tmp_path / "run.log",
        "--log-format",
        log_format,
        "--summary-json",
        tmp_path / "summary.json",
        "--journal",
        tmp_path / "journal.sqlite",
        "--errors",
        tmp_path / "errors.xlsx",
        "--rate-limit",
        "50/1",
        "--timeout",
        "0.5",
        "--retries",
        "1",
        "--no-progress",
        "--concurrency",
        "2",
    ]


def _written_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, and every member of every zip (the .xlsx) unpacked."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found[str(path)] = data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    found[f"{path}!{member}"] = archive.read(member)
    return found


def _assert_no_keys(tmp_path: Path, *printed: str) -> None:
    texts = {"printed": "\n".join(printed).encode()} | _written_bytes(tmp_path)
    assert (tmp_path / "run.log").exists()
    for where, data in texts.items():
        for canary in CANARIES:
            assert canary.encode() not in data, f"{canary} found in {where}"
            assert canary.encode("utf-16-le") not in data, f"{canary} (UTF-16) found in {where}"


def _assert_keys_only_in_headers(sandbox: Sandbox) -> None:
    assert sandbox.request_log, "the run made no request"
    for record in sandbox.request_log:
        assert {"x-LSQ-AccessKey", "x-LSQ-SecretKey"} <= set(record.header_names)
        query = str(record.query)
        assert not any(canary in query for canary in CANARIES), record
        assert not any(canary.encode() in record.body_bytes for canary in CANARIES), record


SCENARIOS = {
    # name: (sandbox account keys, faults, expected exit code)
    "401": (Account(access_key=ACCESS, secret_key="the-real-secret"), None, 3),
    "timeouts": (Account(access_key=ACCESS, secret_key=SECRET), Faults(latency_ms=(1500, 1500)), 3),
    # bulk calls answer after 1.5 s (past --timeout 0.5); the checks before them answer at once
    "bulk-timeouts": (
        Account(access_key=ACCESS, secret_key=SECRET),
        Faults(latency_ms_by_endpoint={endpoint_name(BULK_ADD_PATH): (1500, 1500)}),
        1,
    ),
    "500s-and-drops": (Account(access_key=ACCESS, secret_key=SECRET), None, 1),
}


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_secrets_never_written_by_a_failing_import(tmp_path, scenario, log_format):
    account, faults, code = SCENARIOS[scenario]
    with Sandbox(account, faults, rate_limit=(50, 1.0)) as sandbox:
        if scenario == "500s-and-drops":
            sandbox.queue_faults("500_before", "500_after", "drop_after", "500_before")
        result = run_cli(*_arguments(tmp_path, log_format), env=_environment(sandbox, tmp_path))
        assert result.code == code, result.output
        _assert_keys_only_in_headers(sandbox)
    assert "Traceback" not in result.err
    _assert_no_keys(tmp_path, result.out, result.err)


def test_secrets_never_printed_by_the_installed_command(tmp_path):
    with Sandbox(Account(access_key=ACCESS, secret_key=SECRET), rate_limit=(50, 1.0)) as sandbox:
        sandbox.queue_faults("500_after", "drop_after", "500_before")
        process = subprocess.run(
            [sys.executable, "-m", "importer", *map(str, _arguments(tmp_path, "text"))],
            env={**os.environ, **_environment(sandbox, tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        _assert_keys_only_in_headers(sandbox)
    assert process.returncode == 1, process.stdout + process.stderr
    assert "Traceback" not in process.stderr
    _assert_no_keys(tmp_path, process.stdout, process.stderr)


def test_secrets_bad_key_characters_are_refused_without_showing_the_key(tmp_path):
    with Sandbox(rate_limit=(50, 1.0)) as sandbox:
        env = {**_environment(sandbox, tmp_path), "LSQ_SECRET_KEY": f"{SECRET}\r\nX-Evil: 1"}
        result = run_cli(*_arguments(tmp_path, "text"), env=env)
        assert sandbox.stats.requests == 0
    assert result.code == 2, result.output
    assert "LSQ_SECRET_KEY holds a character an HTTP header cannot carry" in result.err
    _assert_no_keys(tmp_path, result.out, result.err)
