"""Keep Python's cycle collector off the millions of small acyclic objects a large sheet makes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Build without the cycle collector, then freeze what was built out of its reach.

    Building a million row bodies sets off hundreds of collections over an ever larger heap, and
    objects built with the collector off would be scanned again by the next collections
    (writing the error workbook took four times as long). Frozen objects (`gc.freeze`) are
    skipped by every collection until `release()`, which `run_import` and `validate_file` call
    when they are done (a caller of the stages alone may too); reference counting still frees
    them, and rows, bodies and cells hold no cycles for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def release() -> None:
    """Hand frozen objects back to the collector: call when a run is done with its rows."""
    gc.unfreeze()
