"""A fingerprint of everything a file's row keys are made of, so a rerun of the same file reuses them.

A row's key (`ledger.assign_keys`) hashes the canonical JSON of its payload: about 6 us a row, six
seconds for a million, more than the rest of a rerun's look at the ledger. The keys of a file's
kept rows depend only on the file's bytes, the sheet read, the mapping, what the account says of
the activity types (a dropdown value's exact spelling, a number's or date's wire form, the event
code of a named event), the opportunity ids the look-ups found, and this version's code. When
all of those are the same as in the run that computed them, so are the keys: the ledger keeps the
packed keys of the last few files under their fingerprint (`SqliteLedger.cached_keys`).

A fingerprint that misses only costs the computation; nothing else depends on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping as MappingOf
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from importer._version import __version__
from importer.mapping import Mapping
from importer.records import PlannedRow

KEYS_VERSION = "1"  # change when the same input may make another body, or a body another key


def account_context(activities: MappingOf[int, object], event_code: int | None) -> str:
    """What the account's metadata contributes to the bodies: the activity types checked against."""
    described = [
        [code, asdict(meta) if is_dataclass(meta) and not isinstance(meta, type) else repr(meta)]
        for code, meta in sorted(activities.items())
    ]
    return json.dumps([described, event_code], sort_keys=True, default=repr)


def fingerprint(
    input_path: Path, sheet: str | None, mapping: Mapping, context: str, rows: list[PlannedRow]
) -> str | None:
    """The fingerprint of this file's kept rows, or None when the file cannot be read again."""
    digest = hashlib.sha256()
    for part in (KEYS_VERSION, __version__, sheet or "", mapping.model_dump_json(), context):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1e")
    try:
        with input_path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    except OSError:
        return None
    digest.update(np.fromiter((row.source_row for row in rows), dtype=np.int64, count=len(rows)).tobytes())
    digest.update("\x1f".join([row.opportunity_id for row in rows]).encode("utf-8"))
    return digest.hexdigest()
