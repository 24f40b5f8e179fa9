"""The progress bar knows the calls ahead and tells the time they take at the rate limit."""

from __future__ import annotations

import csv

from importer.client import Credentials
from importer.runner import ImportConfig, run_import
from importer.sandbox import DEFAULT_OPPORTUNITIES, DEFAULT_USERS
from importer.throttle import RateLimit
from tests.helpers import write_yaml

MAPPING = """
activity_event: {value: 201}
opportunity_id: {column: Opportunity}
owner_email: {column: Owner}
fields:
  mx_Custom_1: {column: PAN, required: true}
"""


def test_progress_shows_calls_ahead_and_time_left_at_the_rate_limit(sandbox, tmp_path, capsys):
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Opportunity", "Owner", "PAN"])
        for n in range(60):  # 30 rows on each of two opportunities: 2 calls each
            writer.writerow([DEFAULT_OPPORTUNITIES[n % 2], DEFAULT_USERS[0], f"ABCDE{n:04d}F"])
    config = ImportConfig(
        input_path=source,
        mapping_path=write_yaml(tmp_path, MAPPING),
        host=sandbox.url,
        credentials=Credentials(sandbox.access_key, sandbox.secret_key),
        progress=True,
        use_journal=False,
        rate_limit=RateLimit(10, 100.0),  # room for the checks and the 4 calls at once; 102 s a window
    )
    result = run_import(config)
    assert result.rows_posted == 60
    shown = capsys.readouterr().err
    # 4 calls at 10 per 102 s (the window plus its safety margin) take 41 s at the limit, however
    # quickly the first ones went: the time left comes from the limit, not from the pace so far
    assert shown.startswith("\r  0%|          | 0/4 calls [00:00 so far, 00:40 left at the rate limit]")
