"""The file under the per-account caches (account metadata, look-ups): read leniently, written atomically.

A cache file is `{"version": N, "entries": {key: {...}}}`. It only saves calls, so it never fails
a run: a missing or damaged file, or one of another version, reads as empty; one that cannot be
written is logged and the calls are made again next run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from importer.atomic import write_json_atomically
from importer.errors import OutputError

log = logging.getLogger(__name__)


def read_entries(path: Path | None, version: int) -> dict[str, dict[str, Any]]:
    """The entries of the cache file at `path` ({} when there is none that can be used)."""
    if path is None or not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged cache is only a missed shortcut
    if not isinstance(stored, dict) or stored.get("version") != version:
        return {}
    entries = stored.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {key: entry for key, entry in entries.items() if isinstance(entry, dict)}


def write_entries(path: Path, version: int, entries: dict[str, Any], what: str, warning: str) -> bool:
    """Write the cache file `what` names; False, logging `warning` % the reason, when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, {"version": version, "entries": entries}, what, indent=None)
    except (OSError, OutputError) as exc:
        log.warning(warning, exc)
        return False
    return True
