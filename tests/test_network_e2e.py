"""Network trouble is visible: which account and host, a host that does not resolve or never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.endpoints import API_HOSTS
from importer.sandbox import Faults, Sandbox
from tests.helpers import write_csv
from tests.test_resilience import MAPPING, make_rows
from tests.test_throttle_e2e import environment, run


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_run_names_the_host_before_the_keys_check_and_the_account_after_it(tmp_path, mapping):
    with Sandbox(rate_limit=(50, 1.0)) as sandbox:
        env = environment(sandbox, tmp_path)
        result = run(write_csv(tmp_path / "a.csv", make_rows(6, seed=1)), mapping, env)
        assert result.code == 0, result.output
        host = sandbox.url.removeprefix("http://")
        assert f"Checking keys on {host}: Sandbox User <asha.rao@example.com>, org 10001\n" in result.err
        assert sandbox.stats.calls["UserByAccessKey.Get"] == 1  # one keys check a run, not one per step
    assert "WARNING" not in result.err  # plain lines: no logger prefix or timestamp
    assert "importer." not in result.err


def test_a_host_that_never_answers_is_given_up_in_seconds_with_each_try_said(tmp_path, mapping, silent_host):
    env = {
        "LSQ_ACCESS_KEY": "u$rkey",
        "LSQ_SECRET_KEY": "secret",
        "LSQ_IMPORT_STATE_DIR": str(tmp_path / "s"),
    }
    path = write_csv(tmp_path / "a.csv", make_rows(6, seed=1))
    result = run(path, mapping, env, "--host", silent_host, "--timeout", "0.5")
    assert result.code == 3, result.output
    said = f"{silent_host} accepted the connection but did not answer within 0.5 s"
    assert f"{said}; retrying in " in result.err  # the retry is told without -v
    assert f"{said}, 2 times: giving up" in result.err
    assert result.summary["rows_not_sent"] == 6  # nothing sent; the next run sends them


def test_a_host_name_that_does_not_resolve_says_so_and_lists_leadsquareds_hosts(tmp_path, mapping):
    env = {
        "LSQ_ACCESS_KEY": "u$rkey",
        "LSQ_SECRET_KEY": "secret",
        "LSQ_IMPORT_STATE_DIR": str(tmp_path / "s"),
    }
    path = write_csv(tmp_path / "a.csv", make_rows(6, seed=1))
    result = run(path, mapping, env, "--host", "api-in12.leadsquared.invalid")
    assert result.code == 3, result.output
    assert "the host name api-in12.leadsquared.invalid does not resolve" in result.err
    assert "retrying" not in result.err  # a name that does not resolve is not tried again and again
    assert all(host in result.err for host in API_HOSTS)


def test_a_throttled_check_before_sending_is_waited_out_at_the_limit_it_names(tmp_path, mapping):
    # 2 calls a second, answered 403: the keys and metadata checks alone go over it
    with Sandbox(rate_limit=(2, 1.0), faults=Faults(throttle_status=403)) as sandbox:
        env = environment(sandbox, tmp_path)
        result = run(write_csv(tmp_path / "a.csv", make_rows(4, seed=2)), mapping, env)
        assert result.code == 0, result.output
        assert "LeadSquared allows this account 2 calls in 1 s; using that" in result.err
        assert result.summary["rows_posted"] == 4
