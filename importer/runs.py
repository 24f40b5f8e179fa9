"""Runs of a pattern of files: each file imported (or validated) in turn, with one combined result.

A nightly job points `run_pattern` at `exports/*.xlsx`: each file gets its own error workbook and
journal, a fully processed file is moved to the archive folder, a file that cannot be read does
not stop the others, and an interrupted run or an unusable account stops the rest.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from importer.atomic import prepare_folder
from importer.errors import ExitStatus, ImporterError, UsageError
from importer.events import Progress
from importer.runner import (
    ImportConfig,
    ImportResult,
    default_error_report_path,
    run_import,
    validate_file,
    write_summary,
)
from importer.schedule import archive_name, check_archive_dir, find_inputs, move_to_archive

__all__ = ["FileDone", "PatternResult", "run_pattern", "severity", "validate_pattern"]

log = logging.getLogger(__name__)

FileDone = Callable[[Path, "ImportResult | ImporterError", dict[str, object]], None]
"""Told of each file as it is done: its path, its result (or why it could not be used), its summary."""

_SEVERITY = [
    ExitStatus.OK,
    ExitStatus.ROWS_FAILED,
    ExitStatus.INPUT_ERROR,
    ExitStatus.API_UNUSABLE,
    ExitStatus.LEDGER_ERROR,
    ExitStatus.INTERRUPTED,
]


def severity(status: ExitStatus) -> int:
    """How bad an exit status is, for picking the worst of several files."""
    return _SEVERITY.index(status)


@dataclass
class PatternResult:
    """What a run over a pattern did, file by file."""

    pattern: str
    results: list[tuple[Path, ImportResult]] = field(default_factory=list)
    errors: list[tuple[Path, ImporterError]] = field(default_factory=list)  # files that could not be used
    summaries: list[dict[str, object]] = field(default_factory=list)  # one per file, in order
    summary_problem: str | None = None  # why --summary-json could not be written (the run went on)

    @property
    def exit_status(self) -> ExitStatus:
        """The worst of the files' statuses; OK when the pattern named no file."""
        statuses = [result.exit_status for _, result in self.results]
        statuses += [error.exit_status for _, error in self.errors]
        return max(statuses, key=severity, default=ExitStatus.OK)

    def summary(self) -> dict[str, object]:
        """The combined summary a pattern run writes as --summary-json."""
        data: dict[str, object] = {"pattern": self.pattern, "files": self.summaries}
        if not self.summaries:
            data["note"] = "no file matches the pattern: nothing to do"
        data["exit_code"] = int(self.exit_status)
        return data


def run_pattern(
    config: ImportConfig,
    pattern: str,
    *,
    archive_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    on_file_done: FileDone | None = None,
) -> PatternResult:
    """Import every file `pattern` names with `config` (its input_path is replaced per file).

    A plain path is one file, and its errors are raised as they are; with a glob pattern a file
    that cannot be used is recorded and the next one runs. `config.errors_path` and
    `config.summary_json` name one file each: with a pattern the first must be unset and the
    summary is the combined one, written whatever happened (no file matching included). With
    `archive_dir`, each file whose every row is settled is moved there, its error workbook beside it.
    Every output folder is created, and checked writable, before the first call.
    """
    env = dict(os.environ if environ is None else environ)
    if archive_dir is not None:
        check_archive_dir(archive_dir)
    _prepare_outputs(config, archive_dir)

    def import_one(index: int, count: int, path: Path) -> tuple[ImportResult, dict[str, object]]:
        file_config = _config_for(
            config,
            path,
            index=index,
            count=count,
            archive_dir=archive_dir,
            is_pattern=glob.has_magic(pattern),
            env=env,
        )
        outcome = run_import(file_config.config)
        summary: dict[str, object] = {"input": str(path), **outcome.summary()}
        archived = file_config.archive_target
        if archived is not None and _settled(outcome):
            summary["archived_to"] = str(move_to_archive(path, archived))
            _archive_workbook(outcome, archived, summary)
        return outcome, summary

    return _over_files(config, pattern, import_one, on_file_done, stop_on=_STOPS)


def validate_pattern(
    config: ImportConfig, pattern: str, *, on_file_done: FileDone | None = None
) -> PatternResult:
    """What `validate` does for every file `pattern` names: read, map, validate, plan; sends nothing."""
    _prepare_outputs(config, None)

    def validate_one(index: int, count: int, path: Path) -> tuple[ImportResult, dict[str, object]]:
        file_config = replace(
            config,
            input_path=path,
            summary_json=None if glob.has_magic(pattern) else config.summary_json,
            on_progress=_numbered(config, index, count),
        )
        outcome = validate_file(file_config)
        return outcome, {"input": str(path), **outcome.summary()}

    return _over_files(config, pattern, validate_one, on_file_done, stop_on=())


_STOPS = (ExitStatus.INTERRUPTED, ExitStatus.API_UNUSABLE, ExitStatus.LEDGER_ERROR)
"""A file ending so stops the pattern: the account or the user said stop, the next file would stop too."""

_OneFile = Callable[[int, int, Path], tuple[ImportResult, dict[str, object]]]


def _over_files(
    config: ImportConfig,
    pattern: str,
    one_file: _OneFile,
    on_file_done: FileDone | None,
    *,
    stop_on: tuple[ExitStatus, ...],
) -> PatternResult:
    """`one_file` for each file `pattern` names, in order; the combined summary written at the end."""
    found = find_inputs(pattern)
    for note in found.notes:
        log.warning("%s", note)
    inputs, is_pattern = found.paths, glob.has_magic(pattern)
    result = PatternResult(pattern)
    if len(inputs) > 1 and config.errors_path:
        raise UsageError("errors_path names one file; with a pattern each input gets its own workbook")
    if not inputs:
        log.warning("no file matches '%s': nothing to do", pattern)
    for index, path in enumerate(inputs):
        try:
            outcome, summary = one_file(index, len(inputs), path)
        except ImporterError as exc:  # this file is unusable; the others still run
            if len(inputs) == 1:
                raise
            summary = {"input": str(path), "error": str(exc), "exit_code": int(exc.exit_status)}
            result.errors.append((path, exc))
            result.summaries.append(summary)
            if on_file_done is not None:
                on_file_done(path, exc, summary)
            continue
        result.results.append((path, outcome))
        result.summaries.append(summary)
        result.summary_problem = outcome.summary_problem
        if on_file_done is not None:
            on_file_done(path, outcome, summary)
        if outcome.exit_status in stop_on:
            break
    if is_pattern and config.summary_json is not None:
        result.summary_problem = write_summary(config.summary_json, result.summary())
    return result


def _prepare_outputs(config: ImportConfig, archive_dir: Path | None) -> None:
    """Every output folder made (a fresh machine has no `logs/`) and checked, before the first call."""
    if config.summary_json is not None:
        prepare_folder(config.summary_json, "the summary")
    if config.errors_path is not None:
        prepare_folder(config.errors_path, "the error workbook")
    if archive_dir is not None:
        prepare_folder(archive_dir / "archived.xlsx", "the archive")


def _archive_workbook(result: ImportResult, archived: Path, summary: dict[str, object]) -> None:
    """A file's error workbook stays beside it: moved along into the archive."""
    if result.error_report and Path(result.error_report).exists():
        target = default_error_report_path(archived)
        result.error_report = move_to_archive(Path(result.error_report), target)
        summary["error_report"] = str(result.error_report)


@dataclass(frozen=True)
class _FileConfig:
    config: ImportConfig
    archive_target: Path | None


def _config_for(
    config: ImportConfig,
    path: Path,
    *,
    index: int,
    count: int,
    archive_dir: Path | None,
    is_pattern: bool,
    env: dict[str, str],
) -> _FileConfig:
    archived = archive_name(path, archive_dir, datetime.now(UTC)) if archive_dir is not None else None
    return _FileConfig(
        replace(
            config,
            input_path=path,
            state_environ=config.state_environ if config.state_environ is not None else env,
            summary_json=None if is_pattern else config.summary_json,
            on_progress=_numbered(config, index, count),
        ),
        archived,
    )


def _numbered(config: ImportConfig, index: int, count: int) -> Callable[[Progress], None] | None:
    """The caller's callback, told which file of the pattern each event is about."""
    callback = config.on_progress
    if callback is None or count == 1:
        return callback
    return lambda event: callback(replace(event, file_index=index, file_count=count))


def _settled(result: ImportResult) -> bool:
    return not (result.rows_unknown or result.rows_not_sent or result.stop_reason or result.interrupted)
