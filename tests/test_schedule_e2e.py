"""Scheduled use: the README's cron and systemd examples run as written, logs and summaries a job can trust.

The examples are parsed from README.md, so a change there that breaks them breaks these tests.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from importer._logjson import JsonLines
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS, Sandbox
from tests.conftest import REPO, run_cli
from tests.helpers import write_csv, write_yaml

README = (REPO / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent  # the venv that holds the lsq-import this checkout installed
MAPPING = """\
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""


def _rows(count: int, *, first: int = 0) -> list[dict[str, str]]:
    return [
        {"Opportunity": DEFAULT_OPPORTUNITIES[n % 3], "Owner": DEFAULT_USERS[0], "PAN": f"PAN{n}"}
        for n in range(first, first + count)
    ]


def _block(language: str, containing: str) -> str:
    """The README's fenced block of `language` that contains `containing`."""
    for match in re.finditer(rf"```{language}\n(.*?)```", README, re.DOTALL):
        if containing in match.group(1):
            return match.group(1)
    raise AssertionError(f"README.md has no ```{language} block with {containing!r}")


def _fresh_machine(tmp_path: Path, sandbox: Sandbox) -> tuple[Path, Path]:
    """/srv/imports as the README sets it up: lsq.env, a mapping, tonight's sheet; no logs/, no archive/."""
    root = tmp_path / "srv" / "imports"
    (root / "incoming").mkdir(parents=True)
    (root / "mappings").mkdir()
    (root / "mappings" / "visits.yaml").write_text(MAPPING, encoding="utf-8")
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Opportunity", "Owner", "PAN"])
    for row in _rows(5):
        sheet.append(list(row.values()))
    book.save(root / "incoming" / "visits.xlsx")
    (root / "incoming" / "~$visits.xlsx").write_bytes(b"\x0bAsha Rao")  # Excel has it open
    (root / "lsq.env").write_text(_fake_env(sandbox), encoding="utf-8")
    home = tmp_path / "home" / "imports"
    home.mkdir(parents=True)
    return root, home


def _fake_env(sandbox: Sandbox) -> str:
    """The README's lsq.env with the sandbox's values, in the README's own quoting."""
    values = {
        "LSQ_ACCESS_KEY": sandbox.access_key,
        "LSQ_SECRET_KEY": sandbox.secret_key,
        "LSQ_HOST": sandbox.url,
    }
    lines = []
    for line in _block("sh", "LSQ_ACCESS_KEY").splitlines():
        key, _, value = line.partition("=")
        quote = value[:1] if value[:1] in {"'", '"'} else ""
        lines.append(f"{key}={quote}{values[key]}{quote}" if key in values else line)
    assert "$" in sandbox.access_key  # so an unquoted key would be mangled by the shell
    return "\n".join(lines) + "\n"


def _as_here(text: str, root: Path) -> str:
    """A README path on this machine: /srv/imports is the sandbox folder, the venv is this one."""
    return text.replace("/srv/lsq/.venv/bin/", f"{BIN}/").replace("/srv/imports", str(root))


def _check_the_night(root: Path, sandbox: Sandbox, output: str) -> dict[str, object]:
    assert len(sandbox.activities()) == 5, output
    assert sorted(p.name.split(".")[0] for p in (root / "archive").iterdir()) == ["visits"], output
    assert [p.name for p in (root / "incoming").iterdir()] == ["~$visits.xlsx"], output
    summary = json.loads((root / "logs" / "last.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["files"][0]["rows_posted"] == 5
    return summary


def test_readme_cron_line_runs_as_written_on_a_fresh_machine(sandbox, tmp_path):
    root, home = _fresh_machine(tmp_path, sandbox)
    line = next(
        line for line in _block("cron", "lsq-import run").splitlines() if line and not line.startswith("#")
    )
    command = line.split(None, 5)[5]  # after m h dom mon dow
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LOGNAME": "imports", "SHELL": "/bin/sh"}
    done = subprocess.run(  # the README's own commands, as cron and systemd run them
        ["/bin/sh", "-c", _as_here(command, root)],
        env=cron_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = f"{done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    assert done.stdout == done.stderr == "", output  # cron mails anything left over
    _check_the_night(root, sandbox, output)
    lines = (root / "logs" / "lsq-import.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line one JSON object
    assert all("time" in entry for entry in entries), lines
    assert [entry["time"] for entry in entries] == sorted(entry["time"] for entry in entries), lines
    notes = [entry["message"] for entry in entries if "open in Excel" in entry.get("message", "")]
    assert notes == [
        "visits.xlsx is open in Excel: its lock file ~$visits.xlsx is skipped, and visits.xlsx is "
        "imported as it was last saved"
    ], lines
    assert entries[-1]["event"] == "summary"


def _systemd_environment_file(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (no shell: no `export`, no expansion).

    Comments start with # or ;, a value in single quotes is literal, in double quotes backslash
    escapes the next character; a line whose key is not a variable name (`export X=1`) is ignored,
    as systemd ignores it with a warning.
    """
    variables: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        variables[key] = value
    return variables


def _unit_section(unit: str, section: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    current = None
    for line in unit.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
    return keys


def test_readme_systemd_service_runs_as_written_on_a_fresh_machine(sandbox, tmp_path):
    root, home = _fresh_machine(tmp_path, sandbox)
    units = _block("ini", "lsq-import.service")
    service = units.split("# /etc/systemd/system/lsq-import.timer")[0]
    keys = _unit_section(service, "Service")
    exec_start = _as_here(keys["ExecStart"], root)
    assert "$" not in exec_start
    assert "%" not in exec_start
    environment = _systemd_environment_file(Path(_as_here(keys["EnvironmentFile"], root)).read_text())
    assert set(environment) >= {"LSQ_ACCESS_KEY", "LSQ_SECRET_KEY", "LSQ_HOST"}
    user_env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "USER": keys["User"], "LOGNAME": keys["User"]}
    done = subprocess.run(  # the README's own commands, as cron and systemd run them
        shlex.split(exec_start),
        cwd=_as_here(keys["WorkingDirectory"], root),
        env={**user_env, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = f"{done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    _check_the_night(root, sandbox, output)
    for line in (done.stdout + done.stderr).splitlines():  # what the journal would hold
        assert "time" in json.loads(line), output


def test_readme_env_file_is_one_for_cron_and_systemd(sandbox):
    """The shell reading `set -a; . ./lsq.env; set +a` and systemd see the same values."""
    text = _fake_env(sandbox)
    shell = subprocess.run(  # the README's own commands, as cron and systemd run them
        [
            "/bin/sh",
            "-c",
            'set -a; . /dev/stdin; set +a; printf "%s\\n%s\\n%s" "$LSQ_ACCESS_KEY" "$LSQ_SECRET_KEY" "$LSQ_HOST"',
        ],
        input=text,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    systemd = _systemd_environment_file(text)
    assert shell.stdout.splitlines() == [
        systemd["LSQ_ACCESS_KEY"],
        systemd["LSQ_SECRET_KEY"],
        systemd["LSQ_HOST"],
    ]
    assert systemd["LSQ_ACCESS_KEY"] == sandbox.access_key


def _at_each_bulk_add(sandbox: Sandbox, hook: Callable[[], None]) -> None:
    """Run `hook` as each bulk add arrives, before it is answered: the disk changes mid-run."""
    routes = sandbox._service._routes
    path = next(path for path in routes if "Bulk/CustomActivity" in path)
    method, bulk_add = routes[path]

    def hooked(request: Any) -> Any:
        hook()
        return bulk_add(request)

    routes[path] = (method, hooked)


def _replace_with_a_file(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)
        folder.write_text("a file now, so nothing can be written inside")


def test_run_summary_unwritable_after_rows_were_posted_keeps_the_runs_exit_code(sandbox, env, tmp_path):
    write_csv(tmp_path / "visits.csv", _rows(4))
    logs = tmp_path / "logs"
    _at_each_bulk_add(sandbox, lambda: _replace_with_a_file(logs))
    result = run_cli(
        "run", tmp_path / "visits.csv", "-m", write_yaml(tmp_path, MAPPING), "--summary-json",
        logs / "last.json", "--settle-time", "0", env=env,
    )  # fmt: skip
    assert len(sandbox.activities()) == 4
    assert result.code == 0, result.output  # every row posted: not 2, "nothing was sent"
    assert f"summary NOT written: {logs / 'last.json'}: cannot write" in result.err, result.output


def test_run_pattern_summary_unwritable_after_rows_were_posted_keeps_the_runs_exit_code(
    sandbox, env, tmp_path
):
    (tmp_path / "in").mkdir()
    write_csv(tmp_path / "in" / "a.csv", _rows(2))
    write_csv(tmp_path / "in" / "b.csv", _rows(2, first=5))
    logs = tmp_path / "logs"
    _at_each_bulk_add(sandbox, lambda: _replace_with_a_file(logs))
    result = run_cli(
        "run", tmp_path / "in" / "*.csv", "-m", write_yaml(tmp_path, MAPPING), "--summary-json",
        logs / "last.json", "--settle-time", "0", "--log-format", "json", env=env,
    )  # fmt: skip
    assert len(sandbox.activities()) == 4
    assert result.code == 0, result.output
    errors = [json.loads(line) for line in result.err.splitlines()]
    assert [e["level"] for e in errors if "summary NOT written" in e["message"]] == ["error"], result.output


def test_run_creates_missing_output_folders_before_the_first_call(sandbox, env, tmp_path):
    write_csv(
        tmp_path / "visits.csv",
        [*_rows(2), {"Opportunity": DEFAULT_OPPORTUNITIES[0], "Owner": "x", "PAN": ""}],
    )
    out = tmp_path / "out"
    result = run_cli(
        "run", tmp_path / "visits.csv", "-m", write_yaml(tmp_path, MAPPING), "--settle-time", "0",
        "--summary-json", out / "json" / "last.json", "--errors", out / "errors" / "visits.errors.xlsx",
        "--log-file", out / "logs" / "run.log", env=env,
    )  # fmt: skip
    assert result.code == 1, result.output
    assert json.loads((out / "json" / "last.json").read_text())["rows_posted"] == 2
    assert (out / "errors" / "visits.errors.xlsx").is_file()
    assert (out / "logs" / "run.log").is_file()


def test_run_output_folder_that_cannot_be_made_stops_before_sending(sandbox, env, tmp_path):
    write_csv(tmp_path / "visits.csv", _rows(2))
    (tmp_path / "logs").write_text("a file where the folder should be")
    result = run_cli(
        "run", tmp_path / "visits.csv", "-m", write_yaml(tmp_path, MAPPING), "--settle-time", "0",
        "--summary-json", tmp_path / "logs" / "last.json", env=env,
    )  # fmt: skip
    assert result.code == 2, result.output
    assert sandbox.stats.bulk_calls == 0
    assert (
        f"{tmp_path / 'logs' / 'last.json'}: cannot write here, {tmp_path / 'logs'} is a file" in result.err
    ), result.output


def test_run_json_log_format_every_line_is_json_with_a_time_in_order(sandbox, env, tmp_path):
    write_csv(
        tmp_path / "visits.csv",
        [*_rows(3), {"Opportunity": DEFAULT_OPPORTUNITIES[0], "Owner": "x@", "PAN": "P"}],
    )
    (tmp_path / "visits.xlsx").write_bytes(b"not a workbook")  # a second input: an error line
    result = run_cli(
        "run", tmp_path / "visits.*", "-m", write_yaml(tmp_path, MAPPING), "--settle-time", "0",
        "--log-format", "json", "--summary-json", tmp_path / "last.json", env=env,
    )  # fmt: skip
    assert result.code == 2, result.output  # the worst of the two files
    err = [json.loads(line) for line in result.err.splitlines()]
    out = [json.loads(line) for line in result.out.splitlines()]
    assert all("time" in entry and "level" in entry for entry in err), result.output
    assert all("time" in entry for entry in out), result.output
    assert [e["event"] for e in out if "event" in e] == ["summary"], result.output
    assert [e["level"] for e in err if "visits.xlsx" in e["message"]] == ["error"], result.output
    times = [entry["time"] for entry in err]
    assert times == sorted(times)


def test_run_nothing_to_do_writes_a_fresh_summary(sandbox, env, tmp_path):
    summary = tmp_path / "last.json"
    summary.write_text(
        json.dumps({"files": [{"input": "yesterday.xlsx", "rows_posted": 190}], "exit_code": 0})
    )
    result = run_cli(
        "run", tmp_path / "incoming" / "*.xlsx", "-m", write_yaml(tmp_path, MAPPING),
        "--summary-json", summary, env=env,
    )  # fmt: skip
    assert result.code == 0, result.output
    written = json.loads(summary.read_text())
    assert written["files"] == []
    assert written["note"] == "no file matches the pattern: nothing to do"
    assert "finished_at" in written
    assert "nothing to do" in result.err


def test_run_skips_excel_and_libreoffice_lock_files_with_a_note(sandbox, env, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Opportunity", "Owner", "PAN"])
    for row in _rows(2):
        sheet.append(list(row.values()))
    book.save(incoming / "visits.xlsx")
    (incoming / "~$visits.xlsx").write_bytes(b"\x0bAsha Rao")
    (incoming / ".~lock.visits.xlsx#").write_text(",Asha Rao,laptop,02.12.2026 01:10,file:///home/asha;")
    mapping = write_yaml(tmp_path, MAPPING)
    for pattern, program in (("*.xlsx", "Excel"), ("*", "Excel"), (".*", "LibreOffice")):
        result = run_cli("run", incoming / pattern, "-m", mapping, "--settle-time", "0", env=env)
        assert result.code == 0, result.output
        assert f"visits.xlsx is open in {program}: its lock file" in result.err, result.output
    assert len(sandbox.activities()) == 2  # the sheet once; a second run skips its rows


def test_validate_takes_a_pattern_and_writes_one_summary(sandbox, env, tmp_path):
    (tmp_path / "in").mkdir()
    write_csv(tmp_path / "in" / "a.csv", _rows(2))
    write_csv(tmp_path / "in" / "b.csv", [{"Opportunity": DEFAULT_OPPORTUNITIES[0], "Owner": "x", "PAN": ""}])
    result = run_cli(
        "validate", tmp_path / "in" / "*.csv", "-m", write_yaml(tmp_path, MAPPING), "--summary-json",
        tmp_path / "logs" / "v.json",
    )  # fmt: skip
    assert result.code == 1, result.output
    assert "a.csv: 2 rows, 2 valid, 0 invalid" in result.out
    assert "b.csv: 1 rows, 0 valid, 1 invalid" in result.out
    written = json.loads((tmp_path / "logs" / "v.json").read_text())
    assert [(f["input"].rsplit(os.sep, 1)[-1], f["rows_failed"]) for f in written["files"]] == [
        ("a.csv", 0),
        ("b.csv", 1),
    ]
    assert sandbox.stats.bulk_calls == 0


def test_json_log_format_a_mistyped_command_line_is_one_json_line(tmp_path):
    result = run_cli("run", tmp_path / "visits.xlsx", "--log-format", "json")  # no --mapping
    assert result.code == 2, result.output
    (line,) = result.err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["message"] == "run: the following arguments are required: --mapping/-m"
    assert "time" in entry
    text = run_cli("run", tmp_path / "visits.xlsx")
    assert text.err.startswith("usage: lsq-import run")
    assert text.err.endswith("lsq-import run: error: the following arguments are required: --mapping/-m\n")


@pytest.mark.parametrize(
    ("line", "level", "message"),
    [
        ("lsq-import: error: visits.xlsx: the file is empty", "error", "visits.xlsx: the file is empty"),
        ("lsq-import: note: read the sheet 'Visits'", "info", "read the sheet 'Visits'"),
        ("visits.xlsx: 5 rows", "info", "visits.xlsx: 5 rows"),
        ('{"event": "summary", "rows_posted": 5}', None, None),
    ],
)
def test_json_lines_turn_every_line_into_one_object_with_a_time(line, level, message):
    stream = io.StringIO()
    lines = JsonLines(stream)
    lines.write(line[:5])  # a line written in pieces is one object
    lines.write(line[5:] + "\n")
    (written,) = stream.getvalue().splitlines()
    entry = json.loads(written)
    assert "time" in entry
    if level is None:
        assert (entry["event"], entry["rows_posted"]) == ("summary", 5)
    else:
        assert (entry["level"], entry["message"]) == (level, message)


def test_run_without_keys_still_writes_its_summary_in_a_new_folder(tmp_path):
    write_csv(tmp_path / "visits.csv", _rows(1))
    summary = tmp_path / "logs" / "last.json"
    result = run_cli(
        "run", tmp_path / "visits.csv", "-m", write_yaml(tmp_path, MAPPING), "--summary-json", summary
    )
    assert result.code == 2, result.output
    written = json.loads(summary.read_text())
    assert written["exit_code"] == 2
    assert "LSQ_HOST" in written["error"]
