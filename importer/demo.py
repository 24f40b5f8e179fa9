"""`lsq-import demo`: the sample sheet imported into an in-process sandbox, from any folder.

The sample data and its mapping ship inside the package (`importer/sample_data/`,
`importer/mappings/`) and are found with `importlib.resources`, so an installed package needs no
clone of the repository.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from importer.client import Credentials
from importer.events import CancelToken, ProgressCallback
from importer.ledger import STATE_DIR_ENV
from importer.runner import ImportConfig, ImportResult, run_import
from importer.sandbox import Sandbox
from importer.throttle import RateLimit

SAMPLE = ("sample_data", "activities.csv")
MAPPING = ("mappings", "example.yaml")


@dataclass(frozen=True)
class DemoResult:
    result: ImportResult
    sample: Path
    mapping: Path
    sandbox_url: str
    stored: int  # activities the sandbox holds afterwards


@contextlib.contextmanager
def demo_files() -> Iterator[tuple[Path, Path]]:
    """The sample sheet and its mapping as files on disk, for as long as the block runs."""
    package = resources.files("importer")
    with (
        resources.as_file(package.joinpath(*SAMPLE)) as sample,
        resources.as_file(package.joinpath(*MAPPING)) as mapping,
    ):
        yield sample, mapping


def run_demo(
    errors_path: Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_ready: Callable[[str, Path, Path], None] | None = None,
) -> DemoResult:
    """Start a sandbox, import the sample into it with the example mapping, and stop it again.

    `on_ready(sandbox_url, sample, mapping)` is called once the sandbox listens, before the import.
    """
    with (
        demo_files() as (sample, mapping),
        Sandbox(rate_limit=(25, 1.0)) as sandbox,
        tempfile.TemporaryDirectory(prefix="lsq-import-demo-") as state,
    ):
        if on_ready is not None:
            on_ready(sandbox.url, sample, mapping)
        config = ImportConfig(
            input_path=sample,
            mapping_path=mapping,
            host=sandbox.url,
            credentials=Credentials(sandbox.access_key, sandbox.secret_key),
            rate_limit=RateLimit(25, 1.0),
            errors_path=errors_path,
            # a fresh sandbox every time, so a throwaway ledger: the run is the real one, ledger included
            state_environ={STATE_DIR_ENV: state},
            on_progress=on_progress,
            cancel=cancel,
        )
        result = run_import(config)
        return DemoResult(result, sample, mapping, sandbox.url, len(sandbox.activities()))
