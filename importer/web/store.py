"""Where the web page keeps its imports: one folder per import under the state directory.

Each folder holds the uploaded file (under a fixed name: the user's file name is only shown, never
used as a path), a `state.json` the page reads, and the error workbook. A reload, a second tab or
a restart of the server reads the same files, so the history survives and a running import is seen
by everyone; an import that was running when the server stopped is marked as such on start.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from importer.atomic import write_json_atomically
from importer.loader import TEXT_SUFFIXES, WORKBOOK_SUFFIXES

UPLOAD_SUFFIXES = frozenset(TEXT_SUFFIXES | WORKBOOK_SUFFIXES)
_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9]{6}$")


@dataclass
class ImportState:
    """What the page shows of one import; saved as JSON in the import's folder."""

    id: str
    file_name: str  # as the user's browser named it: shown, never used as a path
    suffix: str
    created: float
    status: str = "uploaded"  # uploaded, previewed, running, finished, failed
    sheet: str | None = None
    mapping_name: str | None = None
    message: str | None = None  # the last problem, in words for the page
    progress: dict[str, Any] = field(default_factory=dict)
    preview: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def label(self) -> str:
        return time.strftime("%d %b %Y %H:%M", time.localtime(self.created))


class ImportStore:
    """The imports folder: create, read and save each import's state, one writer at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def folder(self, import_id: str) -> Path:
        if not _ID.fullmatch(import_id):
            raise KeyError(import_id)
        return self.root / import_id

    def upload_path(self, state: ImportState) -> Path:
        return self.folder(state.id) / f"upload{state.suffix}"

    def errors_path(self, state: ImportState) -> Path:
        return self.folder(state.id) / "errors.xlsx"

    def create(self, file_name: str, suffix: str) -> ImportState:
        import_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        self.folder(import_id).mkdir(parents=True)
        state = ImportState(import_id, file_name, suffix, time.time())
        self.save(state)
        return state

    def get(self, import_id: str) -> ImportState:
        path = self.folder(import_id) / "state.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise KeyError(import_id) from None
        return ImportState(**data)

    def save(self, state: ImportState) -> None:
        with self._lock:
            write_json_atomically(self.folder(state.id) / "state.json", asdict(state), "the import's state")

    def update(self, import_id: str, **changes: Any) -> ImportState:
        with self._lock:
            state = self.get(import_id)
            for key, value in changes.items():
                setattr(state, key, value)
            write_json_atomically(self.folder(state.id) / "state.json", asdict(state), "the import's state")
            return state

    def all(self) -> list[ImportState]:
        states = []
        for folder in self.root.iterdir():
            if _ID.fullmatch(folder.name):
                try:
                    states.append(self.get(folder.name))
                except KeyError:
                    continue
        return sorted(states, key=lambda state: state.created, reverse=True)

    def mark_abandoned(self) -> None:
        """Imports left running by a server that stopped: say so rather than show them as running."""
        for state in self.all():
            if state.status == "running":
                self.update(
                    state.id,
                    status="failed",
                    message="The server stopped while this import ran. Upload the file again: rows "
                    "already posted are skipped.",
                )
