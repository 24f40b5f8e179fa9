"""Running one import in a background thread, with live progress saved for every tab to read."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from importer.errors import ImporterError
from importer.events import CancelToken, Phase, Progress
from importer.runner import ImportConfig, ImportResult, run_import
from importer.web.store import ImportStore

log = logging.getLogger(__name__)


_SAVE_EVERY_S = 0.25  # progress is written to the state file at most this often


class Runner:
    """The imports running in this server: one thread and one cancel token each."""

    def __init__(self, store: ImportStore) -> None:
        self.store = store
        self._tokens: dict[str, CancelToken] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, import_id: str, config: ImportConfig, on_done: Callable[[ImportResult], None]) -> None:
        token = CancelToken()
        config.cancel = token
        config.on_progress = self._progress_saver(import_id)
        self.store.update(import_id, status="running", message=None, progress={"phase": "reading"})
        thread = threading.Thread(
            target=self._run, args=(import_id, config, on_done), name=f"import-{import_id}", daemon=True
        )
        with self._lock:
            self._tokens[import_id] = token
            self._threads[import_id] = thread
        thread.start()

    def cancel(self, import_id: str) -> bool:
        with self._lock:
            token = self._tokens.get(import_id)
            running = import_id in self._threads
        if not running:
            return False
        self.store.update(import_id, cancel_requested=True)
        if token is not None:
            token.cancel()  # a second press: stop waiting for answers in flight
        return True

    def is_running(self, import_id: str) -> bool:
        with self._lock:
            return import_id in self._threads

    def wait(self, import_id: str, timeout: float | None = None) -> None:
        with self._lock:
            thread = self._threads.get(import_id)
        if thread is not None:
            thread.join(timeout)

    def _progress_saver(self, import_id: str) -> Callable[[Progress], None]:
        last = [0.0]

        def saved(progress: Progress) -> None:
            now = time.monotonic()
            finished = progress.phase is Phase.FINISHED
            if now - last[0] < _SAVE_EVERY_S and not finished:
                return
            last[0] = now
            data = dataclasses.asdict(progress)
            data["phase"] = str(progress.phase)
            data["input_path"] = None  # the server's folder layout is nobody's business
            with contextlib.suppress(Exception):  # a progress callback must never raise
                self.store.update(import_id, progress=data)

        return saved

    def _run(self, import_id: str, config: ImportConfig, on_done: Callable[[ImportResult], None]) -> None:
        try:
            result = run_import(config)
        except ImporterError as exc:
            self.store.update(import_id, status="failed", message=str(exc))
        except Exception as exc:  # a bug: keep the server up and tell the page
            log.exception("import %s failed", import_id)
            self.store.update(
                import_id, status="failed", message=f"Unexpected error ({type(exc).__name__}): {exc}"
            )
        else:
            on_done(result)
        finally:
            with self._lock:
                self._tokens.pop(import_id, None)
                self._threads.pop(import_id, None)
