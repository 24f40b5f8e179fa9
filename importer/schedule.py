"""Scheduled use: which files a pattern names, and where a processed file is archived."""

from __future__ import annotations

import glob
import shutil
from datetime import datetime
from pathlib import Path

from importer.errors import UsageError

ERROR_REPORT_SUFFIX = ".errors.xlsx"


def expand_inputs(pattern: str) -> list[Path]:
    """The files a path or glob pattern names, in name order; error workbooks are never inputs."""
    if not glob.has_magic(pattern):
        return [Path(pattern)]
    matches = sorted(Path(name) for name in glob.glob(pattern) if Path(name).is_file())
    return [path for path in matches if not path.name.endswith(ERROR_REPORT_SUFFIX)]


def archive_name(path: Path, archive_dir: Path, when: datetime) -> Path:
    """Where `path` goes in the archive: its name with a timestamp, never over another file."""
    stamp = when.strftime("%Y%m%dT%H%M%S")
    target = archive_dir / f"{path.stem}.{stamp}{path.suffix}"
    counter = 1
    while target.exists():
        target = archive_dir / f"{path.stem}.{stamp}-{counter}{path.suffix}"
        counter += 1
    return target


def move_to_archive(path: Path, target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(path), str(target)))
    except OSError as exc:
        raise UsageError(
            f"{path}: imported, but could not be moved to {target.parent} ({exc.strerror})"
        ) from None


def check_archive_dir(archive_dir: Path) -> None:
    if archive_dir.exists() and not archive_dir.is_dir():
        raise UsageError(f"archive_dir {archive_dir}: is a file, not a folder")
