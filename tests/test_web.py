"""Route tests of the web page (`lsq-import serve`): every page, every bad input, against the sandbox.

Each bad input must end in a clear message on the page and nothing sent: the sandbox's bulk-add
counter stays at zero.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import openpyxl
import pytest
import requests
import yaml
from starlette.testclient import TestClient

from importer.account import MetadataSettings
from importer.client import OPPORTUNITIES_BY_LEAD_FIELD_PATH, Credentials
from importer.sandbox import DEFAULT_OPPORTUNITIES, Faults, Sandbox
from importer.throttle import RateLimit
from importer.web.app import Settings, WebApp
from tests.conftest import REPO, run_cli
from tests.data.bad import make_bad
from tests.helpers import write_csv

SAMPLE = REPO / "importer" / "sample_data" / "activities.csv"
TOKEN = "test-token-for-this-start"


@dataclass
class Page:
    """A signed-in browser session on a fresh server, and the sandbox behind it."""

    client: TestClient
    web: WebApp
    sandbox: Sandbox
    root: Path

    @property
    def csrf(self) -> str:
        return self.web._csrf

    def upload(self, path: Path, name: str | None = None, **extra: str) -> object:
        with path.open("rb") as file:
            return self.client.post(
                "/imports",
                data={"csrf": self.csrf, **extra},
                files={"spreadsheet": (name or path.name, file, "application/octet-stream")},
            )

    def import_id(self, response: object) -> str:
        return str(response.url).rstrip("/").rsplit("/", 1)[1]  # type: ignore[attr-defined]


def make_web(sandbox: Sandbox, root: Path, **options: object) -> WebApp:
    settings = Settings(
        host=sandbox.url,
        credentials=Credentials(sandbox.access_key, sandbox.secret_key),
        mappings_dir=root / "mappings",
        state_dir=root / "state",
        metadata=MetadataSettings(root / "cache", 12.0, False),
        token=TOKEN,
        **{"rate_limit": RateLimit(50, 1.0), **options},  # type: ignore[arg-type]
    )
    return WebApp(settings)


def signed_in(web: WebApp) -> TestClient:
    client = TestClient(web.starlette(), base_url="http://127.0.0.1")
    assert client.get(f"/?token={TOKEN}").status_code == 200
    return client


@pytest.fixture
def page(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    monkeypatch.setenv("LSQ_IMPORT_STATE_DIR", str(tmp_path / "state"))  # the run's journal
    web = make_web(sandbox, tmp_path)
    with signed_in(web) as client:
        yield Page(client, web, sandbox, tmp_path)


def selected(html: str) -> dict[str, str]:
    """Each select's preselected option, by the select's name: what a person submits unchanged."""
    chosen = {}
    for name, body in re.findall(r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        match = re.search(r'<option value="([^"]*)" selected', body) or re.search(
            r'<option value="([^"]*)"', body
        )
        chosen[name] = match.group(1) if match else ""
    return chosen


def problem(html: str) -> str:
    return " ".join(re.findall(r'class="problem"[^>]*>(.*?)</', html, re.S))


def build_and_preview(page: Page, import_id: str, html: str, save_as: str = "docs") -> object:
    form = {"csrf": page.csrf, "use": "built", "event": "201", "save_as": save_as, **selected(html)}
    form.pop("event", None)
    form["event"] = "201"
    return page.client.post(f"/imports/{import_id}/preview", data=form)


# --- access -----------------------------------------------------------------------------------


def test_without_the_token_every_page_is_refused(sandbox, tmp_path):
    web = make_web(sandbox, tmp_path)
    client = TestClient(web.starlette(), base_url="http://127.0.0.1")
    for path in ("/", "/imports/20240101-000000-abcdef", "/imports/20240101-000000-abcdef/errors.xlsx"):
        response = client.get(path)
        assert response.status_code == 403
        assert "access token" in response.text
    assert client.post("/imports", files={"spreadsheet": ("a.csv", b"x", "text/csv")}).status_code == 403
    assert not list((tmp_path / "state" / "web" / "imports").iterdir())


def test_a_wrong_token_is_refused_and_sets_no_cookie(sandbox, tmp_path):
    client = TestClient(make_web(sandbox, tmp_path).starlette(), base_url="http://127.0.0.1")
    response = client.get("/?token=guessed", follow_redirects=False)
    assert response.status_code == 403
    assert "wrong" in response.text
    assert "set-cookie" not in response.headers


def test_the_token_becomes_an_httponly_cookie_and_leaves_the_url(sandbox, tmp_path):
    client = TestClient(make_web(sandbox, tmp_path).starlette(), base_url="http://127.0.0.1")
    response = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    assert client.get("/").status_code == 200


def test_a_password_signs_in_when_one_is_configured(sandbox, tmp_path):
    client = TestClient(
        make_web(sandbox, tmp_path, password="s3cret").starlette(), base_url="http://127.0.0.1"
    )
    assert 'type="password"' in client.get("/").text
    assert client.post("/login", data={"password": "nope"}).status_code == 403
    assert client.post("/login", data={"password": "s3cret"}).status_code == 200
    assert "Import activities from a spreadsheet" in client.get("/").text


def test_binding_beyond_loopback_needs_a_password(tmp_path):
    result = run_cli("serve", "--bind", "0.0.0.0", "--sandbox", env={"LSQ_IMPORT_STATE_DIR": str(tmp_path)})
    assert result.code == 2
    assert "LSQ_WEB_PASSWORD" in result.err


def test_a_form_without_the_csrf_field_is_refused(page):
    response = page.client.post("/imports", files={"spreadsheet": ("a.csv", SAMPLE.read_bytes(), "text/csv")})
    assert response.status_code == 403
    assert "Reload the page" in problem(response.text)
    assert page.web.store.all() == []


def test_serve_prints_the_address_with_its_token_first(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LSQ_IMPORT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "importer",
            "serve",
            "--sandbox",
            "--port",
            "0",
            "--mappings",
            str(tmp_path / "m"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", first)
        assert url, first
        session = requests.Session()
        response = session.get(url.group(0), timeout=10)
        assert response.status_code == 200
        assert response.url.endswith("/")
        assert "token" not in response.url
        assert "Spreadsheet" in response.text
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# --- bad inputs: a clear message, nothing sent ------------------------------------------------


def test_no_file_chosen(page):
    response = page.client.post("/imports", data={"csrf": page.csrf})
    assert response.status_code == 400
    assert "Choose a spreadsheet" in problem(response.text)
    assert page.sandbox.stats.bulk_calls == 0


def test_a_file_too_large_is_refused_with_the_limit(sandbox, tmp_path):
    web = make_web(sandbox, tmp_path, max_upload_bytes=4096)
    with signed_in(web) as client:
        response = client.post(
            "/imports",
            data={"csrf": web._csrf},
            files={"spreadsheet": ("big.csv", SAMPLE.read_bytes(), "text/csv")},
        )
    assert response.status_code == 413
    assert "larger than 4 KB" in problem(response.text)
    assert not list((tmp_path / "state" / "web" / "imports").glob("*/upload*"))
    assert sandbox.stats.bulk_calls == 0


def test_a_file_that_is_not_a_spreadsheet(page):
    response = page.upload(SAMPLE, name="report.pdf")
    assert response.status_code == 400
    assert "not a spreadsheet" in problem(response.text)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(page, tmp_path):
    bomb = make_bad.zip_bomb(tmp_path / "bomb.xlsx", gigabytes=2)
    response = page.upload(bomb)
    assert response.status_code == 422
    assert "zip bomb" in problem(response.text)
    assert page.sandbox.stats.bulk_calls == 0


def test_a_corrupt_workbook(page):
    response = page.upload(REPO / "tests" / "data" / "corrupt.xlsx")
    assert response.status_code == 422
    assert problem(response.text)
    assert "Upload" in response.text  # the way on: upload it again
    assert page.sandbox.stats.bulk_calls == 0


def test_a_saved_mapping_that_does_not_fit_the_account(page):
    (page.root / "mappings").mkdir(exist_ok=True)
    (page.root / "mappings" / "other.yaml").write_text(
        'activity_event: {name: "Loan Disbursed"}\nopportunity_id: {column: "Opportunity ID"}\n'
        'owner_email: {column: "Owner Email"}\n',
        encoding="utf-8",
    )
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    response = page.client.post(
        f"/imports/{import_id}/preview", data={"csrf": page.csrf, "use": "saved", "mapping": "other"}
    )
    assert response.status_code == 422
    assert "Loan Disbursed" in problem(response.text)
    assert page.sandbox.stats.bulk_calls == 0


def test_a_built_mapping_missing_a_mandatory_field(page):
    response = page.upload(SAMPLE)
    form = selected(response.text)
    form["field_mx_Custom_1"] = ""  # PAN Number is mandatory for Document Collected
    response = page.client.post(
        f"/imports/{page.import_id(response)}/preview",
        data={"csrf": page.csrf, "use": "built", **form, "event": "201", "save_as": "docs"},
    )
    assert response.status_code == 422
    assert "PAN Number" in problem(response.text)
    assert not (page.root / "mappings" / "docs.yaml").exists()


def test_a_mapping_name_that_is_a_path_is_refused(page):
    response = page.upload(SAMPLE)
    response = build_and_preview(page, page.import_id(response), response.text, save_as="../../etc/x")
    assert response.status_code == 422
    assert "name" in problem(response.text)
    assert not list(page.root.rglob("x.yaml"))


@pytest.mark.parametrize("action", ["preview", "start", "cancel"])
def test_every_form_of_an_import_refuses_an_unknown_import_and_a_stale_form(page, action):
    response = page.client.post(f"/imports/20240101-000000-abcdef/{action}", data={"csrf": page.csrf})
    assert response.status_code == 404
    assert "There is no such import." in problem(response.text)
    import_id = page.import_id(page.upload(SAMPLE))
    response = page.client.post(f"/imports/{import_id}/{action}", data={"csrf": "from another site"})
    assert response.status_code == 403
    assert "Reload the page and try again" in problem(response.text)
    assert response.headers["X-Frame-Options"] == "DENY"  # still answered through the guard
    assert page.web.store.get(import_id).status == "uploaded"
    assert page.sandbox.stats.bulk_calls == 0


def test_an_unknown_import(page):
    response = page.client.get("/imports/20240101-000000-abcdef")
    assert response.status_code == 404
    assert "no such import" in problem(response.text).lower()
    assert page.client.get("/imports/..%2F..%2Fetc").status_code == 404


# --- the pages, step by step ------------------------------------------------------------------


def test_upload_shows_the_sheet_and_preselects_the_guesses(page):
    response = page.upload(SAMPLE)
    assert response.status_code == 200
    html = response.text
    assert "200 data rows, 11 columns" in html
    assert "0f880bf6-117c-535a-b734-b0be33e89178" in html  # the first row as read
    form = selected(html)
    assert form["opportunity_id"] == "Opportunity ID"
    assert form["owner_email"] == "Owner Email"
    assert form["field_mx_Custom_1"] == "PAN"  # "PAN Number" matched by display name
    assert form["format_activity_datetime"] == "%d/%m/%Y %H:%M"
    assert "DD/MM/YYYY HH:MM (24-hour)" in html  # formats in human form
    upload = next((page.root / "state" / "web" / "imports").glob("*/upload.csv"))
    assert upload.read_bytes() == SAMPLE.read_bytes()  # kept under a fixed name, not the user's


def test_preview_validates_every_row_and_sends_nothing(page):
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    response = build_and_preview(page, import_id, response.text)
    assert response.status_code == 200
    html = response.text
    assert "Ready to import</dt><dd>193<" in html  # 3 more are rejected by the account when sent
    assert "Rows with problems</dt><dd>7<" in html
    assert '<th scope="col">PAN Number</th>' in html  # fields by display name
    assert '<table class="errors"' in html
    assert '<th scope="col">Column</th>' in html
    assert "not a valid email address" in html
    assert ">Import</button>" in html
    assert page.sandbox.stats.bulk_calls == 0
    saved = (page.root / "mappings" / "docs.yaml").read_text(encoding="utf-8")
    assert "name: Document Collected" in saved
    # the CLI reads the saved mapping as it is, and finds the same rows
    result = run_cli(
        "validate",
        SAMPLE,
        "--mapping",
        page.root / "mappings" / "docs.yaml",
        "--online",
        "--errors",
        page.root / "cli.errors.xlsx",
        env={
            "LSQ_HOST": page.sandbox.url,
            "LSQ_ACCESS_KEY": page.sandbox.access_key,
            "LSQ_SECRET_KEY": page.sandbox.secret_key,
            "LSQ_IMPORT_CACHE_DIR": str(page.root / "cache"),
            "LSQ_IMPORT_STATE_DIR": str(page.root / "state"),
        },
    )
    assert result.code == 1, result.output
    assert "193 valid, 7 invalid" in result.out, result.output


def test_import_posts_the_rows_and_the_results_page_offers_the_workbook(page):
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    build_and_preview(page, import_id, response.text)
    response = page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
    assert response.status_code == 200
    page.web.runner.wait(import_id, 60)
    assert len(page.sandbox.activities()) == 190
    html = page.client.get(f"/imports/{import_id}").text
    assert "Results: activities.csv" in html
    assert re.search(r"Posted</dt><dd>190<", html)
    assert "Download error workbook" in html
    workbook = page.client.get(f"/imports/{import_id}/errors.xlsx")
    assert workbook.status_code == 200
    assert "activities.errors.xlsx" in workbook.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).worksheets[0]
    assert sheet.max_row == 11  # the header and the 10 failed rows
    home = page.client.get("/").text
    assert "Done, some rows failed" in home
    assert "activities.csv" in home
    assert page.sandbox.secret_key not in html + home
    assert page.sandbox.access_key not in html + home


def test_a_second_tab_and_a_restart_show_the_same_imports(page, sandbox, tmp_path):
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    build_and_preview(page, import_id, response.text)
    page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
    other_tab = TestClient(page.client.app, base_url="http://127.0.0.1", cookies=page.client.cookies)
    progress = other_tab.get(f"/imports/{import_id}/progress").json()
    assert progress["status"] in {"running", "finished"}
    page.web.runner.wait(import_id, 60)
    assert other_tab.get(f"/imports/{import_id}/progress").json()["status"] == "finished"
    restarted = make_web(sandbox, tmp_path)  # a new start: a new token, the same history
    with signed_in(restarted) as client:
        assert import_id in client.get("/").text
        assert "Posted</dt><dd>190<" in client.get(f"/imports/{import_id}").text


def test_an_import_left_running_by_a_stopped_server_is_marked(page, sandbox, tmp_path):
    state = page.web.store.create("lost.csv", ".csv")
    page.web.store.update(state.id, status="running")
    restarted = make_web(sandbox, tmp_path)
    assert restarted.store.get(state.id).status == "failed"
    assert "server stopped" in (restarted.store.get(state.id).message or "")


def test_cancel_before_it_runs_changes_nothing(page):
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    response = page.client.post(f"/imports/{import_id}/cancel", data={"csrf": page.csrf})
    assert response.status_code == 200
    assert page.sandbox.stats.bulk_calls == 0


def test_reuploading_the_fixed_workbook_posts_only_the_fixed_rows(page):
    response = page.upload(SAMPLE)
    first = page.import_id(response)
    build_and_preview(page, first, response.text)
    page.client.post(f"/imports/{first}/start", data={"csrf": page.csrf})
    page.web.runner.wait(first, 60)
    workbook = openpyxl.load_workbook(io.BytesIO(page.client.get(f"/imports/{first}/errors.xlsx").content))
    sheet = workbook.worksheets[0]
    headers = [cell.value for cell in sheet[1]]
    email = headers.index("Owner Email") + 1
    for row in range(2, sheet.max_row + 1):
        if sheet.cell(row, email).value == "vikram.shah@example":
            sheet.cell(row, email).value = "vikram.shah@example.com"
    fixed = page.root / "fixed.xlsx"
    workbook.save(fixed)
    response = page.upload(fixed, mapping="docs")
    second = page.import_id(response)
    assert re.search(r'<option value="docs" selected', response.text)  # the same mapping, carried over
    response = page.client.post(
        f"/imports/{second}/preview", data={"csrf": page.csrf, "use": "saved", "mapping": "docs"}
    )
    assert "Ready to import</dt><dd>4<" in response.text  # the fixed row and the 3 the account refused
    page.client.post(f"/imports/{second}/start", data={"csrf": page.csrf})
    page.web.runner.wait(second, 60)
    assert len(page.sandbox.activities()) == 191
    owners = [a.owner_email for a in page.sandbox.activities()]
    assert owners.count("vikram.shah@example.com") >= 1


def test_cancel_stops_a_running_import_and_reports_the_rest_as_not_sent(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("LSQ_IMPORT_STATE_DIR", str(tmp_path / "state"))
    sandbox.faults = Faults(latency_ms=(150, 150))  # slow enough that the Cancel lands mid-run
    web = make_web(sandbox, tmp_path, rate_limit=RateLimit(2, 1.0))
    with signed_in(web) as client:
        page = Page(client, web, sandbox, tmp_path)
        response = page.upload(SAMPLE)
        import_id = page.import_id(response)
        build_and_preview(page, import_id, response.text)
        client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
        response = client.post(f"/imports/{import_id}/cancel", data={"csrf": page.csrf})
        assert response.status_code == 200
        web.runner.wait(import_id, 60)
        state = web.store.get(import_id)
        assert state.result["interrupted"] is True
        assert state.result["rows_not_sent"] > 0
        assert state.result["rows_posted"] == len(sandbox.activities())
        html = client.get(f"/imports/{import_id}").text
        assert "You cancelled this import" in html
        assert "Download error workbook" in html


def test_library_messages_are_put_in_words():
    from importer.web.app import for_people

    assert for_people("not a date in the format '%d/%m/%Y %H:%M' or ISO") == (
        "not a date in the format 'DD/MM/YYYY HH:MM' or ISO"
    )
    assert for_people("'Walk-in' is not an option of mx_Custom_4 (Channel): Branch") == (
        "'Walk-in' is not an option of 'Channel': Branch"
    )
    assert for_people("MXInvalidInputException: ActivityOwnerEmail 'x' is not a user") == (
        "Owner email 'x' is not a user"
    )


def test_the_same_file_uploaded_twice_posts_each_row_once(page):
    for _ in range(2):
        response = page.upload(SAMPLE)
        import_id = page.import_id(response)
        build_and_preview(page, import_id, response.text)
        page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
        page.web.runner.wait(import_id, 60)
    second = page.web.store.get(import_id).result
    assert second["rows_posted"] == 0
    assert second["rows_skipped"] == 190
    assert len(page.sandbox.activities()) == 190


def test_change_the_mapping_after_a_preview(page):
    response = page.upload(SAMPLE)
    import_id = page.import_id(response)
    build_and_preview(page, import_id, response.text)
    assert "Preview: activities.csv" in page.client.get(f"/imports/{import_id}").text  # a reload stays
    html = page.client.get(f"/imports/{import_id}?edit=1").text
    assert "Match the columns of activities.csv" in html
    assert '<option value="docs" selected' in html


def test_day_month_ambiguity_is_pointed_out(page):
    sheet = page.root / "ambiguous.csv"
    sheet.write_text(
        "Opportunity ID,Owner Email,Activity Date,PAN\n"
        f"{DEFAULT_OPPORTUNITIES[0]},asha.rao@example.com,01/02/2024 10:00,ABCDE1234F\n"
        f"{DEFAULT_OPPORTUNITIES[1]},asha.rao@example.com,03/04/2024 11:30,ABCDE1234F\n",
        encoding="utf-8",
    )
    html = unescape(page.upload(sheet).text)
    assert "every value reads as both 'DD/MM/YYYY HH:MM' and 'MM/DD/YYYY HH:MM'" in html


def test_the_upload_itself_is_never_served_back(page):
    import_id = page.import_id(page.upload(SAMPLE))
    for path in ("upload.csv", "state.json", "../state.json"):
        assert page.client.get(f"/imports/{import_id}/{path}").status_code == 404
    assert page.client.get("/static/../web/imports").status_code == 404


# --- the opportunity found from the lead (issue 13) -------------------------------------------

OWNER = "asha.rao@example.com"
# (customer email as written, where it posts): leads 1 and 2 have one opportunity of type 12000,
# lead 46 two of it, lead 55 none at all, and no lead has nobody@example.com
EMAIL_ROWS = [
    ("customer1@example.com", DEFAULT_OPPORTUNITIES[0]),
    (" Customer2@Example.com", DEFAULT_OPPORTUNITIES[1]),
    ("CUSTOMER1@example.com", DEFAULT_OPPORTUNITIES[0]),
    ("customer46@example.com", None),
    ("customer55@example.com", None),
    ("nobody@example.com", None),
]


def email_sheet(folder: Path, rows: list[tuple[str, str | None]] = EMAIL_ROWS) -> Path:
    """A sales export: the customer's email, no opportunity id."""
    return write_csv(
        folder / "visits by email.csv",
        [
            {"Customer Email": email, "Owner Email": OWNER, "PAN": f"ABCDE{n:04d}F"}
            for n, (email, _where) in enumerate(rows, start=1)
        ],
    )


def lookup_form(page: Page, html: str, **changes: str) -> dict[str, str]:
    """The build form as a person submits it after choosing the look-up and typing the type's code."""
    form = {"csrf": page.csrf, "use": "built", **selected(html), "event": "201", "save_as": "by email"}
    return {**form, "opportunity_source": "lookup", "lookup_opportunity_type": "12000", **changes}


def lookups_made(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.request_log if r.path == OPPORTUNITIES_BY_LEAD_FIELD_PATH)


@pytest.mark.parametrize(
    ("header", "value", "lead_field"),
    [
        ("Customer Email", "customer1@example.com", "EmailAddress"),
        ("Customer Mobile", "98765 43210", "Mobile"),
        ("Phone", "+91-9876543210", "Phone"),
    ],
)
def test_a_sheet_without_opportunity_ids_preselects_the_lookup(page, header, value, lead_field):
    sheet = write_csv(page.root / "sheet.csv", [{header: value, "Owner Email": OWNER, "PAN": "ABCDE1234F"}])
    html = page.upload(sheet).text
    assert re.search(r'id="source_lookup"[^>]*checked', html)
    assert not re.search(r'id="source_column"[^>]*checked', html)
    form = selected(html)
    assert form["lookup_lead_field"] == lead_field
    assert form["lookup_column"] == header
    assert form["owner_email"] == "Owner Email"  # the owner's email is never the one looked up


def test_a_sheet_with_opportunity_ids_keeps_the_column(page):
    html = page.upload(SAMPLE).text
    assert re.search(r'id="source_column"[^>]*checked', html)
    assert selected(html)["opportunity_id"] == "Opportunity ID"
    for label in (
        "Look up the lead by",
        "Column with the lead's email or phone",
        "Opportunity type code",
        "Take the newest when a lead has several of this type",
    ):  # every control of the choice has its label, tied to it by id
        assert re.search(rf'<label for="[^"]+">{re.escape(label)}</label>', unescape(html)), label


def test_an_email_lookup_posts_to_each_leads_opportunity_and_shows_the_failed_lookups(page):
    response = page.upload(email_sheet(page.root))
    import_id = page.import_id(response)
    response = page.client.post(f"/imports/{import_id}/preview", data=lookup_form(page, response.text))
    assert response.status_code == 200, problem(response.text)
    saved = yaml.safe_load((page.root / "mappings" / "by email.yaml").read_text(encoding="utf-8"))
    assert saved["opportunity_id"] == {
        "lookup": {"lead_field": "EmailAddress", "column": "Customer Email", "opportunity_type": 12000}
    }
    preview = unescape(response.text)
    assert "Ready to import</dt><dd>3<" in preview
    assert "Rows with problems</dt><dd>3<" in preview
    assert "found from the lead: 5 look-up calls" in preview  # one per distinct customer
    assert DEFAULT_OPPORTUNITIES[0] in preview  # the rows as sent carry the opportunity found
    assert lookups_made(page.sandbox) == 5
    assert page.sandbox.stats.bulk_calls == 0

    page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
    page.web.runner.wait(import_id, 60)
    expected = sorted(where for _email, where in EMAIL_ROWS if where)
    assert sorted(a.opportunity_id for a in page.sandbox.activities()) == expected
    assert lookups_made(page.sandbox) == 5  # the import used what the preview found
    results = unescape(page.client.get(f"/imports/{import_id}").text)
    assert re.search(r"Posted</dt><dd>3<", results)
    failed = lookup_rows(results)
    assert [row for row, _column, _message, _stage in failed] == ["5", "6", "7"]
    assert {(column, stage) for _row, column, _message, stage in failed} == {
        ("Customer Email", "no single opportunity found")
    }
    messages = [message for _row, _column, message, _stage in failed]
    assert "has 2 opportunities of type 12000" in messages[0]
    assert "tick 'Take the newest when a lead has several of this type'" in messages[0]
    assert messages[1].startswith("no lead with email address 'customer55@example.com' has an opportunity")
    assert messages[2].startswith("no lead with email address 'nobody@example.com'")
    workbook = openpyxl.load_workbook(
        io.BytesIO(page.client.get(f"/imports/{import_id}/errors.xlsx").content)
    )
    stages = [row[1] for row in workbook.worksheets[0].iter_rows(min_row=2, values_only=True)]
    assert stages == ["lookup", "lookup", "lookup"]


def test_pick_newest_posts_a_lead_with_two_opportunities_to_the_newest(page):
    rows = [("customer46@example.com", DEFAULT_OPPORTUNITIES[91])]  # 92 was created after 91
    response = page.upload(email_sheet(page.root, rows))
    import_id = page.import_id(response)
    form = lookup_form(page, response.text, lookup_pick="newest")
    response = page.client.post(f"/imports/{import_id}/preview", data=form)
    assert "Ready to import</dt><dd>1<" in response.text, problem(response.text)
    saved = yaml.safe_load((page.root / "mappings" / "by email.yaml").read_text(encoding="utf-8"))
    assert saved["opportunity_id"]["lookup"]["pick"] == "newest"
    page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
    page.web.runner.wait(import_id, 60)
    assert [a.opportunity_id for a in page.sandbox.activities()] == [DEFAULT_OPPORTUNITIES[91]]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"lookup_opportunity_type": ""}, "opportunity type's code"),
        ({"lookup_opportunity_type": "12k"}, "opportunity type's code"),
        ({"lookup_column": ""}, "column that holds the lead's email or phone"),
        ({"lookup_lead_field": "ProspectID"}, "what to look the lead up by"),
    ],
)
def test_an_incomplete_lookup_is_refused_with_what_to_choose(page, changes, says):
    response = page.upload(email_sheet(page.root))
    form = lookup_form(page, response.text, **changes)
    response = page.client.post(f"/imports/{page.import_id(response)}/preview", data=form)
    assert response.status_code == 422
    assert says in unescape(problem(response.text))
    assert not (page.root / "mappings" / "by email.yaml").exists()
    assert lookups_made(page.sandbox) == 0


def lookup_rows(html: str) -> list[tuple[str, ...]]:
    """The rows of the page's problem table whose stage is the look-up: (row, column, problem, stage)."""
    table = re.search(r'<table class="errors".*?</table>', html, re.S)
    assert table, "no table of row problems"
    cells = [
        tuple(re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", line, re.S))
        for line in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    ]
    return [cell for cell in cells if cell and cell[3] == "no single opportunity found"]


def test_a_refused_lookup_keeps_what_the_person_chose(page):
    sheet = write_csv(
        page.root / "both.csv",
        [
            {
                "Opportunity ID": "",
                "Customer Email": "customer1@example.com",
                "Owner Email": OWNER,
                "PAN": "P1",
            }
        ],
    )
    response = page.upload(sheet)
    assert re.search(r'id="source_column"[^>]*checked', response.text)  # a column of ids is guessed
    import_id = page.import_id(response)
    form = lookup_form(
        page, response.text, lookup_column="Customer Email", lookup_pick="newest", save_as="mine"
    )
    form["lookup_opportunity_type"] = ""
    response = page.client.post(f"/imports/{import_id}/preview", data=form)
    assert response.status_code == 422
    html = response.text
    assert "opportunity type&#39;s code" in problem(html)
    assert re.search(r'id="source_lookup"[^>]*checked', html)  # not back to the guess
    assert selected(html)["lookup_column"] == "Customer Email"
    assert re.search(r'id="lookup_pick"[^>]*checked', html)
    assert 'id="save_as" name="save_as" size="45" required value="mine"' in html
    response = page.client.post(
        f"/imports/{import_id}/preview", data={**lookup_form(page, html), "save_as": "mine"}
    )
    assert "Ready to import</dt><dd>1<" in response.text, problem(response.text)
    saved = yaml.safe_load((page.root / "mappings" / "mine.yaml").read_text(encoding="utf-8"))
    assert saved["opportunity_id"]["lookup"]["column"] == "Customer Email"


def test_a_mobile_lookup_reads_the_numbers_in_their_written_forms(page):
    mobiles = ["9000000001", "+91 90000 00001", "090000-00002"]  # leads 1, 1 and 2
    sheet = write_csv(
        page.root / "by mobile.csv",
        [{"Mobile": m, "Owner Email": OWNER, "PAN": f"ABCDE000{n}F"} for n, m in enumerate(mobiles)],
    )
    response = page.upload(sheet)
    import_id = page.import_id(response)
    assert selected(response.text)["lookup_lead_field"] == "Mobile"
    response = page.client.post(f"/imports/{import_id}/preview", data=lookup_form(page, response.text))
    assert "found from the lead: 2 look-up calls" in response.text, problem(response.text)
    page.client.post(f"/imports/{import_id}/start", data={"csrf": page.csrf})
    page.web.runner.wait(import_id, 60)
    assert sorted(a.opportunity_id for a in page.sandbox.activities()) == sorted(
        [DEFAULT_OPPORTUNITIES[0], DEFAULT_OPPORTUNITIES[0], DEFAULT_OPPORTUNITIES[1]]
    )
