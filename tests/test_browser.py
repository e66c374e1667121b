"""The web page in a real browser: Debian's Chromium driven by Playwright (no browser download).

Screenshots go to tests/output/<test name>/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from docqa.ingest import build_index  # noqa: E402
from docqa.server import create_app  # noqa: E402
from tests.support.pdfs import write_pdf  # noqa: E402
from tests.fixtures_server import live_server  # noqa: E402

CHROMIUM = Path(os.environ.get("DOCQA_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def site(fact_project, tiny_gguf):
    llm = {"model_path": str(tiny_gguf), "max_new_tokens": 24, "context_length": 1024}
    settings = fact_project.configure(llm=llm, serve={"watch": False})
    build_index(settings)
    with live_server(create_app(settings)) as url:
        yield url


def test_upload_ask_stream_and_open_the_cited_page(browser, site, tmp_path, output_dir):
    report = write_pdf(tmp_path / "kappa-annual-report-2023.pdf", [
        "Kappa Rail carried 41 million passengers in 2023 on its northern network.",
        "Kappa Rail opened the Lindholm viaduct in March 2023. " + PAYLOAD,
    ])
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    sync_api.expect(page.locator("#health")).to_contain_text("2 documents")

    page.set_input_files("#file-input", str(report))
    sync_api.expect(page.locator("#documents")).to_contain_text("kappa-annual-report-2023.pdf", timeout=300_000)
    sync_api.expect(page.locator("#builds")).to_contain_text("Indexed (upload): kappa-annual-report-2023.pdf")
    page.screenshot(path=str(output_dir / "1-uploaded.png"))

    page.fill("#question", "How many passengers did Kappa Rail carry in 2023?")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card").first).to_contain_text("kappa-annual-report-2023.pdf", timeout=120_000)
    streamed = page.locator("#answer").text_content()
    assert streamed.strip(), "no answer text was streamed into the page"
    sync_api.expect(page.locator("#timings")).to_contain_text("tokens/s")

    page.locator("#sources .card").first.click()
    image = page.locator("#page-image")
    sync_api.expect(page.locator("#viewer")).to_be_visible()
    sync_api.expect(page.locator("#page-label")).to_contain_text("kappa-annual-report-2023.pdf — page 1 of 2")
    # (The page's CSP forbids eval, so the wait is a poll from here rather than page.wait_for_function.)
    sync_api.expect(image).to_have_attribute("src", re.compile("^blob:"))
    deadline = time.monotonic() + 30
    while image.evaluate("img => img.complete && img.naturalWidth") == 0:
        assert time.monotonic() < deadline, "the page image did not load"
        time.sleep(0.1)
    assert image.evaluate("img => img.naturalWidth") == 918  # Letter width at 1.5 pixels per point
    page.screenshot(path=str(output_dir / "2-answer-and-page.png"))

    page.click("#next")
    sync_api.expect(page.locator("#page-label")).to_contain_text("page 2 of 2")
    sync_api.expect(page.locator("#next")).to_be_disabled()
    assert errors == [], errors


def test_html_in_a_pdf_is_shown_as_text(browser, site, tmp_path, output_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    report = write_pdf(tmp_path / "sigma.pdf", ["Sigma Optics warranty terms: " + PAYLOAD])
    page.goto(site)
    page.set_input_files("#file-input", str(report))
    sync_api.expect(page.locator("#documents")).to_contain_text("sigma.pdf", timeout=300_000)
    page.check("#retrieval-only")
    page.fill("#question", "Sigma Optics warranty terms")
    page.click("#ask")
    card = page.locator("#sources .card").first
    sync_api.expect(card).to_contain_text("<script>window.pwned = 1</script>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#sources script, #sources img").count() == 0
    page.screenshot(path=str(output_dir / "passages.png"))


def test_ask_every_document_fills_a_table_and_downloads_csv(browser, site, output_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask-each")
    rows = page.locator("#each-rows tr")
    sync_api.expect(rows).to_have_count(2)
    sync_api.expect(rows.nth(1).locator("td").nth(2)).to_have_text("3", timeout=60_000)
    with page.expect_download() as download:
        page.click("#csv")
    saved = output_dir / "every-document.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == '"document","answer","page"'
    assert lines[2].startswith('"beta-10k.pdf","The board declared a quarterly dividend of 42 cents per share."') and lines[2].endswith(',"3"')
    page.screenshot(path=str(output_dir / "every-document.png"))
