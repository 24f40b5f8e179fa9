"""`importer.runs`: a pattern of files run from Python, as a nightly job or the web page would."""

from __future__ import annotations

import json

import pytest

from importer.client import Credentials
from importer.errors import ExitStatus, InputFileError, UsageError
from importer.runner import ImportConfig
from importer.runs import run_pattern, validate_pattern
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS
from importer.throttle import RateLimit
from tests.conftest import run_cli
from tests.helpers import write_csv, write_yaml

MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""


def _rows(count: int, *, bad: int = 0, first: int = 0) -> list[dict[str, str]]:
    rows = [
        {"Opportunity": DEFAULT_OPPORTUNITIES[n % 2], "Owner": DEFAULT_USERS[0], "PAN": f"P{n}"}
        for n in range(first, first + count)
    ]
    for row in rows[:bad]:
        row["PAN"] = ""  # required: a validation failure
    return rows


def _config(sandbox, tmp_path, **extra) -> ImportConfig:
    return ImportConfig(
        input_path=tmp_path / "unused",
        mapping_path=write_yaml(tmp_path, MAPPING),
        host=sandbox.url,
        credentials=Credentials(sandbox.access_key, sandbox.secret_key),
        rate_limit=RateLimit(50, 1.0),
        **extra,
    )


def test_run_pattern_runs_each_file_archives_it_and_writes_one_summary(sandbox, tmp_path):
    incoming, archive = tmp_path / "incoming", tmp_path / "archive"
    incoming.mkdir()
    write_csv(incoming / "a.csv", _rows(3, bad=1))
    write_csv(incoming / "b.csv", _rows(2, first=10))  # other rows: a row's identity is its content
    (incoming / "c.csv").write_bytes(b"")  # unusable: an empty file stops only itself
    summary = tmp_path / "all.json"
    environ = {"LSQ_IMPORT_STATE_DIR": str(tmp_path / "state")}
    config = _config(sandbox, tmp_path, summary_json=summary)
    result = run_pattern(config, str(incoming / "*.csv"), archive_dir=archive, environ=environ)
    assert [(path.name, r.rows_posted) for path, r in result.results] == [("a.csv", 2), ("b.csv", 2)]
    assert [(path.name, type(error)) for path, error in result.errors] == [("c.csv", InputFileError)]
    assert result.exit_status is ExitStatus.INPUT_ERROR  # the worst of the three files
    assert len(sandbox.activities()) == 4
    assert sorted(p.name.split(".")[0] for p in archive.iterdir()) == ["a", "a", "b"]  # + a's workbook
    assert [p.name for p in incoming.iterdir()] == ["c.csv"]  # never imported: stays
    written = json.loads(summary.read_text())
    assert written.pop("finished_at")  # a fresh summary says when it was written
    assert written == result.summary()
    assert [f["exit_code"] for f in written["files"]] == [1, 0, 2]
    assert written["exit_code"] == 2
    # one ledger and one limiter for the account, shared by every file of the pattern
    assert sorted(p.parent.name for p in (tmp_path / "state").rglob("*.sqlite")) == ["ledgers", "limits"]


def test_run_pattern_of_one_path_raises_its_error(sandbox, tmp_path):
    with pytest.raises(InputFileError):
        run_pattern(_config(sandbox, tmp_path), str(tmp_path / "missing.csv"))


def test_run_pattern_with_one_errors_path_for_many_files_is_refused(sandbox, tmp_path):
    write_csv(tmp_path / "a.csv", _rows(1))
    write_csv(tmp_path / "b.csv", _rows(1))
    config = _config(sandbox, tmp_path, errors_path=tmp_path / "errors.xlsx")
    with pytest.raises(UsageError, match=r"^errors_path names one file"):
        run_pattern(config, str(tmp_path / "*.csv"))
    assert sandbox.stats.bulk_calls == 0


def test_run_pattern_naming_no_file_does_nothing(sandbox, tmp_path):
    result = run_pattern(_config(sandbox, tmp_path), str(tmp_path / "*.csv"))
    assert result.results == []
    assert result.exit_status is ExitStatus.OK


def test_validate_pattern_reports_each_file_and_sends_nothing(sandbox, tmp_path):
    write_csv(tmp_path / "a.csv", _rows(3, bad=1))
    write_csv(tmp_path / "b.csv", _rows(2))
    result = validate_pattern(_config(sandbox, tmp_path), str(tmp_path / "*.csv"))
    assert [(p.name, r.rows_total, r.rows_failed) for p, r in result.results] == [
        ("a.csv", 3, 1),
        ("b.csv", 2, 0),
    ]
    assert result.exit_status is ExitStatus.ROWS_FAILED
    assert sandbox.stats.bulk_calls == 0


def test_config_errors_name_the_field_and_the_cli_names_the_flag(tmp_path):
    with pytest.raises(UsageError, match=r"^batch_size must be between 1 and 25, got 30"):
        ImportConfig(input_path=tmp_path / "a.csv", mapping_path=tmp_path / "m.yaml", batch_size=30)
    write_csv(tmp_path / "a.csv", _rows(1))
    result = run_cli(
        "validate", tmp_path / "a.csv", "-m", write_yaml(tmp_path, MAPPING), "--batch-size", "30"
    )
    assert result.code == 2, result.output
    assert "lsq-import: error: --batch-size must be between 1 and 25, got 30" in result.err
