"""lsq-import: import spreadsheets into LeadSquared as activities on opportunities."""

from importer._version import __version__
from importer.events import CancelToken, Phase, Progress, ProgressCallback

__all__ = [
    "CancelToken",
    "ImportConfig",
    "ImportResult",
    "PatternResult",
    "Phase",
    "Progress",
    "ProgressCallback",
    "__version__",
    "run_import",
    "run_pattern",
    "validate_file",
    "validate_pattern",
]


def __getattr__(name: str) -> object:
    # The runner pulls in pandas and requests; import it only when the API is used, so
    # `import importer.errors` stays cheap for the CLI's argument parsing.
    if name in {"ImportConfig", "ImportResult", "run_import", "validate_file"}:
        from importer import runner

        return getattr(runner, name)
    if name in {"PatternResult", "run_pattern", "validate_pattern"}:
        from importer import runs

        return getattr(runs, name)
    raise AttributeError(name)
