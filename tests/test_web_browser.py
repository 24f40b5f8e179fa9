"""End-to-end: the web page in a real headless Chromium (Debian's `chromium` and `chromium-driver`).

Upload the sample, build the mapping on the page, preview, import against the sandbox, download
the error workbook, fix it, upload it again, and check what the sandbox stored; and a sheet keyed
by the customer's email, its opportunities found from the lead. A screenshot of
each step is kept in tests/artifacts/web/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import uvicorn

from importer.sandbox import Faults, Sandbox
from importer.throttle import RateLimit
from tests.conftest import REPO
from tests.test_web import EMAIL_ROWS, SAMPLE, TOKEN, email_sheet, make_web

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)
ARTIFACTS = REPO / "tests" / "artifacts" / "web"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Sandbox, Path]]:
    monkeypatch.setenv("LSQ_IMPORT_STATE_DIR", str(tmp_path / "state"))
    # a little latency per call, so the live progress of an import can be seen
    with Sandbox(rate_limit=(50, 1.0), faults=Faults(latency_ms=(40, 60))) as sandbox:
        app = make_web(
            sandbox,
            tmp_path,
            account_label="sandbox (nothing reaches LeadSquared)",
            rate_limit=RateLimit(10, 1.0),  # about 6 s for the sample: long enough to watch it move
        ).starlette()
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        web = uvicorn.Server(config)
        thread = threading.Thread(target=web.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not web.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert web.started, "the web server did not start"
        port = web.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", sandbox, tmp_path
        finally:
            web.should_exit = True
            thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> None:
    """A full-page PNG of what the person sees now."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, max(800, min(height + 40, 6000)))
    short = height - int(driver.execute_script("return window.innerHeight"))  # the window's own bars
    if short > 0:
        driver.set_window_size(1280, min(height + 40 + short, 6000))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def by_label(driver: webdriver.Chrome, text: str) -> object:
    quoted = f'"{text}"' if "'" in text else f"'{text}'"  # an XPath 1.0 literal cannot escape its quote
    label = driver.find_element(By.XPATH, f"//label[normalize-space(text())={quoted}]")
    return driver.find_element(By.ID, label.get_attribute("for"))


def button(driver: webdriver.Chrome, name: str, within: str = "") -> object:
    return driver.find_element(By.XPATH, f"{within}//button[normalize-space(.)='{name}']")


def heading(driver: webdriver.Chrome, starts: str, timeout: float = 60) -> None:
    # while the next page loads, Chromium may answer for the old h1 with "Node with given id does
    # not belong to the document" (a stale element in other words): wait on, as for a stale one
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), starts)
    )


def test_upload_map_preview_import_download_fix_and_reupload(server, browser):
    url, sandbox, _root = server
    browser.get(f"{url}/?token={TOKEN}")
    assert "token" not in browser.current_url  # exchanged for the cookie, gone from the address bar
    shot(browser, "01-home")

    by_label(browser, "Spreadsheet").send_keys(str(SAMPLE))
    button(browser, "Upload").click()
    heading(browser, "Match the columns")
    assert Select(by_label(browser, "Opportunity ID")).first_selected_option.text == "Opportunity ID"
    assert Select(by_label(browser, "PAN Number")).first_selected_option.text == "PAN"
    shot(browser, "02-mapping")

    button(browser, "Preview", "//form[@id='build-form']").click()
    heading(browser, "Preview")
    table = browser.find_element(
        By.XPATH, "//table[caption[starts-with(normalize-space(.), 'Rows that will not')]]"
    )
    headers = [th.text for th in table.find_elements(By.XPATH, ".//thead//th")]
    assert headers == ["Row", "Column", "Problem", "Stage"]
    assert sandbox.stats.bulk_calls == 0
    shot(browser, "03-preview")

    button(browser, "Import").send_keys(Keys.ENTER)  # by keyboard
    heading(browser, "Importing", 10)

    def posted_so_far(driver: webdriver.Chrome) -> bool:
        return int(driver.find_element(By.CSS_SELECTOR, "[data-key=rows_posted]").text or 0) > 0

    WebDriverWait(browser, 30).until(posted_so_far)  # the counts move without a reload
    shot(browser, "04-importing")
    heading(browser, "Results")
    assert len(sandbox.activities()) == 190
    shot(browser, "05-results")

    browser.find_element(By.LINK_TEXT, "Download error workbook").click()
    downloaded = browser.downloads / "activities.errors.xlsx"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not downloaded.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert downloaded.exists()
    book = openpyxl.load_workbook(downloaded)
    sheet = book.worksheets[0]
    assert sheet.max_row == 11
    headers = [cell.value for cell in sheet[1]]
    email = headers.index("Owner Email") + 1
    opportunity = headers.index("Opportunity ID") + 1
    fixed_on = []
    for row in range(2, sheet.max_row + 1):
        if sheet.cell(row, email).value == "vikram.shah@example":
            sheet.cell(row, email).value = "vikram.shah@example.com"
            fixed_on.append(sheet.cell(row, opportunity).value)
    assert len(fixed_on) == 1
    fixed = browser.downloads / "activities fixed.xlsx"  # type: ignore[attr-defined]
    book.save(fixed)

    by_label(browser, "Spreadsheet").send_keys(str(fixed))
    button(browser, "Upload", "//form[@id='upload-form']").click()
    heading(browser, "Match the columns")
    assert Select(by_label(browser, "Saved mapping")).first_selected_option.text.startswith(
        "Document Collected"
    )
    shot(browser, "06-reupload-mapping")
    button(browser, "Preview", "//form[@id='saved-form']").click()
    heading(browser, "Preview")
    shot(browser, "07-reupload-preview")
    button(browser, "Import").click()
    heading(browser, "Results")
    shot(browser, "08-reupload-results")
    stored = sandbox.activities()
    assert len(stored) == 191  # the fixed row; the rows LeadSquared refused are refused again
    assert [a.owner_email for a in sandbox.activities(fixed_on[0])].count("vikram.shah@example.com") >= 1
    assert len(stored) == len({a.id for a in stored})
    browser.get(url + "/")
    shot(browser, "09-history")
    assert len(browser.find_elements(By.XPATH, "//table[contains(@class,'history')]/tbody/tr")) == 2


def test_a_sheet_keyed_by_email_is_imported_with_the_lookup_chosen_by_keyboard(server, browser):
    url, sandbox, root = server
    browser.get(f"{url}/?token={TOKEN}")
    by_label(browser, "Spreadsheet").send_keys(str(email_sheet(root)))
    button(browser, "Upload").click()
    heading(browser, "Match the columns")
    column_way, lookup_way = (
        by_label(browser, "The sheet has the opportunity ID"),
        by_label(browser, "Find it from the lead's email or phone"),
    )
    assert lookup_way.is_selected()  # proposed: no column looks like opportunity ids
    column_way.send_keys(Keys.SPACE)  # a person who changes their mind, by keyboard
    assert not by_label(browser, "Opportunity type code").is_enabled()
    lookup_way.send_keys(Keys.SPACE)
    assert lookup_way.is_selected()
    assert not by_label(browser, "Opportunity ID").is_enabled()  # the other way's controls step aside
    Select(by_label(browser, "Look up the lead by")).select_by_visible_text("Email address")
    lead_column = Select(by_label(browser, "Column with the lead's email or phone"))
    assert lead_column.first_selected_option.text == "Customer Email"
    by_label(browser, "Opportunity type code").send_keys("12000")
    name = by_label(browser, "Save this mapping as")
    name.clear()
    name.send_keys("Visits by email")
    shot(browser, "11-lookup-mapping")
    name.send_keys(Keys.ENTER)  # submits the form, as Enter in a text field does

    heading(browser, "Preview")
    stages = browser.find_elements(By.XPATH, "//table[@id='row-errors']/tbody/tr/td[4]")
    assert [td.text for td in stages] == ["no single opportunity found"] * 3
    assert "5 look-up calls" in browser.find_element(By.TAG_NAME, "main").text
    assert sandbox.stats.bulk_calls == 0
    shot(browser, "12-lookup-preview")
    button(browser, "Import").send_keys(Keys.ENTER)
    heading(browser, "Results")
    shot(browser, "13-lookup-results")
    expected = sorted(where for _email, where in EMAIL_ROWS if where)
    assert sorted(a.opportunity_id for a in sandbox.activities()) == expected
    rows = browser.find_elements(By.XPATH, "//table[@id='row-errors']/tbody/tr")
    assert [row.find_element(By.XPATH, "td[1]").text for row in rows] == ["5", "6", "7"]
    assert "has 2 opportunities of type 12000" in rows[0].text
    saved = (root / "mappings" / "Visits by email.yaml").read_text(encoding="utf-8")
    assert "lookup:" in saved
    assert "lead_field: EmailAddress" in saved
