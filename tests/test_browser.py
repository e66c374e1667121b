"""The web page in a real browser: Debian's Chromium driven by Playwright (no browser download).

Screenshots go to tests/output/<test name>/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
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
    sync_api.expect(page.locator("#builds")).to_contain_text("Indexed (upload): added kappa-annual-report-2023.pdf")
    page.screenshot(path=str(output_dir / "1-uploaded.png"))

    page.fill("#question", "How many passengers did Kappa Rail carry in 2023?")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card").first).to_contain_text("kappa-annual-report-2023.pdf", timeout=120_000)
    sync_api.expect(page.locator("#timings")).to_contain_text("tokens/s", timeout=120_000)  # the answer's end
    streamed = page.locator("#answer").text_content()
    assert streamed.strip(), "no answer text was streamed into the page"

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


def test_copy_and_the_page_label_follow_what_is_on_screen(browser, site, output_dir):
    """Copy after a stopped or failed question copied the question before's answer and sources; a page that failed
    to load left the label on it over the image of the page before; the answer panel of the question before stayed
    above an "Ask every document" table (a team review)."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card").first).to_contain_text("beta-10k.pdf", timeout=60_000)
    sync_api.expect(page.locator("#copy")).to_be_enabled()

    page.route("**/api/**", lambda route: route.abort())  # the server unreachable
    page.fill("#question", "How many stores?")
    page.click("#ask")
    # a request that never reached the server said the browser's "Failed to fetch"
    sync_api.expect(page.locator("#status")).to_have_text(
        "Cannot reach the docqa server: it may have stopped, or the network is down.")
    sync_api.expect(page.locator("#copy")).to_be_disabled()
    page.unroute("**/api/**")
    sync_api.expect(page.locator("#status")).to_have_text("", timeout=30_000)  # cleared once the server answers

    page.fill("#question", "dividend")
    page.click("#ask")
    sync_api.expect(page.locator("#copy")).to_be_enabled(timeout=60_000)
    page.locator("#sources .card").first.click()
    label = page.locator("#page-label")
    sync_api.expect(label).to_have_text(re.compile(r"^beta-10k\.pdf — page 3 of 3$"))
    page.route("**/pages/2.png*", lambda route: route.abort())
    page.click("#prev")
    sync_api.expect(page.locator("#status")).to_contain_text("Page 2 of beta-10k.pdf cannot be shown")
    sync_api.expect(label).to_have_text("beta-10k.pdf — page 3 of 3")  # the image still shown
    assert page.locator("#page-image").get_attribute("alt") == "beta-10k.pdf, page 3"
    page.screenshot(path=str(output_dir / "page-not-shown.png"))

    page.click("#ask-each")
    sync_api.expect(page.locator("#each-rows tr")).to_have_count(2)
    sync_api.expect(page.locator("#result")).to_be_hidden()
    assert "#" not in page.url


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
    assert download.value.suggested_filename == "docqa-dividend.csv"
    saved = output_dir / "every-document.csv"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only after a byte-order mark
    lines = saved.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == '"question","document","answer","page","notes"'  # each answer's notes were dropped
    assert lines[2].startswith('"dividend","beta-10k.pdf","The board declared a quarterly dividend of 42 cents per share."') and lines[2].endswith(',"3",""')
    sync_api.expect(page.locator("#each-heading")).to_have_text("Every document")
    page.screenshot(path=str(output_dir / "every-document.png"))
    # documents ticked: the table says it asked those, and each row keeps its answer's notes
    page.locator("#documents li", has_text="beta-10k.pdf").locator("input").check()
    page.fill("#question", "What dividend did Alpha's 10-Q declare?")
    page.click("#ask-each")
    sync_api.expect(page.locator("#each-heading")).to_have_text("Chosen documents (1)")
    sync_api.expect(rows.first.locator("td").nth(3)).to_contain_text("none of the documents chosen is Alpha's",
                                                                      timeout=60_000)
    # a passage shown without an answer is cut as the command line's table cuts it (a whole one made a row of thirty
    # lines on a phone)
    cell = page.evaluate("cut('word '.repeat(100), PASSAGE_CHARS)")
    assert len(cell) == 300 and cell.endswith("word…")


def test_a_skipped_upload_can_be_deleted_from_the_build_panel(browser, site, fact_project, tmp_path, output_dir):
    broken = tmp_path / "broken-report.pdf"
    broken.write_bytes(write_pdf(tmp_path / "whole.pdf", ["Lambda Ports handled 9 million tonnes."]).read_bytes()[:300])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(site)
    page.set_input_files("#file-input", str(broken))
    skipped = page.locator("#builds .skipped li", has_text="broken-report.pdf")
    sync_api.expect(skipped).to_contain_text("truncated PDF", timeout=300_000)
    # what the build did, not what it was asked to do: it indexed nothing
    left_out = page.locator("#builds .build.left-out")
    sync_api.expect(left_out).to_contain_text("Not indexed (upload): broken-report.pdf")
    page.screenshot(path=str(output_dir / "skipped.png"))
    skipped.get_by_role("button", name="Delete file").click()
    deadline = time.monotonic() + 30
    while (fact_project.data / "broken-report.pdf").exists():
        assert time.monotonic() < deadline, "the skipped file was not deleted"
        time.sleep(0.1)
    sync_api.expect(page.locator("#builds .build").first).to_contain_text(
        "Deleted broken-report.pdf (it was not indexed)", timeout=120_000)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)


def test_a_colleague_s_delete_reaches_every_open_page(browser, site, output_dir):
    """A build finished between two looks of a page (a delete takes a second or two) left its list stale, so
    ticking the gone document gave 400 and deleting it 404."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    sync_api.expect(page.locator("#builds .build")).to_have_count(0)
    deleted = httpx.delete(f"{site}/api/documents/beta-10k.pdf", timeout=30)
    assert deleted.status_code == 202
    sync_api.expect(page.locator("#builds .build").first).to_contain_text("Deleted beta-10k.pdf",
                                                                          timeout=60_000)
    sync_api.expect(page.locator("#documents li")).to_have_count(1)
    sync_api.expect(page.locator("#documents")).not_to_contain_text("beta-10k.pdf")
    page.screenshot(path=str(output_dir / "after-delete.png"))


def test_a_chosen_document_deleted_by_a_colleague_is_said_and_not_replaced_by_all(browser, site, output_dir):
    """The question then searched every document without a word ("Questions search every document.")."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.check("input[aria-label='Ask only beta-10k.pdf']")
    sync_api.expect(page.locator("#scope")).to_have_text("Questions search 1 chosen document.")
    assert httpx.delete(f"{site}/api/documents/beta-10k.pdf", timeout=30).status_code == 202
    sync_api.expect(page.locator("#documents li")).to_have_count(1, timeout=60_000)
    sync_api.expect(page.locator("#scope")).to_contain_text("beta-10k.pdf, which you chose, is no longer indexed.")
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    sync_api.expect(page.locator("#status")).to_contain_text("Not asked: beta-10k.pdf, which you chose, is no longer indexed")
    assert page.locator("#result").is_hidden()
    page.click("#select-none")
    sync_api.expect(page.locator("#scope")).to_have_text("Questions search every document.")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card").first).to_be_visible(timeout=60_000)


def test_upload_and_delete_with_the_keyboard(browser, site, tmp_path, output_dir):
    """Enter on the drop zone did not open the file chooser, and the Delete buttons, hidden until hovered, were
    skipped by the Tab key. The drop zone was a label, plain text to a screen reader: it holds a button, Add PDFs…"""
    report = write_pdf(tmp_path / "mu-annual-report.pdf", ["Mu Shipping owned 31 vessels in 2023."])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # Listened for from the start: Playwright turns the browser's file-chooser interception on when asked, and a
    # chooser opened before that is lost (expect_file_chooser around the key press lost it in most full runs here)
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.get_by_role("button", name="Add PDFs…", exact=True).focus()
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while not choosers:
        assert time.monotonic() < deadline, "Enter on the drop zone opened no file chooser"
        page.wait_for_timeout(100)
    choosers[0].set_files(str(report))
    sync_api.expect(page.locator("#documents li")).to_have_count(3, timeout=300_000)
    page.locator("#documents li input[type=checkbox]").first.focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.textContent, getComputedStyle(document.activeElement).opacity]")
    assert focused == ["Delete", "1"]
    page.screenshot(path=str(output_dir / "delete-focused.png"))


def test_notes_the_documents_searched_and_a_link_that_keeps_them(browser, site, output_dir):
    """The page showed neither the answer's notes (cut short at the token limit, say) nor which documents were
    searched, and its link to the question dropped the chosen documents and the passages-only mode."""
    question = "What dividend did the board declare?"
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(site)
    page.locator("#documents li", has_text="beta-10k.pdf").locator("input[type=checkbox]").check()
    page.fill("#question", question)
    page.click("#ask")
    sync_api.expect(page.locator("#searched")).to_have_text("Searched the 1 document chosen: beta-10k.pdf",
                                                            timeout=120_000)
    sync_api.expect(page.locator("#notes")).to_contain_text("raise llm.max_new_tokens")  # 24 tokens of noise
    page.screenshot(path=str(output_dir / "notes.png"))

    page.check("#retrieval-only")
    page.click("#ask")
    sync_api.expect(page.locator("#answer")).to_have_text("The passages that best match the question:")
    link = page.locator("#permalink").get_attribute("href")
    colleague = browser.new_page(viewport={"width": 1280, "height": 800})
    colleague.goto(site + "/" + link)
    sync_api.expect(colleague.locator("#answer")).to_have_text("The passages that best match the question:")
    sync_api.expect(colleague.locator("#searched")).to_have_text("Searched the 1 document chosen: beta-10k.pdf")
    assert colleague.input_value("#question") == question and colleague.is_checked("#retrieval-only")
    assert colleague.locator("#documents li", has_text="beta-10k.pdf").locator("input").is_checked()
    # a name in the question that no passage found mentions is said, as on the command line
    colleague.fill("#question", "What dividend did Puma's board declare?")
    colleague.click("#ask")
    sync_api.expect(colleague.locator("#searched")).to_have_text(
        "Searched the 1 document chosen: beta-10k.pdf (no passage found mentions Puma, which the question names)")
    sync_api.expect(colleague.locator("#notes")).to_contain_text("no passage found mentions Puma")
    # what no filing of a named company is, as on the command line
    colleague.locator("#documents li", has_text="beta-10k.pdf").locator("input").uncheck()
    colleague.fill("#question", "What did Alpha's 10-Q say about its staff?")
    colleague.click("#ask")
    sync_api.expect(colleague.locator("#searched")).to_have_text(
        "Searched the 1 document named in the question: alpha-annual-report.pdf (no Alpha 10-Q is indexed)")
    sync_api.expect(colleague.locator("#notes")).to_contain_text("no Alpha 10-Q is indexed: the passages, and any answer")


def open_first_source_page(page) -> None:
    """Click the first source card and wait until its page image has loaded."""
    page.locator("#sources .card").first.click()
    image = page.locator("#page-image")
    sync_api.expect(image).to_have_attribute("src", re.compile("^blob:"))
    deadline = time.monotonic() + 30
    while image.evaluate("img => img.complete && img.naturalWidth") == 0:
        assert time.monotonic() < deadline, "the page image did not load"
        time.sleep(0.1)


def test_on_a_phone_the_question_comes_first_and_the_cited_page_is_shown(browser, site, output_dir):
    """At 375 pixels the question box was below the document panel, and the cited page opened off screen."""
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    assert page.locator("#question").bounding_box()["y"] < page.locator("#documents-panel").bounding_box()["y"]
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    open_first_source_page(page)
    top = page.locator("#page-label").bounding_box()["y"]
    assert 0 <= top < 60, top  # the viewer at the top of the screen, where it was scrolled before the image came in
    page.screenshot(path=str(output_dir / "phone-viewer.png"))


def test_an_upload_not_replaced_says_why_and_a_token_once_accepted_is_not_asked_for(browser, fact_project, tmp_path):
    """Declining "Replace it?" showed "Upload failed: 409 Conflict" (the reason had been read already), and the
    request for a token stayed on the page after the right one was given."""
    build_index(fact_project.configure(serve={"watch": False}))
    settings = fact_project.configure(serve={"watch": False})
    again = write_pdf(tmp_path / "beta-10k.pdf", ["Another Beta."])
    with live_server(create_app(settings, retrieval_only=True, token="s3cret-token")) as site:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(site + "/#" + "q=dividend&doc=beta-10k.pdf&passages=1")  # a colleague's link, in a new tab
        page.fill("#token", "wrong")
        page.click("#token-form button")
        sync_api.expect(page.locator("#status")).to_have_text(
            "the API token was refused: enter the right one at the top of the page")
        page.fill("#token", "s3cret-token")
        page.click("#token-form button")
        sync_api.expect(page.locator("#documents li")).to_have_count(2)
        sync_api.expect(page.locator("#status")).to_have_text("")
        # the link is asked once the token lets the page read the documents it names
        sync_api.expect(page.locator("#searched")).to_have_text("Searched the 1 document chosen: beta-10k.pdf")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.set_input_files("#file-input", str(again))
        sync_api.expect(page.locator("#builds .note.error")).to_contain_text(
            "Upload failed: beta-10k.pdf already exists; not replaced")
        page.locator("#builds .note.error .dismiss").click()
        sync_api.expect(page.locator("#builds .note")).to_have_count(0)
    assert (fact_project.data / "beta-10k.pdf").read_bytes() != again.read_bytes()


def test_a_build_s_title_names_only_the_files_it_was_asked_for(browser, site, fact_project, tmp_path):
    """The title listed every file the folder leaves out: deleting one of two broken uploads was 'Not indexed
    (delete): <the other>'."""
    whole = write_pdf(tmp_path / "whole.pdf", ["Nu Metals smelted 12 tonnes."]).read_bytes()
    for name in ("broken-one.pdf", "broken-two.pdf"):
        (tmp_path / name).write_bytes(whole[:300])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(site)
    page.set_input_files("#file-input", [str(tmp_path / "broken-one.pdf"), str(tmp_path / "broken-two.pdf")])
    sync_api.expect(page.locator("#builds .build").first).to_have_class(re.compile("left-out"), timeout=300_000)
    sync_api.expect(page.locator("#builds .build").first).to_contain_text(
        "Not indexed (upload): broken-one.pdf, broken-two.pdf")
    assert httpx.delete(f"{site}/api/documents/broken-one.pdf", timeout=30).status_code == 202
    latest = page.locator("#builds .build").first
    sync_api.expect(latest).to_contain_text("Deleted broken-one.pdf (it was not indexed)", timeout=60_000)
    sync_api.expect(latest.locator("div").first).not_to_contain_text("broken-two.pdf")


def test_a_link_to_documents_not_indexed_here_asks_nothing(browser, site):
    """The link's documents all gone, it asked every document instead."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    asked = []
    page.on("request", lambda request: asked.append(request.url) if request.url.endswith("/api/ask") else None)
    page.goto(site + "/#" + "q=dividend&doc=gone-2021.pdf&passages=1")
    sync_api.expect(page.locator("#status")).to_have_text("The linked document is not indexed here: gone-2021.pdf")
    assert page.input_value("#question") == "dividend" and asked == []
    assert page.locator("#result").is_hidden()


def test_escape_closes_the_page_before_it_stops_an_answer_and_never_from_a_text_box(browser, fact_project, tiny_gguf):
    """Escape stopped any answer in progress, even while it was meant to clear the filter box or close the page."""
    from docqa.qa import DocQA
    from tests.fixtures_server import GatedLLM

    settings = fact_project.configure(llm={"model_path": str(tiny_gguf), "max_new_tokens": 8,
                                           "context_length": 1024}, serve={"watch": False})
    build_index(settings)
    class SecondWaits(GatedLLM):
        """The first answer goes through; the second waits at the gate."""

        calls = 0

        def _generate(self, prompt):
            self.calls += 1
            yield from self.inner._generate(prompt) if self.calls == 1 else super()._generate(prompt)

    qa = DocQA(settings)
    gate = qa.llm = SecondWaits(qa.llm)
    with live_server(create_app(settings, qa)) as site:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(site)
        sync_api.expect(page.locator("#documents li")).to_have_count(2)
        page.fill("#question", "dividend")
        page.click("#ask-each")  # a page is opened from the table while the next document is answered
        first_page = page.locator("#each-rows tr").first.locator("button.page-link")
        sync_api.expect(first_page).to_have_count(1, timeout=60_000)
        assert gate.started.wait(60)  # the second answer is in progress, held at the gate
        first_page.click()
        sync_api.expect(page.locator("#viewer")).to_be_visible()
        page.keyboard.press("Escape")
        sync_api.expect(page.locator("#viewer")).to_be_hidden()
        sync_api.expect(page.locator("#stop")).to_be_visible()  # still answering
        page.fill("#doc-filter", "beta")
        page.keyboard.press("Escape")  # the filter box's own
        sync_api.expect(page.locator("#stop")).to_be_visible()
        page.focus("#question")
        page.keyboard.press("Escape")
        sync_api.expect(page.locator("#status")).to_have_text("Stopped.")
        gate.gate.set()
    qa.close()


@pytest.fixture
def other_site(tmp_path):
    """Another origin on this machine (a second loopback port), serving one page, as a site the user visits would."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "other-site"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Recorder:
    """ASGI middleware that notes each request's method, path and response status."""

    def __init__(self, app):
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def noting(message):
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


def test_a_page_of_another_site_cannot_upload_replace_or_probe_documents(browser, fact_project, tiny_gguf, other_site):
    """Cross-site request forgery: another site's script posts a PDF to the local server (a no-cors fetch, which a
    browser sends without asking the server), and loads a page image to learn whether a document exists. The
    server refuses both; the data folder is unchanged."""
    settings = fact_project.configure(llm={"model_path": str(tiny_gguf)}, serve={"watch": False})
    build_index(settings)
    recorder = Recorder(create_app(settings))
    with live_server(recorder) as site:
        _attack(browser, site, other_site, fact_project)
    # every request reached the server, which refused it (the image's runs beside the posts)
    assert sorted(recorder.seen) == [("GET", "/api/documents/beta-10k.pdf/pages/1.png", 403),
                                     ("POST", "/api/documents", 403), ("POST", "/api/documents", 403)]


def _attack(browser, site, other_site, fact_project):
    folder, other = other_site
    (folder / "index.html").write_text("""<!doctype html><script>
      window.sent = (async () => {
        const form = new FormData();
        form.append("files", new Blob(["%PDF-1.4 forged"], {type: "application/pdf"}), "beta-10k.pdf");
        // The response is opaque (and, under its resource policy, not even that): the request is what counts.
        const post = (url) => fetch(url, {method: "POST", mode: "no-cors", body: form}).catch(() => null);
        await post("SITE/api/documents?replace=true");
        await post("SITE/api/documents");
        return "sent";
      })();
      // Whether an indexed document's page loads as an image would tell this site the document exists.
      window.probed = new Promise((done) => {
        const image = new Image();
        image.onload = () => done("loaded");
        image.onerror = () => done("refused");
        image.src = "SITE/api/documents/beta-10k.pdf/pages/1.png";
      });
    </script>""".replace("SITE", site), encoding="utf-8")
    before = {path.name: path.read_bytes() for path in fact_project.data.iterdir()}
    page = browser.new_page()
    page.goto(other + "/index.html")
    assert page.evaluate("window.sent") == "sent"
    assert page.evaluate("window.probed") == "refused"
    assert {path.name: path.read_bytes() for path in fact_project.data.iterdir()} == before


def test_a_chat_front_end_on_another_origin_calls_the_api_when_listed(browser, fact_project, other_site):
    """serve.cors_origins: a page served elsewhere (a team's chat front end) asks with the token and reads the
    answer; the same page is refused by a server that does not list its origin."""
    folder, other = other_site
    (folder / "index.html").write_text("""<!doctype html><script>
      window.ask = (site) => fetch(site + "/api/retrieve", {method: "POST", headers: {
          "Authorization": "Bearer s3cret-token", "Content-Type": "application/json"},
          body: JSON.stringify({question: "What dividend did Beta declare?"})})
        .then((response) => response.json()).then((body) => body.passages[0].document)
        .catch((error) => "refused: " + error.name);
    </script>""", encoding="utf-8")
    build_index(fact_project.configure(serve={"watch": False}))
    listed = fact_project.configure(serve={"watch": False, "cors_origins": [other]})
    unlisted = fact_project.configure(serve={"watch": False})
    page = browser.new_page()
    page.goto(other + "/index.html")
    with live_server(create_app(listed, retrieval_only=True, token="s3cret-token")) as site:
        assert page.evaluate("(site) => window.ask(site)", site) == "beta-10k.pdf"
    with live_server(create_app(unlisted, retrieval_only=True, token="s3cret-token")) as site:
        assert page.evaluate("(site) => window.ask(site)", site) == "refused: TypeError"


def test_what_a_review_in_the_browser_found(browser, site, fact_project, tmp_path, output_dir):
    """A review found: a new question left the page of the one before open beside it; a failed question showed an
    empty answer card; Copy in passages-only mode copied no passage; a non-PDF among the files chosen made the whole
    upload fail, the PDFs too, unsaid; old builds' boxes stayed, their problems since fixed; a pasted question was
    cut at 4,000 characters without a word; the header counted an answered question as still with the model; the
    keyboard had to pass every document to reach the question; on a phone the table was wider than the screen."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    page = context.new_page()
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)

    page.keyboard.press("Tab")  # the first stop: past every document to the question
    sync_api.expect(page.locator("#skip")).to_be_focused()
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#question")).to_be_focused()

    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    page.locator("#sources .card").first.click()
    sync_api.expect(page.locator("#viewer")).to_be_visible()
    page.click("#copy")
    sync_api.expect(page.locator("#status")).to_have_text("Copied the answer with its sources.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("dividend\n\nPassages:\n[1] beta-10k.pdf, page 3\nThe board declared a quarterly dividend")

    page.fill("#question", "How many people did Alpha employ?")
    page.click("#ask")
    sync_api.expect(page.locator("#viewer")).to_be_hidden()  # the page beside was the question before's
    sync_api.expect(page.locator("#sources .card").first).to_contain_text("alpha-annual-report.pdf")
    page.uncheck("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    sync_api.expect(page.locator("#copy")).to_be_enabled(timeout=120_000)
    sync_api.expect(page.locator("#health")).not_to_contain_text("with the model")  # the answer is done

    page.route("**/api/**", lambda route: route.abort())  # the server unreachable (a health look would clear it)
    page.click("#ask")
    sync_api.expect(page.locator("#status")).to_contain_text("Cannot reach the docqa server")
    sync_api.expect(page.locator("#result")).to_be_hidden()
    page.unroute("**/api/**")

    page.fill("#question", "revenue " * 600)  # 4,800 characters pasted
    assert len(page.locator("#question").input_value()) == 4000
    sync_api.expect(page.locator("#status")).to_have_text(
        "A question holds at most 4,000 characters: the rest was cut.")

    notes = tmp_path / "notes.txt"
    notes.write_text("not a report", encoding="utf-8")
    leaders = "Flour milled " + "." * 160 + " 12 million tonnes"  # a contents line's dotted leaders, unbroken
    report = write_pdf(tmp_path / "omicron-2023.pdf", [f"Omicron Mills annual report 2023. {leaders}"])
    page.set_input_files("#file-input", [str(notes), str(report)])
    sync_api.expect(page.locator("#builds .note.error")).to_have_text(
        "×Not uploaded (only PDF files can be): notes.txt")
    sync_api.expect(page.locator("#documents")).to_contain_text("omicron-2023.pdf", timeout=300_000)
    page.set_input_files("#file-input", str(write_pdf(tmp_path / "pi-2023.pdf", ["Pi Foods baked 5 million loaves."])))
    sync_api.expect(page.locator("#documents")).to_contain_text("pi-2023.pdf", timeout=300_000)
    builds = page.locator("#builds .build")
    sync_api.expect(builds).to_have_count(1)  # the latest: the build before it is no longer news
    sync_api.expect(builds).to_contain_text("Indexed (upload): added pi-2023.pdf")
    page.screenshot(path=str(output_dir / "after-upload.png"))
    builds.get_by_role("button", name="Dismiss").click()
    sync_api.expect(builds).to_have_count(0)

    phone = context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(site)
    sync_api.expect(phone.locator("#documents li")).to_have_count(4)
    phone.check("#retrieval-only")
    phone.fill("#question", "How much flour was milled?")
    phone.click("#ask-each")
    sync_api.expect(phone.locator("#each-rows tr button.page-link")).to_have_count(4, timeout=60_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(output_dir / "phone-table.png"), full_page=True)
    context.close()


@contextmanager
def site_with_gated_model(fact_project, tiny_gguf, gated=None):
    """A server on the fact project with the random-weight model behind a gate (``gated``: a GatedLLM class), so that
    a test can hold an answer part way; yields the site's address and the gate."""
    from docqa.qa import DocQA
    from tests.fixtures_server import GatedLLM

    settings = fact_project.configure(llm={"model_path": str(tiny_gguf), "max_new_tokens": 8,
                                           "context_length": 1024}, serve={"watch": False})
    build_index(settings)
    qa = DocQA(settings)
    gate = qa.llm = (gated or GatedLLM)(qa.llm)
    try:
        with live_server(create_app(settings, qa)) as site:
            yield site, gate
            gate.gate.set()  # a held generation ends at its next token, before the server stops
    finally:
        gate.gate.set()
        qa.close()


def test_an_answer_stopped_part_way_still_shows_its_passages(browser, fact_project, tiny_gguf):
    """The passages come with the answer's end: a stopped answer showed an empty Sources heading."""
    from tests.fixtures_server import GatedLLM

    class OneTokenThenWaits(GatedLLM):
        def _generate(self, prompt):
            tokens = self.inner._generate(prompt)
            yield next(tokens)
            self.started.set()
            self.gate.wait(120)
            yield from tokens

    with site_with_gated_model(fact_project, tiny_gguf, OneTokenThenWaits) as (site, gate):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(site)
        page.fill("#question", "dividend")
        page.click("#ask")
        assert gate.started.wait(60)
        sync_api.expect(page.locator("#answer")).not_to_have_text("", timeout=30_000)
        page.click("#stop")
        sync_api.expect(page.locator("#status")).to_have_text("Stopped.")
        sync_api.expect(page.locator("#sources .card").first).to_contain_text("beta-10k.pdf", timeout=30_000)
        sync_api.expect(page.locator("#copy")).to_be_disabled()  # the answer is not whole


def test_the_passages_show_while_the_model_reads_them_and_stay_open_through_the_answer(browser, fact_project,
                                                                                       tiny_gguf):
    """The passages came with the answer's end: on a CPU, the seconds to the first token showed an empty card."""
    with site_with_gated_model(fact_project, tiny_gguf) as (site, gate):  # no token until the gate opens
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(site)
        page.fill("#question", "dividend")
        page.click("#ask")
        assert gate.started.wait(60)
        card = page.locator("#sources .card").first
        sync_api.expect(card).to_contain_text("beta-10k.pdf", timeout=30_000)
        sync_api.expect(page.locator("#status")).to_have_text(re.compile(r"The model is reading the \d passages? found"))
        sync_api.expect(page.locator("#searched")).to_contain_text("Searched all 2 documents")
        assert page.locator("#answer").text_content() == ""
        card.locator("button.open").click()  # the analyst opens the cited page meanwhile
        sync_api.expect(page.locator("#page-label")).to_contain_text("beta-10k.pdf — page")
        gate.gate.set()
        sync_api.expect(page.locator("#copy")).to_be_enabled(timeout=60_000)  # the answer is whole
        # the same sources: the card opened stays open, not redrawn under the reader
        sync_api.expect(card).to_have_class(re.compile(r"\bactive\b"))
        assert page.evaluate("document.querySelector('#sources .card.active button.open') !== null")
        assert not page.locator("#viewer").is_hidden()


# Every text a live region (a screen reader's running commentary) is given, in order: window.spoken
LISTEN = """() => {
  window.spoken = [];
  new MutationObserver((records) => {
    const regions = new Set();
    for (const record of records) {
      const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      const region = node && node.closest("[aria-live]:not([aria-live=off])");
      if (region) regions.add(region);
    }
    for (const region of regions) window.spoken.push(region.textContent.trim());
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def test_the_build_panel_keeps_the_keyboard_and_says_each_change_once(browser, site, tmp_path, output_dir):
    """The build panel was drawn anew at every look (every 4 s, 0.7 s during a build): a focused Delete file or
    Dismiss lost the focus to the page's top, and a screen reader heard the panel (a live region) again and again
    unchanged, the header too every 10 s. Its buttons were all 'Delete file' and 'Dismiss', the × 17 pixels wide;
    dismissing a message lost the focus too."""
    broken = tmp_path / "broken-report.pdf"
    broken.write_bytes(write_pdf(tmp_path / "whole.pdf", ["Lambda Ports handled 9 million tonnes."]).read_bytes()[:300])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    sync_api.expect(page.locator("#health")).to_contain_text("2 documents")
    page.evaluate(LISTEN)
    page.set_input_files("#file-input", str(broken))
    delete = page.get_by_role("button", name="Delete file broken-report.pdf", exact=True)
    sync_api.expect(delete).to_be_visible(timeout=300_000)
    delete.focus()
    for _ in range(2):  # looks as the timers take them, then one of the timer's own
        page.evaluate("() => Promise.all([refreshBuilds(), refreshHealth()])")
    page.wait_for_timeout(4500)
    sync_api.expect(delete).to_be_focused()
    spoken = [text for text in page.evaluate("window.spoken") if text]
    assert spoken.count("Not indexed (upload): broken-report.pdf") == 1, spoken  # the build's end, said once
    assert len(spoken) == len(set(spoken)), spoken  # and nothing said twice
    dismiss = page.get_by_role("button", name="Dismiss build message", exact=True)
    size = dismiss.bounding_box()
    assert size["width"] >= 24 and size["height"] >= 24, size

    page.keyboard.press("Enter")  # Delete file, confirmed: the box goes, the focus to the new build's ×
    sync_api.expect(page.locator("#builds .build").first).to_contain_text(
        "Deleted broken-report.pdf (it was not indexed)", timeout=120_000)
    sync_api.expect(dismiss).to_be_focused()
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#builds .build")).to_have_count(0)
    sync_api.expect(page.get_by_role("button", name="Add PDFs…", exact=True)).to_be_focused()


def test_sources_the_cited_page_and_the_table_by_keyboard(browser, site, output_dir):
    """Source cards were list items all named 'Show this page', opened by Enter but not Space, with the open card's
    look for a focus ring; opening or turning a page said nothing; closing it lost the focus to the page's top; the
    table's page cells took a click only; a finished answer, or table, was never said ('Answering…', then
    nothing)."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.focus("#question")
    page.keyboard.type("dividend")
    page.keyboard.press("Enter")
    announcer = page.locator("#announcer")
    sync_api.expect(announcer).to_have_text(re.compile(r"^Answer ready, [1-9] sources?\.$"), timeout=120_000)
    card = page.get_by_role("button", name="[1] beta-10k.pdf, page 3", exact=True)
    card.focus()
    ring = card.evaluate("b => ((s) => [s.outlineStyle, s.outlineWidth])(getComputedStyle(b.closest('.card')))")
    assert ring[0] == "solid" and float(ring[1].removesuffix("px")) >= 2, ring
    page.screenshot(path=str(output_dir / "card-focused.png"))

    page.keyboard.press(" ")
    sync_api.expect(page.locator("#viewer")).to_be_visible()
    sync_api.expect(announcer).to_have_text("beta-10k.pdf, page 3 of 3")
    sync_api.expect(card).to_be_focused()  # where the arrow keys turn the page
    page.keyboard.press("ArrowLeft")
    sync_api.expect(announcer).to_have_text("beta-10k.pdf, page 2 of 3")
    page.get_by_role("button", name="Close page viewer", exact=True).focus()
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#viewer")).to_be_hidden()
    sync_api.expect(card).to_be_focused()
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#viewer")).to_be_visible()
    page.focus("#next")
    page.keyboard.press("Escape")
    sync_api.expect(page.locator("#viewer")).to_be_hidden()
    sync_api.expect(card).to_be_focused()

    page.check("#retrieval-only")
    page.click("#ask-each")
    sync_api.expect(announcer).to_have_text("Answers ready from 2 documents.", timeout=60_000)
    show = page.get_by_role("button", name="Show page 3 of beta-10k.pdf", exact=True)
    show.focus()
    page.keyboard.press("Enter")
    sync_api.expect(announcer).to_have_text("beta-10k.pdf, page 3 of 3")
    page.get_by_role("button", name="Close page viewer", exact=True).click()
    sync_api.expect(show).to_be_focused()


def _wait_for_natural_width(image, expected: int) -> None:
    """Until the image loaded is ``expected`` pixels wide (the CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + 30
    while (width := image.evaluate("img => img.complete ? img.naturalWidth : 0")) != expected:
        assert time.monotonic() < deadline, f"the page image is {width} pixels wide, not {expected}"
        time.sleep(0.1)


def test_a_passage_low_on_its_page_is_scrolled_into_view(browser, site, tmp_path):
    """The viewer opened a cited page at its top: a passage at the foot of a long page, or on a zoomed one, was
    marked out of sight, and the analyst scrolled to find it."""
    from tests.support.pdfs import MAX_LINES

    filler = "\n".join(f"Line {n} of the chairman's statement on the year." for n in range(MAX_LINES - 3))
    report = write_pdf(tmp_path / "omega-annual-report.pdf", [
        filler + "\nOmega Shipping carried 73,000 containers to Rotterdam in 2023."])
    page = browser.new_page(viewport={"width": 1440, "height": 700})
    page.goto(site)
    page.set_input_files("#file-input", str(report))
    sync_api.expect(page.locator("#documents")).to_contain_text("omega-annual-report.pdf", timeout=300_000)
    page.check("#retrieval-only")
    page.fill("#question", "How many containers did Omega Shipping carry to Rotterdam?")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card").first).to_contain_text("omega-annual-report.pdf", timeout=60_000)
    open_first_source_page(page)
    frame = page.locator("#page-frame")
    # the marked line, in the box's view: the box scrolled down to it, not left at the page's top
    deadline = time.monotonic() + 10
    while frame.evaluate("f => f.scrollTop") == 0:
        assert time.monotonic() < deadline, "the viewer stayed at the page's top"
        time.sleep(0.1)
    box, image = frame.bounding_box(), page.locator("#page-image").bounding_box()
    left, top, right, bottom = map(float, page.evaluate(
        "async (url) => (await fetch(url)).headers.get('x-docqa-marked')",
        "/api/documents/omega-annual-report.pdf/pages/1.png?" + urlencode(
            {"scale": 1.5, "highlight": page.locator("#sources .card .passage").first.text_content()})).split(","))
    marked_top = image["y"] + top * image["height"]
    marked_bottom = image["y"] + bottom * image["height"]
    assert box["y"] <= marked_top and marked_bottom <= box["y"] + box["height"], (box, image, top, bottom)


def test_the_cited_page_zooms_sharp_scrolls_and_keeps_its_zoom_from_page_to_page(browser, site, output_dir):
    """A cited page was shown at one size, the viewer's width: an 8-point footnote or a 10-column table was
    unreadable on a laptop, with no way to enlarge it."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors, pages = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    # each page image asked for: its address and what the request carries (the passage, the scale)
    page.on("request", lambda request: pages.append((request.method, request.url, request.post_data_json))
            if ".png" in request.url else None)
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    open_first_source_page(page)  # beta-10k.pdf, page 3, US Letter: 612 points wide
    image, frame, level = page.locator("#page-image"), page.locator("#page-frame"), page.locator("#zoom-level")
    announcer = page.locator("#announcer")
    assert image.evaluate("img => img.naturalWidth") == 918  # 1.5 pixels per point, as before
    fitted = frame.evaluate("f => f.clientWidth")
    sync_api.expect(level).to_have_text(f"{round(fitted / 816 * 100)} %")  # 100 %: 816 pixels, the printed size
    sync_api.expect(page.get_by_role("button", name="Fit width", exact=True)).to_have_attribute("aria-pressed", "true")
    assert frame.evaluate("f => f.scrollWidth <= f.clientWidth")

    zoom_in = page.get_by_role("button", name="Zoom in", exact=True)
    while level.text_content() != "200 %":
        zoom_in.click()
    sync_api.expect(announcer).to_have_text("Zoom 200 %")  # said once, at the level reached
    # drawn again at 3 pixels per point (816 × 2 × 96/72 ÷ 612 = 2.67, in half steps up), not 918 stretched
    _wait_for_natural_width(image, 1836)
    assert image.evaluate("img => img.getBoundingClientRect().width") == 1632
    method, url, sent = pages[-1]
    assert sent["highlight"] and sent["scale"] == 3, pages[-1]  # the passage still marked
    # ... in the request's body, never in its address, which proxies log
    assert all(method == "POST" and "?" not in url and "dividend" not in url for method, url, _ in pages), pages
    sync_api.expect(announcer).to_have_text("Zoom 200 %")  # the page drawn again is not said again
    assert frame.evaluate("f => [f.scrollWidth > f.clientWidth, f.scrollHeight > f.clientHeight]") == [True, True]
    assert frame.evaluate("f => { f.scrollLeft = 300; return f.scrollLeft; }") == 300
    page.screenshot(path=str(output_dir / "zoomed-200.png"))

    frame.focus()  # the keyboard, in the viewer
    page.keyboard.press("-")
    sync_api.expect(level).to_have_text("175 %")
    sync_api.expect(announcer).to_have_text("Zoom 175 %")
    page.keyboard.press("+")
    sync_api.expect(level).to_have_text("200 %")
    page.keyboard.press("ArrowLeft")  # scrolls the page across, rather than turning it
    sync_api.expect(page.locator("#page-label")).to_have_text("beta-10k.pdf — page 3 of 3")
    zoom_in.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    sync_api.expect(level).to_have_text("300 %")  # the last step: 4 pixels per point, the server's limit
    sync_api.expect(zoom_in).to_be_disabled()
    sync_api.expect(frame).to_be_focused()  # not lost to the page's top with the button disabled
    _wait_for_natural_width(image, 2448)
    page.keyboard.press("0")
    sync_api.expect(level).to_have_text(f"{round(fitted / 816 * 100)} %")
    sync_api.expect(page.get_by_role("button", name="Fit width", exact=True)).to_have_attribute("aria-pressed", "true")
    assert frame.evaluate("f => f.scrollWidth <= f.clientWidth")
    page.keyboard.press("=")  # + without Shift: from the fitted width, the step above it
    above = next(step for step in (50, 67, 75, 90, 100, 110, 125, 150) if step > fitted / 816 * 100 + 0.1)
    sync_api.expect(level).to_have_text(f"{above} %")
    while level.text_content() != "125 %":
        page.keyboard.press("+")

    page.get_by_role("button", name="Previous page", exact=True).click()
    sync_api.expect(page.locator("#page-label")).to_have_text("beta-10k.pdf — page 2 of 3")
    sync_api.expect(announcer).to_have_text("beta-10k.pdf, page 2 of 3")
    sync_api.expect(level).to_have_text("125 %")  # the zoom kept
    assert pages[-1][1].endswith("pages/2.png") and pages[-1][2] == {"highlight": None, "scale": 2}, pages[-1]  # 1.67 pixels per point, in half steps up
    _wait_for_natural_width(image, 1224)
    assert image.evaluate("img => img.getBoundingClientRect().width") == 1020
    page.locator("#sources .card .open").first.focus()
    page.keyboard.press("+")  # not in the viewer: outside it, + is not the viewer's
    sync_api.expect(level).to_have_text("125 %")
    assert errors == [], errors  # among them, a style the Content-Security-Policy refused


def test_the_focus_after_stop_a_deletion_and_a_colleague_s_upload(browser, fact_project, tiny_gguf, tmp_path):
    """Stop, hidden once the answer stopped, deleting a document, and any build's redrawing of the document list
    each lost the keyboard focus to the page's top."""
    with site_with_gated_model(fact_project, tiny_gguf) as (site, gate):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(site)
        sync_api.expect(page.locator("#documents li")).to_have_count(2)
        page.fill("#question", "dividend")
        page.click("#ask")
        assert gate.started.wait(60)
        page.focus("#stop")
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#status")).to_have_text("Stopped.")
        sync_api.expect(page.locator("#question")).to_be_focused()
        gate.gate.set()

        page.get_by_role("button", name="Delete alpha-annual-report.pdf", exact=True).focus()
        page.keyboard.press("Enter")  # confirmed: the focus goes to the next document's Delete
        sync_api.expect(page.locator("#documents li")).to_have_count(1, timeout=60_000)
        sync_api.expect(page.get_by_role("button", name="Delete beta-10k.pdf", exact=True)).to_be_focused()

        box = page.get_by_role("checkbox", name="Ask only beta-10k.pdf", exact=True)
        box.focus()
        gamma = write_pdf(tmp_path / "gamma.pdf", ["Gamma Mills milled 3 tonnes."]).read_bytes()
        uploaded = httpx.post(f"{site}/api/documents", files={"files": ("gamma.pdf", gamma, "application/pdf")},
                              timeout=30)  # a colleague's: the list is drawn anew under the focus
        assert uploaded.status_code == 202, uploaded.text
        sync_api.expect(page.locator("#documents li")).to_have_count(2, timeout=300_000)
        sync_api.expect(box).to_be_focused()


def _contrast(css_color: str, background=(255, 255, 255)) -> float:
    def luminance(rgb):
        def channel(value):
            value /= 255
            return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
        r, g, b = (channel(v) for v in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    rgb = [int(v) for v in re.findall(r"\d+", css_color)[:3]]
    light, dark = sorted((luminance(rgb), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_on_a_touch_screen_and_at_400_percent_zoom(browser, site, output_dir):
    """On a phone Delete was unseen (shown on hover) yet took a tap on the row's end; buttons were under 24 pixels;
    the borders of inputs and buttons were 1.35:1 against white; the question, answer and cited page had no
    heading; at 320 x 256 the cited page and the document list shrank into scroll boxes a few lines high."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True)
    page = context.new_page()
    page.goto(site)
    sync_api.expect(page.locator("#documents li")).to_have_count(2)
    opacity = page.locator("#documents .delete").evaluate_all("bs => bs.map((b) => getComputedStyle(b).opacity)")
    assert opacity == ["1", "1"]  # shown, without a hover a touch screen cannot give
    edges = page.evaluate("""() => ["#question", "#doc-filter", "#select-none", "#add-pdfs", "#ask-each"]
        .map((selector) => [selector, getComputedStyle(document.querySelector(selector)).borderTopColor])""")
    assert all(_contrast(color) >= 3 for _, color in edges), [(s, c, round(_contrast(c), 2)) for s, c in edges]
    page.check("#retrieval-only")
    page.fill("#question", "dividend")
    page.click("#ask")
    sync_api.expect(page.locator("#sources .card")).not_to_have_count(0, timeout=60_000)
    small = page.evaluate("""() => [...document.querySelectorAll("button")].filter((b) => b.offsetParent)
        .map((b) => [b.getAttribute("aria-label") || b.textContent, b.getBoundingClientRect()])
        .filter(([, r]) => r.width < 24 || r.height < 24).map(([name, r]) => [name, r.width, r.height])""")
    assert small == []
    headings = page.evaluate("""() => [...document.querySelectorAll("h1, h2, h3, h4")].map((h) =>
        [Number(h.tagName[1]), h.closest("#viewer, #ask-form, #result, #each, #documents-panel")?.id ?? null])""")
    levels = [level for level, _ in headings]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), headings
    for part in ("ask-form", "result", "viewer", "each"):
        assert [2, part] in headings, headings
    page.screenshot(path=str(output_dir / "phone.png"), full_page=True)

    page.set_viewport_size({"width": 320, "height": 256})  # 1280 x 1024 at 400 %
    open_first_source_page(page)
    frame = page.locator("#page-frame").evaluate("f => [f.clientHeight, f.scrollHeight]")
    assert frame[1] <= frame[0] + 1, frame  # the whole page, no scroll box inside the page
    capped = page.locator("#documents").evaluate("l => getComputedStyle(l).maxHeight")
    assert capped == "none" or float(capped.removesuffix("px")) >= 200, capped
    page.screenshot(path=str(output_dir / "zoom-400.png"), full_page=True)
    context.close()
