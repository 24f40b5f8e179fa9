"""Fixtures for end-to-end tests: a sandbox on loopback and a way to run the real CLI."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.cli import main
from importer.sandbox import Sandbox
from tests.helpers import sandbox_env

REPO = Path(__file__).resolve().parent.parent
FAST_LIMIT = "50/1"  # the client's limit in tests, so a suite of many calls stays quick


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(rate_limit=(50, 1.0)) as server:
        yield server


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    # the metadata cache goes to the test's folder, never to the user's ~/.cache
    return sandbox_env(sandbox, tmp_path)


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in args], environ=env or {}, stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())
