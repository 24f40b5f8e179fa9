"""Exit codes and the one exception family every user-facing failure belongs to."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What the process exit code tells a scheduler (documented in the README)."""

    OK = 0  # every row posted (or skipped as already posted)
    ROWS_FAILED = 1  # the file was usable, but some rows failed or their outcome is unknown
    INPUT_ERROR = 2  # usage, mapping or input file error: nothing was sent
    API_UNUSABLE = 3  # bad keys, wrong host, host unreachable: sending stopped
    LEDGER_ERROR = 4  # the ledger cannot be read or written (disk full, read-only, damaged): sending stopped
    INTERRUPTED = 130  # Ctrl-C: sending stopped, the report of what was sent was still written


class ImporterError(Exception):
    """A failure the user can fix; its message is shown as is, without a traceback."""

    exit_status = ExitStatus.INPUT_ERROR


class UsageError(ImporterError):
    """A bad command line or environment (missing keys, bad host, bad option value)."""


class InputFileError(ImporterError):
    """The spreadsheet cannot be used; the message names the file."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class MappingError(ImporterError):
    """The mapping file cannot be used; the message names the file and the key."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class OutputError(ImporterError):
    """An output file (error workbook, summary) cannot be written."""


class ApiUnusableError(ImporterError):
    """The API cannot be used at all (bad keys, unreachable host): stop sending."""

    exit_status = ExitStatus.API_UNUSABLE


class AuthError(ApiUnusableError):
    """LeadSquared answered 401: the keys are wrong or belong to another region."""
