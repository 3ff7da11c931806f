"""The HTML report in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromedriver. The page loads without console errors, its matrix counts what the JUnit file says, and a
failing check opens to its protocol transcript. The screenshot is kept in artifacts/ (gitignored)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.report import read_run
from tests.report_runs import CHECKOUT, starttls_run

pytestmark = pytest.mark.browser

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = CHECKOUT / "artifacts"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("browser")
    proc = starttls_run(workdir, ["auth_before_tls"], "--html", workdir / "report.html")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return workdir


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver: bash ci/install-real-servers.sh")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1200"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_the_report_opens_its_matrix_counts_and_a_failure_unfolds(report: Path, browser: webdriver.Chrome) -> None:
    from selenium.webdriver.common.by import By

    browser.get((report / "report.html").as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    assert browser.find_element(By.ID, "statement").text.startswith("NOT CONFORMANT: 2 result(s) fail the run")

    expected = Counter(c.verdict for c in read_run(report / "report.xml").cases)
    in_matrix = Counter(a.get_attribute("data-verdict") for a in browser.find_elements(By.CSS_SELECTOR, "#matrix a"))
    in_counts = {td.get_attribute("data-verdict"): int(td.text) for td in browser.find_elements(By.CSS_SELECTOR, "#counts td")}
    assert in_matrix == expected and {v: n for v, n in in_counts.items() if n} == expected
    assert expected["fail"] == 2 and expected["pass"]
    first = browser.find_element(By.CSS_SELECTOR, "#matrix tbody tr")
    assert first.find_element(By.TAG_NAME, "th").text == "STARTTLS-AUTH-01"  # failing requirements first
    label = first.find_element(By.CSS_SELECTOR, "a[data-verdict=fail]").get_attribute("aria-label")
    assert label == "STARTTLS-AUTH-01 on submission@node1: fail"

    first.find_element(By.CSS_SELECTOR, "a[data-verdict=fail]").click()
    case = browser.find_element(By.ID, browser.current_url.rsplit("#", 1)[1])
    assert case.get_attribute("open") is not None and case.get_attribute("data-verdict") == "fail"
    transcript = case.find_element(By.CSS_SELECTOR, "details.transcript pre")
    assert not transcript.is_displayed()
    case.find_element(By.CSS_SELECTOR, "details.transcript summary").click()
    assert transcript.is_displayed() and "EHLO" in transcript.text and "250" in transcript.text
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
