"""Scheduled use: which files a pattern names, and where a processed file is archived."""

from __future__ import annotations

import glob
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from importer.errors import UsageError

ERROR_REPORT_SUFFIX = ".errors.xlsx"


# The lock file an office program keeps beside a workbook while it is open: Excel's
# `~$visits.xlsx`, LibreOffice's `.~lock.visits.xlsx#`. Never a sheet to import.
_LOCK_FILES = (
    ("Excel", re.compile(r"^~\$(?P<name>.+)$")),
    ("LibreOffice", re.compile(r"^\.~lock\.(?P<name>.+)#$")),
)


@dataclass
class Inputs:
    """The files a pattern names, and notes about the names it matched but are not inputs."""

    paths: list[Path]
    notes: list[str] = field(default_factory=list)


def find_inputs(pattern: str) -> Inputs:
    """The files a pattern names, in name order, without error workbooks and office lock files."""
    if not glob.has_magic(pattern):
        return Inputs([Path(pattern)])
    matches = sorted(Path(name) for name in glob.glob(pattern) if Path(name).is_file())
    inputs = Inputs([])
    for path in matches:
        if path.name.endswith(ERROR_REPORT_SUFFIX):
            continue
        note = lock_file_note(path)
        if note is None:
            inputs.paths.append(path)
        else:
            inputs.notes.append(note)
    return inputs


def lock_file_note(path: Path) -> str | None:
    """What to tell of an office lock file (None: `path` is not one)."""
    for program, lock in _LOCK_FILES:
        match = lock.match(path.name)
        if match:
            name = match.group("name")
            return (
                f"{name} is open in {program}: its lock file {path.name} is skipped, and {name} is "
                "imported as it was last saved"
            )
    return None


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
