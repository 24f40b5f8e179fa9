"""lsq-import: import spreadsheets into LeadSquared as activities on opportunities."""

__version__ = "0.1.0"

__all__ = ["ImportConfig", "ImportResult", "__version__", "run_import", "validate_file"]


def __getattr__(name: str) -> object:
    # The runner pulls in pandas and requests; import it only when the API is used, so
    # `import importer.errors` stays cheap for the CLI's argument parsing.
    if name in {"ImportConfig", "ImportResult", "run_import", "validate_file"}:
        from importer import runner

        return getattr(runner, name)
    raise AttributeError(name)
