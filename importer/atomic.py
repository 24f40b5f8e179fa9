"""Write an output file whole or not at all: a temp file beside it, then a rename."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from importer.errors import OutputError


def write_atomically(target: Path, write: Callable[[BinaryIO], object], what: str) -> None:
    """Write through a temp file beside `target`: `target` is the old file or the whole new one.

    Any OSError (disk full, no permission) becomes an OutputError naming `target` and `what`.
    """
    temp: Path | None = None
    try:
        temp = create_temp_file(target)
        with temp.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except OSError as error:
        raise OutputError(f"{target}: cannot write {what}: {reason(error)}") from error
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def write_json_atomically(
    path: Path, data: object, what: str = "the summary", *, indent: int | None = 2
) -> None:
    text = json.dumps(data, indent=indent) + "\n"
    write_atomically(Path(path), lambda file: file.write(text.encode("utf-8")), what)


def create_temp_file(target: Path) -> Path:
    """An empty new file beside `target` (created with the user's umask, unlike mkstemp)."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    temp.open("xb").close()
    return temp


def reason(error: OSError) -> str:
    return error.strerror or str(error)


def prepare_folder(target: Path, what: str) -> None:
    """Create the folder `target` goes in and check a file can be written there, before any call.

    A nightly job on a fresh machine has no `logs/` yet; better to make it now than to find,
    after rows were posted, that the summary has nowhere to go.
    """
    folder = Path(target).parent
    blocker = next((part for part in (folder, *folder.parents) if part.exists() and not part.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"{target}: cannot write here, {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        create_temp_file(Path(target)).unlink()
    except OSError as error:
        raise OutputError(f"{target}: cannot write {what} here: {reason(error)}") from error
    if Path(target).is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for {what}")
