"""The HTTP API in-process (TestClient) and on a loopback socket, with real models and a real index."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi")


from docqa.ingest import build_index  # noqa: E402
from docqa.qa import DocQA  # noqa: E402
from docqa.server import create_app  # noqa: E402
from docqa.settings import load_settings  # noqa: E402
from tests.support.pdfs import write_pdf  # noqa: E402
from tests.fixtures_project import FACTS  # noqa: E402
from tests.fixtures_server import GatedLLM, live_server, local_client, running_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

QUESTION = "How much is the minimum guarantee payable by adidas?"
GUARANTEE = FACTS[1][2]


def parse_events(text: str) -> list[tuple[str, dict]]:
    """Server-Sent Events as (event, data) pairs; comments and [DONE] are left out."""
    events = []
    for block in text.split("\n\n"):
        kind, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data and data != "[DONE]":
            events.append((kind, json.loads(data)))
    return events


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of an 8-bit RGB PNG whose rows all use filter 0 (what docqa writes), checking its chunks' CRCs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, size = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
            assert body[8:10] == b"\x08\x02"
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height = size
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 3)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, 3)


def marked(pixels: np.ndarray) -> np.ndarray:
    """Pixels tinted by the highlight: yellow, far more red than blue."""
    return (pixels[:, :, 0].astype(int) - pixels[:, :, 2].astype(int)) > 80


@pytest.fixture
def tiny_config(built_fact_index, tiny_gguf, tmp_path):
    llm = {"model_path": str(tiny_gguf), "max_new_tokens": 12, "context_length": 1024}
    return built_fact_index.write_config(tmp_path / "config.yml", llm=llm, serve={"watch": False})


@pytest.fixture
def client(tiny_config):
    """The app over the session's fact index with the random-weight model, loaded by create_app itself."""
    with local_client(create_app(load_settings(tiny_config))) as client:
        yield client


# ---------------------------------------------------------------- asking


def test_ask_streams_tokens_then_the_answer_json_prints(client):
    response = client.post("/api/ask", json={"question": QUESTION})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1
    assert kinds[0] == "started" and kinds.count("started") == 1  # the page stops saying "place 1 in line"
    # the passages before the first token (the page shows them while the model reads them), as the answer has them
    assert kinds[1] == "sources" and kinds.count("sources") == 1 and kinds[2] == "token"
    early = events[1][1]
    assert early["answer"] is None and early["sources"] == events[-1][1]["sources"]
    tokens = [data["text"] for kind, data in events if kind == "token"]
    answer = events[-1][1]
    assert tokens and "".join(tokens).strip() == answer["answer"]
    assert answer["question"] == QUESTION
    assert answer["sources"][0]["document"] == "alpha-annual-report.pdf" and answer["sources"][0]["page_number"] == 2
    assert answer["timings"]["backend"] == "llama-cpp" and 0 < answer["timings"]["tokens"] <= 12
    assert set(answer) >= {"answer", "sources", "timings", "notes", "answered"}


def test_ask_retrieval_only_returns_the_passages_at_once(client):
    events = parse_events(client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True}).text)
    assert [kind for kind, _ in events] == ["answer"]
    answer = events[0][1]
    assert answer["answer"] is None and answer["timings"]["backend"] is None
    assert GUARANTEE in answer["sources"][0]["text"]


def test_ask_limited_to_chosen_documents(client):
    one = parse_events(client.post("/api/ask", json={"question": "dividend", "doc": "alpha-annual-report.pdf",
                                                     "retrieval_only": True}).text)[0][1]
    assert {source["document"] for source in one["sources"]} == {"alpha-annual-report.pdf"}
    both = parse_events(client.post("/api/ask", json={"question": "dividend", "retrieval_only": True, "k": 6,
                                                      "doc": ["alpha-annual-report.pdf", "beta-10k.pdf"]}).text)[0][1]
    assert {source["document"] for source in both["sources"]} == {"alpha-annual-report.pdf", "beta-10k.pdf"}


def test_ask_about_an_unknown_document_is_a_json_error_before_streaming(client):
    response = client.post("/api/ask", json={"question": QUESTION, "doc": "nothing-like-this*.pdf"})
    assert response.status_code == 400
    assert "no indexed document matches" in response.json()["error"]


def test_retrieve_returns_passages_with_pages_and_scores(client):
    body = client.post("/api/retrieve", json={"question": "How many people did Alpha employ?", "k": 2}).json()
    first = body["passages"][0]
    assert first["document"] == "alpha-annual-report.pdf"
    assert first["page_index"] == 2 and first["page_number"] == 3
    assert "3,400 people" in first["text"] and first["score"] > 0
    assert len(body["passages"]) == 2


def test_ask_with_the_real_smollm2_model(built_fact_index, smollm2_gguf, tmp_path):
    llm = {"model_path": str(smollm2_gguf), "max_new_tokens": 32, "context_length": 2048}
    config = built_fact_index.write_config(tmp_path / "config.yml", llm=llm, prompt={"format": "gguf"},
                                           serve={"watch": False})
    with local_client(create_app(load_settings(config))) as client:
        events = parse_events(client.post("/api/ask", json={"question": QUESTION}).text)
    tokens = "".join(data["text"] for kind, data in events if kind == "token")
    answer = events[-1][1]
    assert events[-1][0] == "answer" and len([k for k, _ in events if k == "token"]) > 1
    assert tokens.strip() == answer["answer"] and answer["timings"]["backend"] == "llama-cpp"
    assert answer["sources"][0]["page_number"] == 2
    # SmolLM2 reads the figure from the passage (it is a 135M model: the words vary, the number does not).
    assert "seven hundred" in answer["answer"].lower() or "750" in answer["answer"], answer["answer"]


# ---------------------------------------------------------------- the queue


@pytest.fixture
def gated(tiny_config):
    """A live server whose (real, tiny) model waits at a gate before each answer."""
    settings = load_settings(tiny_config)
    qa = DocQA(settings)
    llm = GatedLLM(qa.llm)
    qa.llm = llm
    app = create_app(settings, qa)
    with live_server(app) as url:
        yield url, app, llm


def stream_events(url: str, body: dict, events: list, connected: threading.Event | None = None) -> None:
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{url}/api/ask", json=body) as response:
        if connected:
            connected.set()
        buffer = ""
        for text in response.iter_text():
            buffer += text
            *blocks, buffer = buffer.split("\n\n")
            for block in blocks:
                for event in parse_events(block + "\n\n"):
                    events.append((time.monotonic(), *event))


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def hold_the_model(url: str, llm: GatedLLM, events: list) -> threading.Thread:
    """Ask QUESTION in a thread and return once its generation has reached the gate (the model is busy)."""
    asking = threading.Thread(target=stream_events, args=(url, {"question": QUESTION}, events))
    asking.start()
    wait_until(llm.started.is_set)
    return asking


def test_second_question_waits_its_turn_and_is_told_its_place(gated):
    url, app, llm = gated
    first, second = [], []
    one = hold_the_model(url, llm, first)
    two = threading.Thread(target=stream_events, args=(url, {"question": "How many people did Alpha employ?"}, second))
    two.start()
    wait_until(lambda: any(kind == "queued" for _, kind, _ in second))
    assert [data for _, kind, data in second if kind == "queued"][0] == {"place": 1, "waiting": 1}
    assert httpx.get(f"{url}/api/health").json()["queue"] == 2
    llm.gate.set()
    one.join(120)
    two.join(120)
    first_done = next(at for at, kind, _ in first if kind == "answer")
    second_tokens = [at for at, kind, _ in second if kind == "token"]
    assert second_tokens and min(second_tokens) >= first_done, "the second answer started before the first ended"
    assert second[-1][1] == "answer" and second[-1][2]["sources"][0]["page_number"] == 3
    assert not any(kind == "queued" for _, kind, _ in first)
    wait_until(lambda: app.state.queue.finished["done"] == 2)  # counted just after the answer is sent


def test_retrieval_does_not_wait_for_the_model(gated):
    url, app, llm = gated
    events = []
    asking = hold_the_model(url, llm, events)
    response = httpx.post(f"{url}/api/retrieve", json={"question": "dividend"}, timeout=30)
    assert response.status_code == 200 and response.json()["passages"][0]["document"] == "beta-10k.pdf"
    assert not any(kind == "answer" for _, kind, _ in events), "retrieval had to wait for the answer"
    llm.gate.set()
    asking.join(120)


def test_closing_the_connection_stops_that_generation(gated):
    url, app, llm = gated
    queue = app.state.queue
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{url}/api/ask", json={"question": QUESTION}) as response:
            assert response.status_code == 200
            wait_until(llm.started.is_set)
            job = queue.running
        # The client has gone before the first token: the server notices...
    wait_until(job.cancelled.is_set, 30)
    llm.gate.set()
    # ...and the generation stops at the first token instead of running to max_new_tokens.
    wait_until(lambda: queue.finished["cancelled"] == 1)
    assert len(queue) == 0 and job.tokens == 0 and llm.generated_tokens == 0


def test_a_waiting_question_whose_client_left_leaves_the_line(gated):
    url, app, llm = gated
    first = []
    one = hold_the_model(url, llm, first)
    with httpx.Client(timeout=60) as http, http.stream("POST", f"{url}/api/ask", json={"question": "dividend"}) as response:
        for text in response.iter_text():
            if "event: queued" in text:
                break
    wait_until(lambda: app.state.queue.finished["cancelled"] == 1)
    assert len(app.state.queue) == 1
    llm.gate.set()
    one.join(120)
    wait_until(lambda: app.state.queue.finished["done"] == 1)  # counted just after the answer is sent
    assert app.state.queue.finished == {"done": 1, "failed": 0, "cancelled": 1}


def test_told_to_stop_the_server_ends_the_answers_in_progress_and_stops_without_waiting(tiny_config):
    """Ctrl-C while one question is answered and one waits: both streams end with an error that says why, and the
    server stops in seconds though the model is still busy (uvicorn waits for open streams, then cancels them
    with a traceback)."""
    import signal

    settings = load_settings(tiny_config)
    qa = DocQA(settings)
    llm = qa.llm = GatedLLM(qa.llm)
    app = create_app(settings, qa)
    first, second = [], []
    try:
        with running_server(app) as (url, server):
            one = hold_the_model(url, llm, first)
            two = threading.Thread(target=stream_events, args=(url, {"question": "dividend"}, second))
            two.start()
            wait_until(lambda: any(kind == "queued" for _, kind, _ in second))
            chat = []  # a chat client that does not stream, waiting third in line
            three = threading.Thread(target=lambda: chat.append(httpx.post(
                f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "staff?"}]}, timeout=60)))
            three.start()
            wait_until(lambda: len(app.state.queue) == 3)
            stopping = time.monotonic()
            server.handle_exit(signal.SIGINT, None)  # what uvicorn's signal handler calls on Ctrl-C
            for thread in (one, two, three):
                thread.join(30)
                assert not thread.is_alive()
            assert time.monotonic() - stopping < 5
            assert chat[0].status_code == 503 and chat[0].json()["error"]["message"] == "the server is shutting down"
            llm.gate.set()  # the generation, at the gate, goes on to its first token, where it stops
            wait_until(lambda: app.state.queue.running is None, 30)
            assert llm.generated_tokens == 0
        for events in (first, second):
            assert events[-1][1:] == ("error", {"error": "the server is shutting down"})
            assert not any(kind == "answer" for _, kind, _ in events)
        assert httpx_refused(url)
    finally:
        llm.gate.set()  # the generation thread, still at the gate, may end now


def httpx_refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/api/health", timeout=5)
    except httpx.TransportError:
        return True
    return False


# ---------------------------------------------------------------- documents and builds


def wait_for_build(client, build_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        build = client.get(f"/api/builds/{build_id}").json()
        if build["state"] in ("done", "failed"):
            return build
        assert time.monotonic() < deadline, f"build still {build['state']}"
        time.sleep(0.2)


@pytest.fixture
def own_index(fact_project, tiny_gguf):
    """A project of its own (tests change it), built, with the random-weight model."""
    llm = {"model_path": str(tiny_gguf), "max_new_tokens": 8, "context_length": 1024}
    settings = fact_project.configure(llm=llm, serve={"watch": False})
    build_index(settings)
    return fact_project, settings


def test_upload_builds_in_the_background_and_the_new_document_answers(own_index, make_pdf):
    project, settings = own_index
    gamma = make_pdf(["Gamma Mining extracted 812 tonnes of lithium carbonate at Salar Verde in 2023."], "gamma.pdf")
    truncated = project.root / "broken.pdf"
    truncated.write_bytes(gamma.read_bytes()[:300])
    with local_client(create_app(settings)) as client:
        with open(gamma, "rb") as one, open(truncated, "rb") as two:
            response = client.post("/api/documents", files=[("files", ("gamma-2023.pdf", one, "application/pdf")),
                                                            ("files", ("broken.pdf", two, "application/pdf"))])
        assert response.status_code == 202, response.text
        body = response.json()
        assert [file["name"] for file in body["files"]] == ["gamma-2023.pdf", "broken.pdf"]
        build = wait_for_build(client, body["build"]["id"])
        assert build["state"] == "done", build
        assert build["report"]["added"] == ["gamma-2023.pdf"]
        assert build["pages_total"] == build["pages_done"] == 1
        assert [s["name"] for s in build["skipped"]] == ["broken.pdf"] and "truncated" in build["skipped"][0]["reason"]
        assert (project.data / "gamma-2023.pdf").read_bytes() == gamma.read_bytes()
        names = [document["name"] for document in client.get("/api/documents").json()["documents"]]
        assert "gamma-2023.pdf" in names and "broken.pdf" not in names
        events = parse_events(client.post("/api/ask", json={"question": "How many tonnes of lithium did Gamma extract?"}).text)
        assert events[-1][0] == "answer"
        assert events[-1][1]["sources"][0]["document"] == "gamma-2023.pdf"
        assert client.get("/api/health").json()["index"]["documents"] == 3
        # The skipped file is in the data folder but not the index; it can be deleted from the page all the same,
        # and no other file that the index does not hold can be.
        (project.data / "notes.pdf").write_bytes(b"never built")
        assert client.delete("/api/documents/notes.pdf").status_code == 404
        deleted = client.delete("/api/documents/broken.pdf")
        assert deleted.status_code == 202 and not (project.data / "broken.pdf").exists()
        assert wait_for_build(client, deleted.json()["build"]["id"])["state"] == "done"
        assert (project.data / "notes.pdf").exists()


def test_an_answer_searched_while_the_index_is_updated_says_so(own_index):
    """A colleague's upload being indexed: the answer came from the index as it was, with nothing to say so."""
    project, settings = own_index
    app = create_app(settings)
    with local_client(app) as client:
        for body in ({"question": QUESTION}, {"question": QUESTION, "retrieval_only": True}):
            notes = parse_events(client.post("/api/ask", json=body).text)[-1][1]["notes"]
            assert not any("index was being updated" in note for note in notes)
        builder = app.state.builder
        builder.close()  # stopped: the next build waits, as one would behind a long build
        builder.request("startup", ["alpha-annual-report.pdf"])  # the check at start, which finds nothing new
        notes = parse_events(client.post("/api/ask", json={"question": QUESTION}).text)[-1][1]["notes"]
        assert not any("index was being updated" in note for note in notes)
        builder.request("upload", ["gamma-2023.pdf"])
        for body in ({"question": QUESTION}, {"question": QUESTION, "retrieval_only": True}):
            notes = parse_events(client.post("/api/ask", json=body).text)[-1][1]["notes"]
            assert any(note.startswith("the index was being updated (alpha-annual-report.pdf, gamma-2023.pdf) when "
                                       "this question was searched") for note in notes), notes


def test_uploads_named_with_double_quotes_and_empty_files(own_index, make_pdf):
    """A browser, curl, requests and httpx send a file name's double quotes as %22: they were kept so from all but
    browsers, 'omega %22q2%22.pdf'. An empty file was called 'not a PDF (no %PDF- header)'."""
    project, settings = own_index
    pdf = make_pdf(["Omega Foods sold 7 million jars."], "omega.pdf").read_bytes()
    with local_client(create_app(settings)) as client:
        sent = client.post("/api/documents", files={"files": ('omega %22q2%22.pdf', pdf, "application/pdf")},
                           headers={"sec-fetch-mode": "cors"})  # as a browser sends it
        assert sent.status_code == 202 and sent.json()["files"][0]["name"] == 'omega "q2".pdf'
        assert (project.data / 'omega "q2".pdf').read_bytes() == pdf
        scripted = client.post("/api/documents", files={"files": ('rate "b".pdf', pdf, "application/pdf")})  # httpx's
        assert scripted.status_code == 202 and scripted.json()["files"][0]["name"] == 'rate "b".pdf'
        empty = client.post("/api/documents", files={"files": ("empty.pdf", b"", "application/pdf")})
        assert empty.status_code == 415 and empty.json()["error"] == "empty.pdf is empty (0 bytes), not a PDF"


def test_delete_removes_the_file_and_drops_it_from_the_index(own_index):
    project, settings = own_index
    with local_client(create_app(settings)) as client:
        response = client.delete("/api/documents/beta-10k.pdf")
        assert response.status_code == 202
        build = wait_for_build(client, response.json()["build"]["id"])
        assert build["state"] == "done" and build["report"]["removed"] == ["beta-10k.pdf"]
        assert not (project.data / "beta-10k.pdf").exists()
        assert [d["name"] for d in client.get("/api/documents").json()["documents"]] == ["alpha-annual-report.pdf"]
        passages = client.post("/api/retrieve", json={"question": "dividend per share"}).json()["passages"]
        assert {p["document"] for p in passages} == {"alpha-annual-report.pdf"}
        assert client.delete("/api/documents/beta-10k.pdf").status_code == 404


def command_line_build(project, *argv, config=None):
    """``python db_build.py`` in a process of its own, as a colleague at a terminal runs it."""
    done = subprocess.run([sys.executable, str(ROOT / "db_build.py"), *project.args(*argv, config=config)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def listed(client) -> list[str]:
    return [d["name"] for d in client.get("/api/documents").json()["documents"]]


def test_a_build_from_the_command_line_while_serving_is_seen_at_the_next_request(own_index):
    """``python db_build.py`` run while the server ran: the server kept answering from the index as it opened it,
    and the watcher's own build found nothing left to do, so it never looked again."""
    project, settings = own_index
    with local_client(create_app(settings, retrieval_only=True)) as client:
        before = listed(client)
        write_pdf(project.data / "delta.pdf", ["Delta Shipping operated 64 container vessels in 2024."])
        command_line_build(project)  # a new commit in the same generation
        assert sorted(listed(client)) == sorted(before + ["delta.pdf"])
        found = client.post("/api/ask", json={"question": "How many container vessels did Delta Shipping operate?",
                                              "retrieval_only": True, "doc": "delta.pdf"})
        assert "64 container vessels" in parse_events(found.text)[-1][1]["sources"][0]["text"]
        (project.data / "delta.pdf").unlink()
        page = client.get("/api/documents/delta.pdf/pages/1.png")  # still indexed, no longer in the folder
        assert page.status_code == 404 and page.json() == {"error": "delta.pdf is no longer in the data folder"}
        command_line_build(project, "--rebuild")  # a new generation, the old one removed
        assert "delta.pdf" not in listed(client)
        assert client.get("/api/health").json()["index"]["documents"] == len(before)


def test_a_page_asked_for_as_its_document_is_deleted_is_not_found_not_damaged(own_index, monkeypatch):
    """A page shown while a colleague deleted its document: 422 "changed or damaged since it was indexed?"."""
    from docqa.errors import DocumentError
    from docqa.server import api

    project, settings = own_index

    def deleted_while_opening(path, *args, **kwargs):
        path.unlink()
        raise DocumentError(path, "cannot be opened to render (Failed to load document)")

    monkeypatch.setattr(api, "render_page", deleted_while_opening)
    with local_client(create_app(settings, retrieval_only=True)) as client:
        page = client.get("/api/documents/beta-10k.pdf/pages/1.png")
    assert page.status_code == 404 and page.json() == {"error": "beta-10k.pdf is no longer in the data folder"}


def test_an_index_built_with_other_settings_while_serving_is_said_in_every_answer(own_index):
    """A colleague's rebuild with other settings: the server went on answering from the deleted index it had open,
    its health 'ok' and its answers without a word; once the index was rebuilt right, it waited a minute more."""
    project, settings = own_index
    other = project.write_config(project.root / "other.yml", ingest={"chunk_size": 300, "chunk_overlap": 30})
    with local_client(create_app(settings, retrieval_only=True)) as client:
        command_line_build(project, "--rebuild", config=other)
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and "ingest.chunk_size 300 → 500" in health["problem"], health
        assert health["index"]["documents"] == 2  # the index as it was still answers
        answer = parse_events(client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True}).text)[-1][1]
        assert answer["sources"] and any("cannot be opened by this server" in note and "restart the server" in note
                                         for note in answer["notes"]), answer["notes"]
        command_line_build(project, "--rebuild")  # with the server's settings again: taken up at once
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["problem"] is None
        answer = parse_events(client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True}).text)[-1][1]
        assert not any("cannot be opened" in note for note in answer["notes"])


def test_an_upload_while_another_process_builds_waits_for_it(own_index, make_pdf):
    """The upload's build failed at once on the other process's build lock, leaving the file in the folder and
    out of the index (and then neither deletable nor uploadable again); the watcher asked again every second."""
    from docqa.store import _acquire_build_lock

    project, settings = own_index
    gamma = make_pdf(["Gamma Mining extracted 812 tonnes of lithium carbonate in 2023."], "gamma.pdf").read_bytes()
    lock = _acquire_build_lock(settings.path(settings.paths.vectorstore))  # as python db_build.py holds it
    try:
        with local_client(create_app(settings, retrieval_only=True)) as client:
            sent = client.post("/api/documents", files={"files": ("gamma-2023.pdf", gamma, "application/pdf")})
            assert sent.status_code == 202
            build_id = sent.json()["build"]["id"]
            wait_until(lambda: client.get(f"/api/builds/{build_id}").json()["waiting_for"] is not None, 60)
            waiting = client.get(f"/api/builds/{build_id}").json()
            assert waiting["state"] == "queued" and waiting["error"] is None
            assert waiting["waiting_for"].startswith("another process is building the index")
            for _ in range(30):  # over 3 s of tries: one build, queued throughout, never 'running' while it waits
                build = client.get(f"/api/builds/{build_id}").json()
                assert build["state"] == "queued" and build["waiting_for"] is not None, build
                time.sleep(0.1)
            assert len(client.get("/api/builds").json()["builds"]) == 1
            lock.close()  # the other build ends
            wait_until(lambda: client.get(f"/api/builds/{build_id}").json()["state"] == "done", 120)
            assert "gamma-2023.pdf" in listed(client) and client.get(f"/api/builds/{build_id}").json()["waiting_for"] is None
    finally:
        lock.close()


def test_the_watcher_builds_an_index_deleted_while_serving(own_index):
    """The index folder deleted, the data folder as it was: the watcher saw no change and never built again (and,
    once it did, not a second time); meanwhile nothing answered, though the old index was still open."""
    import shutil

    project, settings = own_index
    settings.serve.watch_interval = 0.2
    with local_client(create_app(settings, retrieval_only=True, watch=True)) as client:
        wait_until(lambda: [b["state"] for b in client.get("/api/builds").json()["builds"]] == ["done"], 60)
        for deletion in (1, 2):
            shutil.rmtree(settings.path(settings.paths.vectorstore))
            health = client.get("/api/health").json()
            assert health["index"]["documents"] == 2 or health["problem"] is None  # the old index, or already rebuilt
            if health["problem"] is not None:
                assert health["problem"].startswith("the index folder (paths.vectorstore) ")  # is gone, or rebuilt
                assert health["problem"].endswith("; these answers come from the index as it was before")
                assert len(listed(client)) == 2
            wait_until(lambda: len(client.get("/api/builds").json()["builds"]) == 1 + deletion
                       and client.get("/api/builds").json()["builds"][0]["state"] == "done", 300)
            assert client.get("/api/health").json()["problem"] is None and len(listed(client)) == 2


def test_an_index_deleted_by_hand_answers_from_the_old_one_until_its_rebuild_is_done(own_index):
    """Once the watcher's rebuild had committed its first document, the server answered from that document alone,
    and health said "ok"."""
    import shutil

    from docqa.server.engine import Engine

    project, settings = own_index
    engine = Engine(settings, retrieval_only=True)
    building = [False]
    engine.building = lambda: building[0]
    try:
        shutil.rmtree(settings.path(settings.paths.vectorstore))
        engine.reload(if_stale=True)
        moved = project.data / "beta-10k.pdf"
        moved.rename(project.root / "beta-10k.pdf")
        building[0] = True
        build_index(settings)  # what the rebuild has committed so far: the first document
        with engine.borrow() as qa:
            assert len(qa.documents()) == 2
        assert engine.problem.startswith("the index folder (paths.vectorstore) was deleted and is being built again")
        building[0] = False
        engine.reload()  # the build is done
        with engine.borrow() as qa:
            assert [record.name for record in qa.documents()] == ["alpha-annual-report.pdf"]
        assert engine.problem is None
    finally:
        engine.close()


def test_the_index_s_log_stays_bounded_while_the_server_reads_it_through_many_builds(own_index):
    """With the server's readers always open, SQLite's write-ahead log could never start again: every upload and
    deletion appended to it (17 MB after 15 of one report, the database itself 6 MB), for as long as the server
    ran."""
    from docqa.server.engine import Engine

    project, settings = own_index
    engine = Engine(settings, retrieval_only=True)
    extra = project.data / "gamma-2023.pdf"
    log = lambda: sum(path.stat().st_size for path in project.root.glob("vectorstore/**/docqa.sqlite-wal"))
    sizes = []
    try:
        for cycle in range(5):
            write_pdf(extra, [f"Gamma Tools made {cycle} hammers in Sheffield. " * 20 for _ in range(6)])
            build_index(settings)  # the server's own builds run in another process; the log is the same
            engine.reload()
            extra.unlink()
            build_index(settings)
            engine.reload()
            sizes.append(log())
            with engine.borrow() as qa:  # still answering, from the index as built
                assert [record.name for record in qa.documents()] == ["alpha-annual-report.pdf", "beta-10k.pdf"]
                assert qa.retrieve("hammers", k=1)[0].document in ("alpha-annual-report.pdf", "beta-10k.pdf")
    finally:
        engine.close()
    # bounded by about one build: before, it grew by a build at each cycle (173 KB to 898 KB over these five)
    assert sizes[0] > 0 and max(sizes) <= 1.5 * sizes[0], sizes


def test_a_broken_index_and_a_page_that_cannot_be_drawn_are_said_not_500(own_index, make_pdf):
    """CURRENT naming a generation moved away: health 'ok' and no word in the answers. A damaged page object, or
    a page box of absurd size, gave 500 and a traceback (PdfiumError, MemoryError)."""
    project, settings = own_index
    with local_client(create_app(settings, retrieval_only=True)) as client:
        pdf = make_pdf(["Kappa Rail ran 14 trains."], "kappa.pdf").read_bytes()
        (project.data / "alpha-annual-report.pdf").write_bytes(pdf.replace(b"/Type /Page ", b"/Type /Pagx ", 1))
        damaged = client.get("/api/documents/alpha-annual-report.pdf/pages/1.png")
        assert damaged.status_code == 422 and "alpha-annual-report.pdf cannot be opened to render" in damaged.json()["error"]
        assert str(project.root) not in damaged.text
        (project.data / "alpha-annual-report.pdf").write_bytes(pdf.replace(b"[0 0 612 792]", b"[0 0 612000 792000]"))
        huge = client.get("/api/documents/alpha-annual-report.pdf/pages/1.png?scale=4")
        assert huge.status_code == 200 and huge.content.startswith(b"\x89PNG")
        width, height = struct.unpack(">II", huge.content[16:24])
        assert width * height < 40_100_000  # MAX_PIXELS, give or take the rounding of each side
        folder = settings.path(settings.paths.vectorstore)
        generation = (folder / "CURRENT").read_text(encoding="utf-8").strip()
        (folder / generation).rename(project.root / "moved-away")
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and "holds no index" in health["problem"], health
        assert str(project.root) not in health["problem"]  # the project's paths as the project names them
        answer = parse_events(client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True}).text)[-1][1]
        assert answer["sources"] and any("holds no index" in note for note in answer["notes"])


def test_a_server_without_an_index_says_why_one_built_with_other_settings_cannot_answer(fact_project, tiny_gguf):
    """It said that answers came from 'the index as it was before', where there was none, and asking said 'no
    index yet: upload PDF files'."""
    settings = fact_project.configure(serve={"watch": False})
    other = fact_project.write_config(fact_project.root / "other.yml", ingest={"chunk_size": 300, "chunk_overlap": 30})
    with local_client(create_app(settings, retrieval_only=True)) as client:
        assert client.get("/api/health").json()["index"] is None
        command_line_build(fact_project, config=other)
        problem = client.get("/api/health").json()["problem"]
        assert problem.startswith("the index cannot be opened by this server (settings changed") and "as it was" not in problem
        asked = client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True})
        assert asked.status_code == 503 and asked.json()["error"] == problem


def test_the_watcher_indexes_new_changed_and_removed_pdfs(own_index):
    project, settings = own_index
    settings.serve.watch_interval = 0.2
    with local_client(create_app(settings, watch=True)) as client:
        # the first look, at start, finds every file as indexed; what the answers say meanwhile is below
        wait_until(lambda: [b["trigger"] for b in client.get("/api/builds").json()["builds"]] == ["startup"], 60)
        write_pdf(project.data / "delta.pdf", ["Delta Shipping operated 64 container vessels in 2024."])
        wait_until(lambda: "delta.pdf" in [d["name"] for d in client.get("/api/documents").json()["documents"]], 300)

        def watched():  # the build commits the document a moment before it calls itself done
            return [b for b in client.get("/api/builds").json()["builds"] if "delta.pdf" in b["files"]]

        wait_until(lambda: watched() and watched()[0]["state"] != "running", 60)
        assert watched()[0]["trigger"] == "watch" and watched()[0]["state"] == "done"
        passages = client.post("/api/retrieve", json={"question": "How many container vessels?"}).json()["passages"]
        assert passages[0]["document"] == "delta.pdf"
        (project.data / "delta.pdf").unlink()
        wait_until(lambda: "delta.pdf" not in [d["name"] for d in client.get("/api/documents").json()["documents"]], 300)


def test_a_server_started_before_any_index_serves_the_first_upload(project, tiny_gguf, make_pdf):
    settings = project.configure(llm={"model_path": str(tiny_gguf), "max_new_tokens": 4}, serve={"watch": False})
    pdf = make_pdf(["Epsilon Foods opened 17 bakeries in 2022."], "epsilon.pdf")
    app = create_app(settings)
    with local_client(app) as client:
        health = client.get("/api/health").json()
        assert health["index"] is None and health["status"] == "no index", health
        assert client.get("/api/documents").json() == {"documents": []}
        refused = client.post("/api/retrieve", json={"question": "bakeries"})
        assert refused.status_code == 503 and "no index yet" in refused.json()["error"]
        # OpenAI's clients retried a chat twice, though nothing was being built that a retry could find
        chat = client.post("/v1/chat/completions", json={"model": "docqa", "messages": [
            {"role": "user", "content": "How many bakeries?"}]})
        assert chat.status_code == 503 and "no index yet" in chat.json()["error"]["message"]
        assert chat.headers["x-should-retry"] == "false"
        # A stream began (200) only to carry the error: a client showed an empty answer, or an error event
        streamed = client.post("/v1/chat/completions", json={"stream": True, "messages": [
            {"role": "user", "content": "How many bakeries?"}]})
        asked = client.post("/api/ask", json={"question": "How many bakeries?"})
        assert streamed.status_code == asked.status_code == 503
        assert "no index yet" in streamed.json()["error"]["message"] and "no index yet" in asked.json()["error"]
        assert app.state.queue.finished == {"done": 0, "failed": 0, "cancelled": 0}  # none joined the line
        with open(pdf, "rb") as handle:
            build_id = client.post("/api/documents", files={"files": ("epsilon.pdf", handle)}).json()["build"]["id"]
        assert wait_for_build(client, build_id)["state"] == "done"
        assert client.post("/api/retrieve", json={"question": "bakeries"}).json()["passages"][0]["document"] == "epsilon.pdf"
        assert client.get("/api/health").json()["status"] == "ok"


def test_a_question_while_the_first_index_is_built_says_so(project):
    """A colleague asking while the first build read the files was told to upload PDF files, which were there."""
    from docqa.errors import IndexNotFoundError
    from docqa.server.engine import Engine

    engine = Engine(project.configure(serve={"watch": False}), retrieval_only=True)
    engine.building = lambda: True
    with pytest.raises(IndexNotFoundError, match="^the first index is being built: ask again when the build is done$"):
        with engine.borrow():
            pass
    engine.building = lambda: False
    with pytest.raises(IndexNotFoundError, match="^no index yet: upload PDF files"):
        with engine.borrow():
            pass


def test_documents_list_pages_chunks_and_what_was_read(client):
    documents = client.get("/api/documents").json()["documents"]
    assert [d["name"] for d in documents] == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    beta = documents[1]
    assert beta["pages"] == 3 and beta["chunks"] >= 3 and beta["indexed_at"]
    assert beta["form"] == "10-K"


# ---------------------------------------------------------------- pages


def test_page_image_highlights_the_passage(client):
    url = "/api/documents/alpha-annual-report.pdf/pages/2.png"
    plain = client.get(url)
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/png"
    lit = client.get(url, params={"highlight": GUARANTEE})
    plain_pixels, lit_pixels = decode_png(plain.content), decode_png(lit.content)
    assert plain_pixels.shape == lit_pixels.shape == (1188, 918, 3)  # Letter at 1.5 pixels per point
    assert not marked(plain_pixels).any()
    rows, columns = np.nonzero(marked(lit_pixels))
    assert len(rows) > 2000, "the passage is not highlighted"
    # write_pdf draws the sentence as the page's first line, 54 points from the top and left edges.
    assert 54 * 1.5 - 10 < rows.min() and rows.max() < 54 * 1.5 + 30
    assert columns.min() >= 54 * 1.5 - 5


def test_the_highlight_lies_on_the_passage_of_a_page_with_a_crop_box(own_index):
    """The Manchester United report's pages show a crop box 9 points in from the page's edges: the yellow band sat
    13 pixels above the sentence and started two characters to its right."""
    project, settings = own_index
    report = project.data / "alpha-annual-report.pdf"
    report.write_bytes(report.read_bytes().replace(b"/MediaBox [0 0 612 792]",
                                                   b"/MediaBox [0 0 612 792] /CropBox [9 9 603 783]"))
    with local_client(create_app(settings, retrieval_only=True)) as client:
        lit = client.get("/api/documents/alpha-annual-report.pdf/pages/2.png", params={"highlight": GUARANTEE})
    pixels = decode_png(lit.content)
    assert pixels.shape == (1161, 891, 3)  # the crop box, 594 × 774 points, at 1.5 pixels per point
    rows, columns = np.nonzero(marked(pixels))
    assert len(rows) > 2000, "the passage is not highlighted"
    # the first line, 54 points from the page's top and left edges, is 45 from the crop box's
    assert 45 * 1.5 - 4 <= rows.min() and rows.max() < 45 * 1.5 + 30
    assert 45 * 1.5 - 4 <= columns.min() < 45 * 1.5


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_the_highlight_follows_a_turned_page(tmp_path, rotation):
    """A page with /Rotate: the image was turned, the yellow band was not, and covered none of the sentence."""
    import pypdfium2 as pdfium

    from docqa.server.pages import render_page

    sentence = "The board declared a quarterly dividend of 42 cents per share."
    flat = write_pdf(tmp_path / "flat.pdf", [sentence])
    document = pdfium.PdfDocument(flat)
    document[0].set_rotation(rotation)
    document.save(tmp_path / "turned.pdf")
    document.close()
    plain_image = render_page(tmp_path / "turned.pdf", 1)
    lit_image = render_page(tmp_path / "turned.pdf", 1, highlight=sentence)
    plain, lit = decode_png(plain_image.png), decode_png(lit_image.png)
    text_rows, text_columns = np.nonzero(plain.max(axis=2) < 100)  # the sentence, wherever the turn put it
    band_rows, band_columns = np.nonzero(marked(lit))
    assert len(text_rows) > 500 and len(band_rows) > 2000, "the passage is not highlighted"
    # the band around the sentence: over it, and at most a few pixels (a point and rounding) beyond it
    for text, band in ((text_rows, band_rows), (text_columns, band_columns)):
        assert band.min() <= text.min() and text.max() <= band.max(), (rotation, text.min(), text.max(), band.min(), band.max())
        assert text.min() - band.min() <= 6 and band.max() - text.max() <= 6
    # where the viewer is told the passage is (it brings it into view): the band's place, as fractions of the image
    height, width = lit.shape[:2]
    assert plain_image.marked is None
    left, top, right, bottom = lit_image.marked
    assert abs(left * width - band_columns.min()) <= 4 and abs(right * width - band_columns.max()) <= 4, rotation
    assert abs(top * height - band_rows.min()) <= 4 and abs(bottom * height - band_rows.max()) <= 4, rotation



def test_page_images_rendered_at_once_in_several_threads_are_each_right(tmp_path):
    """The server renders pages in a pool of threads, and PDFium is not thread-safe: two renders at once broke every
    later render of the process ("Failed to load page", then "Data format error"), drew wrong images or crashed it.
    Run in a process of its own, so that a crash fails this test and not the whole run."""
    # full pages and many rounds: with small pages, the renders overlapped too briefly to fail every time
    filler = " ".join(f"Segment {m} revenue was {m * 37} million." for m in range(60))
    pages = [f"Page {n} of the report. The board declared a dividend of {n} cents per share. {filler}"
             for n in range(1, 9)]
    pdf = write_pdf(tmp_path / "report.pdf", pages)
    script = textwrap.dedent("""
        import hashlib, json, sys, threading
        from docqa.documents import read_pages
        from docqa.server.pages import render_page

        pdf, pages = sys.argv[1], json.loads(sys.argv[2])
        image = lambda n: hashlib.sha256(render_page(pdf, n, highlight=pages[n - 1]).png).hexdigest()
        expected = {n: image(n) for n in range(1, len(pages) + 1)}  # one at a time
        texts = [page.text for page in read_pages(pdf)]
        failures = []

        def render(n):
            for _ in range(12):
                try:
                    if image(n) != expected[n]:
                        failures.append(f"page {n}: another image")
                except Exception as error:  # every failure is collected and shown
                    failures.append(f"page {n}: {error!r}")

        def extract():  # text extraction (a build in this process) uses PDFium too
            for _ in range(12):
                try:
                    if [page.text for page in read_pages(pdf)] != texts:
                        failures.append("another text")
                except Exception as error:
                    failures.append(f"text: {error!r}")

        threads = [threading.Thread(target=render, args=(n,)) for n in expected]
        threads += [threading.Thread(target=extract) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps(failures + ([] if image(1) == expected[1] else ["page 1 afterwards: another image"])))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(pdf), json.dumps(pages)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


def test_page_image_scale_is_checked_as_a_request_is(client):
    """The page viewer zooms with ?scale=: a value out of 0.25..4 was a 400 from deep in the renderer, "nan" too,
    where any other malformed request is a 422 naming its parameter."""
    url = "/api/documents/beta-10k.pdf/pages/3.png"
    sharp = client.get(url, params={"scale": 3, "highlight": "The board declared a quarterly dividend"})
    assert sharp.status_code == 200 and struct.unpack(">II", sharp.content[16:24]) == (1836, 2376)  # Letter × 3
    # the passage's place, for the viewer to scroll to: a line near the page's top, across part of its width
    left, top, right, bottom = map(float, sharp.headers["x-docqa-marked"].split(","))
    assert 0 < left < right < 1 and 0 < top < bottom < 0.3
    assert "x-docqa-marked" not in client.get(url, params={"scale": 3}).headers  # nothing marked
    for bad, says in [("9", "less than or equal to 4"), ("0.1", "greater than or equal to 0.25"),
                      ("nan", "finite number"), ("inf", "finite number"), ("big", "valid number")]:
        refused = client.get(url, params={"scale": bad})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/json", (bad, refused.text)
        error = refused.json()["error"]
        assert error.startswith("query.scale: Input should be") and says in error and "\n" not in error, error


def test_the_passage_to_mark_may_travel_in_the_body_and_no_answer_or_page_is_kept_in_a_cache(client):
    """The page put the passage into the image's address, which every proxy's access log keeps; and page images were
    cacheable for 5 minutes, so the browser's disk cache held pages of confidential reports under that address."""
    url = "/api/documents/beta-10k.pdf/pages/3.png"
    passage = "The board declared a quarterly dividend"
    by_address = client.get(url, params={"scale": 2, "highlight": passage})
    by_body = client.post(url, json={"scale": 2, "highlight": passage})
    assert by_body.status_code == 200 and by_body.content == by_address.content
    assert by_body.headers["x-docqa-marked"] == by_address.headers["x-docqa-marked"]
    assert client.post(url, json={}).content == client.get(url).content  # nothing marked, at the default scale
    for body, says in [({"scale": 9}, "scale: Input should be less than or equal to 4"),
                       ({"highlight": passage, "page": 2}, "page: Extra inputs are not permitted")]:
        refused = client.post(url, json=body)
        assert refused.status_code == 422 and refused.json()["error"].startswith(says), refused.text
    answers = client.post("/api/ask", json={"question": QUESTION, "retrieval_only": True})
    for response in (by_body, by_address, answers, client.get("/api/documents"),
                     client.post("/api/retrieve", json={"question": QUESTION})):
        assert response.headers["cache-control"] == "no-store", response.url
    assert client.get("/").headers["cache-control"] == "no-cache"  # the page itself holds no document


def test_page_image_of_another_page_and_errors(client):
    assert client.get("/api/documents/beta-10k.pdf/pages/3.png", params={"scale": 0.5}).status_code == 200
    missing = client.get("/api/documents/beta-10k.pdf/pages/9.png")
    assert missing.status_code == 400 and "has 3 pages" in missing.json()["error"]


def test_health_reports_index_model_backend_and_queue(client):
    health = client.get("/api/health").json()
    assert health["index"]["documents"] == 2 and health["index"]["chunks"] >= 6
    assert health["model"] == "tiny-llama.Q8_0.gguf" and health["backend"] == "llama-cpp"
    assert health["queue"] == 0 and health["building"] is False


def test_health_names_the_model_a_server_answers_with_where_the_settings_name_none(built_fact_index, tmp_path):
    """llm.model empty means an OpenAI-compatible server's first listed model: answers named it, health said null."""
    from tests.test_llm import ScriptedLLM

    class ServerModel(ScriptedLLM):
        name = "openai"

        @property
        def model_name(self) -> str:
            return "qwen2.5-7b-instruct"  # what the server lists: known once it is asked

    settings = load_settings(built_fact_index.write_config(
        tmp_path / "config.yml", llm={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}))
    assert settings.llm.model is None
    with DocQA(settings, llm=ServerModel([b"42"], context_length=settings.llm.context_length)) as qa:
        with local_client(create_app(settings, qa)) as client:
            health = client.get("/api/health").json()
            answer = parse_events(client.post("/api/ask", json={"question": QUESTION}).text)[-1][1]
    assert health["model"] == answer["model"] == "qwen2.5-7b-instruct" and health["backend"] == "openai"


def test_openapi_and_docs_are_served_without_a_cdn(client):
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.0")  # what the bundled Swagger UI reads
    assert {"/api/ask", "/api/retrieve", "/api/documents", "/v1/chat/completions"} <= set(schema["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "http" not in docs.text.replace("http-equiv", "")
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


# ---------------------------------------------------------------- OpenAI-compatible


def test_openai_client_without_streaming(tiny_config):
    openai = pytest.importorskip("openai")
    with live_server(create_app(load_settings(tiny_config))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        assert [model.id for model in client.models.list()] == ["docqa"]
        completion = client.chat.completions.create(
            model="docqa", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
        short = client.chat.completions.create(model="docqa", max_tokens=3, messages=[{"role": "user", "content": QUESTION}],
                                               extra_body={"max_completion_tokens": None})  # null beside it: max_tokens
        with pytest.raises(openai.BadRequestError, match="max_tokens must be a whole number of 1 or more, not 0"):
            client.chat.completions.create(model="docqa", max_tokens=0, messages=[{"role": "user", "content": QUESTION}])
    content = completion.choices[0].message.content
    assert "\n\nSources:\n[1] alpha-annual-report.pdf, page 2" in content
    sources = completion.model_extra["sources"]
    assert sources[0]["document"] == "alpha-annual-report.pdf" and sources[0]["page_number"] == 2
    # The random-weight model runs to its 12-token cap unless it happens to end itself.
    cut = completion.usage.completion_tokens == 12
    assert completion.choices[0].finish_reason == ("length" if cut else "stop") and completion.usage.completion_tokens > 0
    # the notes /api/ask gives (it was the only one to): here, whether the answer was cut at the cap
    assert any("max_new_tokens" in note for note in completion.model_extra["notes"]) == cut
    usage = completion.usage  # the prompt's tokens, docqa's passages included, counted by the model
    assert usage.prompt_tokens > 50 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the request's max_tokens holds below docqa's own limit (it ran to llm.max_new_tokens)
    assert short.usage.completion_tokens <= 3 and (short.choices[0].finish_reason == "length") == (
        short.usage.completion_tokens == 3)
    assert not cut or short.usage.completion_tokens == 3


def test_openai_client_streaming(tiny_config):
    openai = pytest.importorskip("openai")
    with live_server(create_app(load_settings(tiny_config))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        # a client set up for another model name: the answer says which model gave it (it echoed the name)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                     messages=[{"role": "user", "content": QUESTION}]))
    assert {chunk.model for chunk in chunks} == {"docqa"}
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks]
    text = "".join(pieces)
    assert len([piece for piece in pieces if piece]) > 2
    answer, sources = text.split("\n\nSources:\n")
    assert answer.strip() and sources.startswith("[1] alpha-annual-report.pdf, page 2")
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].model_extra["sources"][0]["page_number"] == 2


def test_openai_clients_get_input_errors_as_400_with_the_reason_and_no_retry(tiny_config):
    """Input errors came back as 502 {"error": "..."}: OpenAI's clients retried each twice and showed only
    "Error code: 502"."""
    openai = pytest.importorskip("openai")
    app = create_app(load_settings(tiny_config))
    with live_server(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

        def refused(**request) -> str:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model="docqa", **{"messages": [{"role": "user", "content": QUESTION}],
                                                                 **request})
            assert caught.value.status_code == 400 and caught.value.type == "invalid_request_error"
            return caught.value.message

        assert "at most 4000 are taken" in refused(messages=[{"role": "user", "content": "revenue " * 1000}])
        surrogate = httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"content-type": "application/json"},
                               content=rb'{"messages": [{"role": "user", "content": "revenue \ud800"}]}')
        assert surrogate.status_code == 400 and "lone surrogate" in surrogate.json()["error"]["message"]
        assert "doc must be a file-name pattern" in refused(extra_body={"doc": []})
        assert "docqa gives one answer per request" in refused(n=2)
        assert "calls no tools" in refused(tools=[{"type": "function", "function": {"name": "add", "parameters": {}}}])
        assert "answers in text" in refused(response_format={"type": "json_object"})
        assert "messages" in refused(messages=[])  # a malformed request: 400, as OpenAI gives, not 422
        assert "does not give token probabilities" in refused(logprobs=True)  # accepted, and none given
        # a text part whose text is null was the question "None"
        assert "no user message with text" in refused(messages=[{"role": "user", "content": [{"type": "text", "text": None}]}])
        as_text = httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": []}', timeout=30,
                             headers={"content-type": "text/plain"})
        assert as_text.json()["error"]["message"] == ("the body must be a JSON object, sent with Content-Type: "
                                                      "application/json")
        broken = httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": [', timeout=30,
                            headers={"content-type": "application/json"})
        assert broken.json()["error"]["message"].startswith("the body is not valid JSON (")  # was "13: JSON decode error"
        # Found too long only once its prompt is built, in the line for the model: still the question's fault.
        assert "the question is too long" in refused(messages=[{"role": "user", "content": "x " * 1990}])
        wait_until(lambda: app.state.queue.finished["failed"] == 1)  # counted just after the error is sent
        assert app.state.queue.finished == {"done": 0, "failed": 1, "cancelled": 0}  # asked once, not three times

        assert client.models.retrieve("docqa").id == "docqa"
        with pytest.raises(openai.NotFoundError, match="no model 'gpt-4o' here; this server offers one, 'docqa' "
                                                       r"\(GET /v1/models\), and answers every chat request with it"):
            client.models.retrieve("gpt-4o")
        too_big = httpx.post(f"{url}/v1/chat/completions", content=b"{" + b" " * (5 << 20) + b"}",
                             headers={"content-type": "application/json"}, timeout=30)
        assert too_big.status_code == 413 and "larger than 4 MB" in too_big.json()["error"]["message"]
        chunked = httpx.post(f"{url}/api/retrieve", content=iter([b" " * (1 << 20)] * 5),
                             headers={"content-type": "application/json"}, timeout=30)
        assert chunked.status_code == 413 and chunked.json() == {"error": "the request body is larger than 4 MB"}


def test_chat_fields_docqa_would_misread_are_refused_with_the_field(client):
    """Malformed fields were taken and ignored (temperature "hot", top_p 7; stream "yes" streamed; include_usage
    "false" sent the usage), an image part was dropped and the question answered without it, and a conversation
    ending with the assistant's message had the user message before it answered again."""
    def refused(**fields) -> str:
        response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}],
                                                              **fields})
        assert response.status_code == 400, (fields, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
        return response.json()["error"]["message"]

    for field, value in [("temperature", "hot"), ("temperature", -3), ("top_p", 7), ("stop", 123), ("stop", [""]),
                         ("stop", ["a", "b", "c", "d", "e"]), ("presence_penalty", "x"), ("frequency_penalty", 3),
                         ("seed", "abc"), ("stream", "yes"), ("response_format", "json_object"), ("n", "2")]:
        assert refused(**{field: value}).startswith(field), (field, value)
    assert refused(stream_options={"include_usage": "false"}).startswith("stream_options.include_usage")
    image = [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    assert refused(messages=[{"role": "user", "content": image}]) == (
        "a user message holds a part of type 'image_url': docqa reads text only")
    assert refused(modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}) == "audio: docqa answers in text"
    answered = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "£750 million."}]
    assert refused(messages=answered).startswith("the last message is the assistant's: docqa answers the last message")
    assert refused(messages=[{"role": "wizard", "content": QUESTION}]).startswith("role 'wizard' is not one of system")
    # What OpenAI takes, docqa takes: a conversation, sampling settings in range, fields it has no use for
    accepted = client.post("/v1/chat/completions", json={
        "messages": [{"role": "system", "content": "Be brief."}, *answered, {"role": "user", "content": QUESTION}],
        "temperature": 0.2, "top_p": 1, "seed": 7, "presence_penalty": 0, "stop": ["\n\nQuestion:"], "stream": None,
        "stream_options": None, "response_format": {"type": "text"}, "user": "analyst-7", "max_tokens": 4})
    assert accepted.status_code == 200 and accepted.json()["usage"]["completion_tokens"] <= 4


def test_a_chat_client_s_stop_ends_the_answer(built_fact_index, tmp_path):
    from tests.test_llm import ScriptedLLM

    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False}))
    backend = ScriptedLLM([b"Revenue ", b"was ", b"$5m", b"."], context_length=settings.llm.context_length)
    with DocQA(settings, llm=backend) as qa, local_client(create_app(settings, qa)) as client:
        for stop in ("$", ["m.", "$"]):
            completion = client.post("/v1/chat/completions", json={"stop": stop, "messages": [
                {"role": "user", "content": QUESTION}]}).json()
            assert completion["choices"][0]["message"]["content"].startswith("Revenue was\n\nSources:\n[1] ")


def test_a_full_line_says_when_to_try_again(built_fact_index, tiny_gguf, tmp_path):
    """A full line was a 503 without Retry-After: OpenAI's clients tried again within a second, twice, and failed."""
    openai = pytest.importorskip("openai")
    config = built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False, "max_waiting": 1},
                                           llm={"model_path": str(tiny_gguf), "max_new_tokens": 2, "context_length": 1024})
    settings = load_settings(config)
    qa = DocQA(settings)
    llm = qa.llm = GatedLLM(qa.llm)
    app = create_app(settings, qa)
    with live_server(app) as url:
        first, second = [], []
        one = hold_the_model(url, llm, first)
        two = threading.Thread(target=stream_events, args=(url, {"question": "dividend"}, second))
        two.start()
        wait_until(lambda: len(app.state.queue) == 2)
        full = httpx.post(f"{url}/api/ask", json={"question": "staff?"}, timeout=30)
        assert full.status_code == 429 and full.headers["retry-after"] == "10"  # no answer timed yet
        assert full.json()["error"] == "the line for the model is full (1 waiting, serve.max_waiting); try again in 10 s"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="docqa", messages=[{"role": "user", "content": "staff?"}])
        assert caught.value.response.headers["retry-after"] == "10"
        llm.gate.set()
        one.join(120)
        two.join(120)
        wait_until(lambda: app.state.queue.finished["done"] == 2)
    assert [kind for _, kind, _ in second][-1] == "answer"


def test_the_wait_a_full_line_gives_is_the_time_an_answer_takes():
    from docqa.server.queue import GenerationQueue

    queue = GenerationQueue(max_waiting=1)
    assert queue.retry_after() == 10  # before any answer was timed
    queue._timed(2.2)
    assert queue.retry_after() == 3  # whole seconds, rounded up
    queue._timed(0.1)
    assert queue.retry_after() == 2  # a running mean: 0.7 × 2.2 + 0.3 × 0.1 = 1.57
    queue._timed(900)
    assert queue.retry_after() == 60  # no client waits longer between tries


def test_a_client_that_gives_up_on_an_answer_takes_it_out_of_the_line(gated):
    """A non-streaming client that timed out left its question to be answered in full for nobody, and the openai
    client's retries queued it again each time."""
    url, app, llm = gated
    queue = app.state.queue
    first = []
    one = hold_the_model(url, llm, first)  # the model is busy: the chat question waits in line
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "dividend"}]},
                   timeout=1.5)
    wait_until(lambda: queue.finished["cancelled"] == 1)
    assert len(queue) == 1  # only the first question is left
    llm.gate.set()
    one.join(120)
    wait_until(lambda: queue.finished["done"] == 1)
    llm.gate.clear()
    llm.started.clear()
    answering = threading.Thread(target=lambda: pytest.raises(httpx.ReadTimeout, httpx.post, f"{url}/v1/chat/completions",
                                                              json={"messages": [{"role": "user", "content": "dividend"}]},
                                                              timeout=1.5))
    answering.start()
    wait_until(llm.started.is_set)  # now its answer is being generated when the client gives up
    answering.join(30)
    wait_until(lambda: queue.running is not None and queue.running.cancelled.is_set(), 30)
    llm.gate.set()
    wait_until(lambda: queue.finished["cancelled"] == 2, 30)
    assert queue.finished["done"] == 1 and llm.generated_tokens == 0  # stopped before its first token


def test_an_answer_cut_at_the_token_limit_says_so(built_fact_index, tiny_gguf, tmp_path):
    """finish_reason was always "stop", so a client could not tell a cut answer from a whole one."""
    config = built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False}, llm={
        "model_path": str(tiny_gguf), "max_new_tokens": 3, "context_length": 1024})
    with local_client(create_app(load_settings(config))) as client:
        completion = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
        choice = completion.json()["choices"][0]
        assert completion.json()["usage"]["completion_tokens"] == 3 and choice["finish_reason"] == "length"
        stream = client.post("/v1/chat/completions", json={"stream": True, "stream_options": {"include_usage": True},
                                                           "messages": [{"role": "user", "content": QUESTION}]})
        chunks = [json.loads(line[6:]) for line in stream.text.splitlines()
                  if line.startswith("data: {")]
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3  # as OpenAI sends it
        plain = client.post("/v1/chat/completions", json={"stream": True, "messages": [{"role": "user", "content": QUESTION}]})
        assert "usage" not in plain.text  # only when asked for
        asked = client.post("/api/ask", json={"question": QUESTION}).text
        assert '"cut_off": true' in asked and "may be cut short; raise llm.max_new_tokens" in asked


def test_a_server_without_a_model_offers_none_to_chat_clients(built_fact_index, tmp_path):
    config = built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False})
    with local_client(create_app(load_settings(config), retrieval_only=True)) as client:
        assert client.get("/v1/models").json() == {"object": "list", "data": []}
        docqa = client.get("/v1/models/docqa")
        assert docqa.status_code == 404 and docqa.json()["error"]["message"] == (
            "no model 'docqa' here: this server runs without a language model (retrieval only)")
        refused = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
        assert refused.status_code == 501 and refused.json()["error"]["type"] == "not_implemented_error"
        assert "use POST /api/retrieve" in refused.json()["error"]["message"]


def test_an_upload_of_a_copy_is_shown_left_out_and_can_be_deleted(own_index):
    """A copy of an indexed file was indexed once, said nothing on the page, and could be neither listed nor
    deleted: it stayed in the data folder, and uploading it again gave 409."""
    project, settings = own_index
    with local_client(create_app(settings)) as client:
        copy = (project.data / "beta-10k.pdf").read_bytes()
        response = client.post("/api/documents", files=[("files", ("copy.pdf", copy, "application/pdf"))])
        build = wait_for_build(client, response.json()["build"]["id"])
        assert build["state"] == "done" and build["report"]["duplicates"] == {"copy.pdf": "beta-10k.pdf"}
        assert build["skipped"] == [{"name": "copy.pdf", "reason": "the same content as beta-10k.pdf, which is indexed"}]
        deleted = client.delete("/api/documents/copy.pdf")
        assert deleted.status_code == 202 and not (project.data / "copy.pdf").exists()
        assert wait_for_build(client, deleted.json()["build"]["id"])["state"] == "done"
        assert (project.data / "beta-10k.pdf").exists()
        assert sorted(d["name"] for d in client.get("/api/documents").json()["documents"]) == [
            "alpha-annual-report.pdf", "beta-10k.pdf"]


def test_the_body_limit_spares_only_the_upload_route_and_bodiless_requests(tiny_config):
    """A JSON route passed the limit by claiming a multipart body (300 MB were read whole); a GET that declared a
    body it never sent waited for ever."""
    import socket

    app = create_app(load_settings(tiny_config))
    with live_server(app) as url:
        big = b'{"messages": [{"role": "user", "content": "hi"}], "x": "' + b"a" * (5 << 20) + b'"}'
        for path in ("/v1/chat/completions", "/api/retrieve"):
            response = httpx.post(url + path, content=big, timeout=30,
                                  headers={"content-type": "multipart/form-data; boundary=zzz"})
            assert response.status_code == 413, path
        upload = httpx.post(url + "/api/documents", content=b"--zzz\r\n" + b"a" * (5 << 20), timeout=30,
                            headers={"content-type": "Multipart/Form-Data; boundary=zzz"})
        # Past the 4 MB limit to the upload's own checks (serve.max_upload_mb is 200): a form without files.
        assert upload.status_code == 400 and "larger than" not in upload.text, upload.text
        nulls = {"messages": [{"role": "user", "content": "hi"}], "n": None, "stream": None}  # null: the default
        assert httpx.post(url + "/v1/chat/completions", json=nulls, timeout=60).status_code == 200
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n")
            assert connection.recv(100).startswith(b"HTTP/1.1 200")


def test_chat_clients_do_not_retry_a_server_without_a_model(built_fact_index, tmp_path):
    openai = pytest.importorskip("openai")
    config = built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False})
    requests = []
    with live_server(create_app(load_settings(config), retrieval_only=True)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", http_client=openai.DefaultHttpxClient(
            event_hooks={"request": [requests.append]}))
        with pytest.raises(openai.InternalServerError, match="runs without a language model"):
            client.chat.completions.create(model="docqa", messages=[{"role": "user", "content": QUESTION}])
    assert len(requests) == 1  # no retries: none can change the answer


def test_a_file_name_that_is_not_utf8_shows_escaped_in_the_build_panel(own_index):
    """Such a name made every /api/builds answer a 500 while its build was remembered: the panel was dead."""
    import os

    project, settings = own_index
    os.rename(project.data / "beta-10k.pdf", os.fsencode(project.data) + b"/caf\xe9.pdf")
    with local_client(create_app(settings)) as client:
        requested = client.app.state.builder.request("watch", [os.fsdecode(b"caf\xe9.pdf")])
        build = wait_for_build(client, requested.id)
        assert build["state"] == "done" and build["files"] == ["caf\\xe9.pdf"]
        assert [item["name"] for item in build["skipped"]] == ["caf\\xe9.pdf"]
        assert client.get("/api/builds").status_code == 200
        deleted = client.delete("/api/documents/caf%5Cxe9.pdf")  # the name as the page shows it
        assert deleted.status_code == 202
        assert sorted(path.name for path in project.data.iterdir()) == ["alpha-annual-report.pdf"]


def test_a_question_too_long_for_any_passage_is_the_client_s_fault_not_the_server_s(tiny_config):
    """With room for a passage beside a short question, a long one that leaves none is refused as the client's
    (400): it was a 500 "server_error", which OpenAI's clients sent three times."""
    with local_client(create_app(load_settings(tiny_config))) as client:
        outcomes = {}
        for words in range(250, 480, 10):  # from answered, through "no passage fits", to "too long"
            response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x " * words}]})
            message = response.json()["error"]["message"] if response.status_code != 200 else "answered"
            outcomes[message.split(":")[0]] = response.status_code
    assert outcomes == {"answered": 200, "no passage fits beside the question": 400, "the question is too long": 400}


def test_stopping_the_server_interrupts_the_build_under_way(fact_project):
    """A service manager's SIGTERM (or a signal to the server alone) waited for the whole build to end: only a
    terminal's Ctrl-C reached the build's process. Stopping interrupts it as Ctrl-C does: it keeps the documents it
    finished and leaves the rest for the next build."""
    from docqa.server.builds import Builder

    page = "Zeta Logistics moved parcels across the region and reported its results for the year. " * 8
    for number in range(12):
        write_pdf(fact_project.data / f"zeta-{number:02}.pdf", [f"{page} Report {number}, page {p}." for p in range(30)])
    builder = Builder(fact_project.settings, on_changed=lambda: None)
    builder.start()
    build = builder.request("upload", [])
    deadline = time.monotonic() + 300
    while build.pages_done == 0:  # reading and embedding
        assert time.monotonic() < deadline and build.state != "done", build.state
        time.sleep(0.05)
    builder.close()
    assert (build.state, build.error.split(":")[0]) == ("failed", "interrupted"), (build.state, build.error)
    report = build_index(fact_project.settings)  # the next build finds what was finished kept, and does the rest
    assert report.added and len(report.added) < 14 and report.unchanged >= 1


def test_an_upload_indexed_by_the_build_before_its_own_says_so(fact_project):
    """Two colleagues' uploads at once: the first build read the folder after both files were placed and indexed
    both; the second upload's build said only "up to date: 3 files unchanged", never that its file was indexed."""
    from docqa.server.builds import Builder

    builder = Builder(fact_project.settings, on_changed=lambda: None)
    builder.start()
    try:
        write_pdf(fact_project.data / "gamma.pdf", ["Gamma Freight moved 9 million parcels."])
        first = builder.request("upload", ["beta-10k.pdf"])  # the folder as it is now: gamma.pdf is in it
        assert builder.wait(first, 300) and "gamma.pdf" in first.report["added"]
        second = builder.request("upload", ["gamma.pdf"])
        assert builder.wait(second, 300)
        assert second.report["summary"].startswith("gamma.pdf: done by the build before this one; up to date")
    finally:
        builder.close()
