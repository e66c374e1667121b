"""What the server must refuse: strangers, paths out of the index, oversized or non-PDF uploads, HTML in PDFs."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("fastapi")


from docqa.cli import ask_main  # noqa: E402
from docqa.errors import ConfigError  # noqa: E402
from docqa.server import create_app  # noqa: E402
from docqa.server.security import check_bind, is_loopback  # noqa: E402
from docqa.server.uploads import UploadRejected, safe_name  # noqa: E402
from docqa.settings import load_settings  # noqa: E402
from tests.fixtures_server import local_client  # noqa: E402


@pytest.fixture
def settings(built_fact_index, tmp_path):
    return load_settings(built_fact_index.write_config(tmp_path / "config.yml", serve={"watch": False}))


@pytest.fixture
def client(settings):
    with local_client(create_app(settings, retrieval_only=True), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def writable(fact_project):
    """A project whose data folder the test may write to (uploads), indexed."""
    from docqa.ingest import build_index

    settings = fact_project.configure(serve={"watch": False, "max_upload_mb": 0.02})
    build_index(settings)
    with local_client(create_app(settings, retrieval_only=True)) as client:
        yield fact_project, client


def test_advice_said_to_clients_names_the_config_file_without_the_server_s_folders(built_fact_index, tmp_path):
    """Every client on the LAN read "python download_model.py --config /srv/team/team.yml" in answers' notes and
    build errors: the server's own path."""
    from docqa.errors import DocqaError, advising

    (tmp_path / "team").mkdir()
    config = built_fact_index.write_config(tmp_path / "team" / "team.yml", serve={"watch": False})
    settings = load_settings(config)
    app = create_app(settings, retrieval_only=True)
    served = app.state.engine.settings
    assert (served.own_config, settings.own_config) == ("team.yml", str(config))  # the caller's are left as they were
    with pytest.raises(DocqaError) as error, advising(served):
        raise DocqaError("settings changed since the index was built; run: python db_build.py --rebuild")
    assert str(error.value).endswith("run: docqa build --config team.yml --rebuild")
    assert str(tmp_path) not in str(error.value)


# ---------------------------------------------------------------- who may talk to it


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.20", False),
                                            ("::", False), ("example.org", False),
                                            ("lan.localhost", False)])  # a name only the resolver places
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_a_token():
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0 without an API token.*DOCQA_API_TOKEN"):
        check_bind("0.0.0.0", None, "DOCQA_API_TOKEN")
    check_bind("0.0.0.0", "a-long-secret", "DOCQA_API_TOKEN")
    check_bind("127.0.0.1", None, "DOCQA_API_TOKEN")


def test_serve_refuses_to_start_on_a_public_address_without_a_token(settings, monkeypatch, capsys):
    monkeypatch.delenv("DOCQA_API_TOKEN", raising=False)
    config = settings.root / "config.yml"
    assert ask_main(["serve", "--config", str(config), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to listen on 0.0.0.0 without an API token") and "Traceback" not in err


def test_serve_says_when_the_port_is_taken(settings, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert ask_main(["serve", "--config", str(settings.root / "config.yml"), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "192.168.1.20:8000", "127.0.0.1.evil.example",
                                  "127.0.0.1:evil.example", "[::1]evil.example", "localhost.:8000"])
def test_without_a_token_a_foreign_host_name_is_refused(client, host):
    """DNS rebinding: a name the attacker controls resolved to 127.0.0.1 reaches the server with its own Host."""
    for method, path in [("GET", "/api/documents"), ("GET", "/"), ("POST", "/api/retrieve")]:
        response = client.request(method, path, headers={"host": host}, json={"question": "revenue"})
        assert response.status_code == 403, (method, path)
        assert response.json()["error"].startswith(f"refused: Host {host!r} is not this machine's loopback")


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000",
                                  "docqa.localhost:8000", "localhost", "127.0.0.1:"])
def test_without_a_token_loopback_host_names_are_served(client, host):
    assert client.get("/api/documents", headers={"host": host}).status_code == 200


def test_without_a_token_a_request_from_another_origin_is_refused(writable):
    project, client = writable
    pdf = {"files": ("forged.pdf", b"%PDF-1.4 forged", "application/pdf")}
    for origin in ["http://evil.example", "http://127.0.0.1:9999", "null"]:
        response = client.post("/api/documents", files=pdf, headers={"origin": origin})
        assert response.status_code == 403
        assert response.json()["error"].startswith(f"refused: a page from {origin!r} may not use this server")
    assert not (project.data / "forged.pdf").exists()
    # the page itself (its own origin) and clients that send no Origin, such as scripts, are served
    assert client.post("/api/retrieve", json={"question": "revenue"}, headers={"origin": "http://127.0.0.1"}).status_code == 200
    assert client.post("/api/retrieve", json={"question": "revenue"}).status_code == 200


def test_without_a_token_the_api_refuses_what_a_browser_marks_as_from_another_site(client):
    """An <img> on another site's page sends no Origin, but the browser says where it comes from; whether a page
    image loads would tell that site which documents exist."""
    for site in ("cross-site", "same-site"):
        refused = client.get("/api/documents/beta-10k.pdf/pages/1.png", headers={"sec-fetch-site": site})
        assert refused.status_code == 403 and refused.json()["error"] == f"refused: a {site} request may not use this server's API"
    assert client.get("/api/documents", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert client.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 200  # a link to the page
    assert client.get("/api/health").headers["cross-origin-resource-policy"] == "same-origin"


def test_with_a_token_other_host_names_and_origins_are_served(settings):
    """A shared server (a token, any address) is reached by its LAN name; the token, which another site's page
    cannot send, is what keeps strangers out."""
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token")) as client:
        response = client.get("/api/documents", headers={"host": "docqa.lan:8000", "origin": "http://docqa.lan:8000",
                                                         "authorization": "Bearer s3cret-token"})
        assert response.status_code == 200


def test_with_a_token_every_api_route_needs_it(settings):
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token")) as client:
        for method, path in [("GET", "/api/health"), ("GET", "/api/documents"), ("POST", "/api/retrieve"),
                             ("GET", "/api/documents/beta-10k.pdf/pages/1.png"), ("POST", "/v1/chat/completions"),
                             ("GET", "/v1/models"), ("DELETE", "/api/documents/beta-10k.pdf")]:
            response = client.request(method, path, json={"question": "dividend"})
            assert response.status_code == 401, path
            error = response.json()["error"]  # under /v1 in OpenAI's shape, which its clients read
            message = error["message"] if path.startswith("/v1/") else error
            assert message.startswith("missing or wrong API token")
        wrong = client.get("/api/health", headers={"Authorization": "Bearer s3cret-tokem"})
        assert wrong.status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        right = client.get("/api/health", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and right.json()["index"]["documents"] == 2
        assert client.get("/").status_code == 200  # the page holds no data; it asks for the token
    assert (settings.path(settings.paths.data) / "beta-10k.pdf").exists()


def cors_settings(built_fact_index, tmp_path, origins):
    return load_settings(built_fact_index.write_config(tmp_path / "cors.yml", serve={"watch": False, "cors_origins": origins}))


def test_pages_of_listed_origins_may_call_the_api_with_the_token(built_fact_index, tmp_path):
    """A chat front end served from another origin: its browser asks first (a preflight, which carries no token),
    then sends the token. Other origins get no permission, and the token still guards every request."""
    front_end = "http://localhost:3000"
    settings = cors_settings(built_fact_index, tmp_path, [front_end + "/", "HTTPS://Chat.Example.org"])
    assert settings.serve.cors_origins == [front_end, "https://chat.example.org"]
    assert cors_settings(built_fact_index, tmp_path, "*").serve.cors_origins == ["*"]
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token")) as client:
        # OpenAI's JavaScript client adds headers of its own to every request
        preflight = {"access-control-request-method": "POST",
                     "access-control-request-headers": "authorization,content-type,x-stainless-lang,x-stainless-os"}
        asked = client.options("/api/retrieve", headers={"origin": front_end, **preflight})
        assert asked.status_code == 200 and asked.headers["access-control-allow-origin"] == front_end
        assert "authorization" in asked.headers["access-control-allow-headers"].lower()
        stranger = client.options("/api/retrieve", headers={"origin": "http://evil.example", **preflight})
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
        # Chrome's Private Network Access: a page on the internet asks before calling a server on this machine
        private = {**preflight, "access-control-request-private-network": "true"}
        asked = client.options("/api/retrieve", headers={"origin": front_end, **private})
        assert asked.status_code == 200 and asked.headers["access-control-allow-private-network"] == "true"
        stranger = client.options("/api/retrieve", headers={"origin": "http://evil.example", **private})
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
        answered = client.post("/api/retrieve", json={"question": "dividend"},
                               headers={"origin": front_end, "authorization": "Bearer s3cret-token"})
        assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == front_end
        assert answered.json()["passages"]
        # Without the token: refused, in words the front end's script may read.
        refused = client.get("/v1/models", headers={"origin": front_end})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == front_end
        assert "access-control-allow-origin" not in client.get("/v1/models", headers={
            "origin": "http://evil.example", "authorization": "Bearer s3cret-token"}).headers


def test_other_origins_need_a_token(built_fact_index, tmp_path, monkeypatch, capsys):
    settings = cors_settings(built_fact_index, tmp_path, ["http://localhost:3000"])
    with pytest.raises(ConfigError, match="serve.cors_origins lets pages of http://localhost:3000 .* DOCQA_API_TOKEN"):
        create_app(settings, retrieval_only=True)
    monkeypatch.delenv("DOCQA_API_TOKEN", raising=False)
    assert ask_main(["serve", "--config", str(tmp_path / "cors.yml"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: serve.cors_origins lets pages") and "Traceback" not in err


@pytest.mark.parametrize("origin", ["localhost:3000", "http://localhost:3000/chat", "file:///tmp/page.html", "",
                                    "http://localhost:99999", "null", "http://[::zz]:3000"])
def test_an_origin_that_a_browser_never_sends_is_refused(built_fact_index, tmp_path, origin):
    with pytest.raises(ConfigError, match="is not an origin: write scheme://host"):
        cors_settings(built_fact_index, tmp_path, [origin])


@pytest.mark.parametrize("written, sent", [("http://localhost:80", "http://localhost"),
                                           ("https://chat.example.org:443/", "https://chat.example.org"),
                                           ("http://[0:0:0:0:0:0:0:1]:3000", "http://[::1]:3000"),
                                           ("https://bücher.example", "https://xn--bcher-kva.example")])
def test_an_origin_is_kept_as_the_browser_sends_it(built_fact_index, tmp_path, written, sent):
    """Written otherwise (a default port, an uncompressed IPv6 address, a name with accents), it never matched."""
    settings = cors_settings(built_fact_index, tmp_path, [written])
    assert settings.serve.cors_origins == [sent]
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token")) as client:
        answered = client.get("/api/health", headers={"origin": sent, "authorization": "Bearer s3cret-token"})
        assert answered.headers["access-control-allow-origin"] == sent


def test_a_failure_reaches_the_front_end_and_keeps_the_security_headers(built_fact_index, tmp_path, monkeypatch):
    """Starlette answers an unforeseen exception outside every middleware: the 500 had no CORS header, so the
    front end's script could not read why, and none of the security headers."""
    from docqa.qa import DocQA

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    front_end = "http://localhost:3000"
    settings = cors_settings(built_fact_index, tmp_path, [front_end])
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token"),
                      raise_server_exceptions=False) as client:
        monkeypatch.setattr(DocQA, "retrieve", broken)
        failed = client.post("/api/retrieve", json={"question": "dividend"},
                             headers={"origin": front_end, "authorization": "Bearer s3cret-token"})
    assert failed.status_code == 500 and failed.json() == {"error": "unexpected RuntimeError: boom"}
    assert failed.headers["access-control-allow-origin"] == front_end
    assert "default-src 'none'" in failed.headers["content-security-policy"]


# ---------------------------------------------------------------- names outside the index


@pytest.mark.parametrize("name", ["../config.yml", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "../../../etc/passwd",
                                  "alpha-annual-report.pdf%00", "ALPHA-ANNUAL-REPORT.PDF", "../data/beta-10k.pdf",
                                  "%2E%2E%2Fconfig.yml", "not-indexed.pdf"])
def test_names_outside_the_index_are_not_found(client, settings, name):
    (settings.path(settings.paths.data) / "not-indexed.pdf").write_bytes(b"%PDF-1.7\n%%EOF\n")
    try:
        page = client.get(f"/api/documents/{name}/pages/1.png")
        assert page.status_code == 404 and "error" in page.json()
        assert client.delete(f"/api/documents/{name}").status_code == 404
    finally:
        (settings.path(settings.paths.data) / "not-indexed.pdf").unlink()
    assert (settings.path(settings.paths.data) / "beta-10k.pdf").exists()


# ---------------------------------------------------------------- uploads


def pdf_bytes(make_pdf, text: str = "Zeta Logistics moved 9 million parcels.") -> bytes:
    return make_pdf([text], "upload-source.pdf").read_bytes()


def test_oversized_upload_is_refused(writable, make_pdf):
    project, client = writable
    big = pdf_bytes(make_pdf) + b"%" + b"x" * 40_000 + b"\n"
    response = client.post("/api/documents", files={"files": ("big.pdf", big, "application/pdf")})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert not (project.data / "big.pdf").exists()
    assert not list(project.data.glob(".upload-*"))


def test_non_pdf_upload_is_refused(writable):
    project, client = writable
    text = client.post("/api/documents", files={"files": ("notes.pdf", b"Quarterly notes, as text.\n", "application/pdf")})
    assert text.status_code == 415 and "not a PDF" in text.json()["error"]
    named = client.post("/api/documents", files={"files": ("notes.txt", b"%PDF-1.7\n", "text/plain")})
    assert named.status_code == 415
    assert sorted(path.name for path in project.data.iterdir()) == ["alpha-annual-report.pdf", "beta-10k.pdf"]


def test_an_upload_cut_short_says_so(writable, make_pdf):
    """A form whose body stops inside its file (a dropped connection behind a proxy, a script that sent part of a
    file) said "no files: send PDFs in the form field 'files'", which it had."""
    project, client = writable
    head = (b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="cut.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n")
    whole = head + pdf_bytes(make_pdf) + b"\r\n--XyZ--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    cut = client.post("/api/documents", content=whole[: len(head) + 200], headers=headers)
    assert cut.status_code == 400 and "cut short" in cut.json()["error"], cut.json()
    empty = client.post("/api/documents", content=b"--XyZ--\r\n", headers=headers)
    assert empty.status_code == 400 and empty.json()["error"].startswith("no files"), empty.json()
    assert not (project.data / "cut.pdf").exists()
    assert client.post("/api/documents", content=whole, headers=headers).status_code == 202


def test_one_bad_file_refuses_the_whole_upload(writable, make_pdf):
    project, client = writable
    response = client.post("/api/documents", files=[("files", ("good.pdf", pdf_bytes(make_pdf), "application/pdf")),
                                                    ("files", ("bad.pdf", b"GIF89a", "application/pdf"))])
    assert response.status_code == 415
    assert response.json()["error"].endswith("; none of the 2 files of this upload was added")  # good.pdf neither
    assert not (project.data / "good.pdf").exists() and not list(project.data.glob(".upload-*"))


@pytest.mark.parametrize("name, status", [(".hidden.pdf", 400), ("..", 400), ("a\\b.pdf", 400), ("x\x00.pdf", 400),
                                          ("", 400), ("report.PDF", None), ("Annual report 2023.pdf", None)])
def test_file_names_are_checked(name, status):
    if status is None:
        assert safe_name(name) == name
        return
    with pytest.raises(UploadRejected) as refused:
        safe_name(name)
    assert refused.value.status == status


def test_hidden_or_pathed_names_are_refused_over_http(writable, make_pdf):
    project, client = writable
    for name in (".hidden.pdf", "..\\..\\evil.pdf"):
        response = client.post("/api/documents", files={"files": (name, pdf_bytes(make_pdf), "application/pdf")})
        assert response.status_code == 400, name
        # the name as sent: repr() doubled each backslash ('..\\\\..\\\\evil.pdf')
        assert f"file name '{name}' " in response.json()["error"], response.json()
    assert sorted(path.name for path in project.data.iterdir()) == ["alpha-annual-report.pdf", "beta-10k.pdf"]


def test_of_two_uploads_of_one_new_name_at_once_the_second_is_refused(writable, make_pdf, tmp_path):
    """Both are checked while the name is free; placing claims it atomically, so the second is a 409, not a
    silent overwrite of the first."""
    from docqa.server.uploads import stage_upload

    project, _ = writable
    first, second = (pdf_bytes(make_pdf, f"Upload number {n}.") for n in (1, 2))
    staged = [stage_upload(project.data, "same.pdf", io.BytesIO(content), indexed=set(), replace=False, limit=10**6)
              for content in (first, second)]
    staged[0].place(project.data)
    with pytest.raises(UploadRejected, match="same.pdf already exists") as refused:
        staged[1].place(project.data)
    assert refused.value.status == 409
    staged[1].discard()
    assert (project.data / "same.pdf").read_bytes() == first
    assert not list(project.data.glob(".upload-*"))


def test_an_upload_never_silently_replaces_a_document(writable, make_pdf):
    project, client = writable
    original = (project.data / "beta-10k.pdf").read_bytes()
    replacement = pdf_bytes(make_pdf, "Beta Corporation restated its dividend.")
    refused = client.post("/api/documents", files={"files": ("beta-10k.pdf", replacement, "application/pdf")})
    assert refused.status_code == 409 and "replace=true" in refused.json()["error"]
    assert (project.data / "beta-10k.pdf").read_bytes() == original
    replaced = client.post("/api/documents?replace=true", files={"files": ("beta-10k.pdf", replacement, "application/pdf")})
    assert replaced.status_code == 202 and replaced.json()["files"][0]["replaced"] is True
    assert (project.data / "beta-10k.pdf").read_bytes() == replacement


def test_a_replacement_that_cannot_be_read_leaves_the_document_as_it_was(writable, make_pdf):
    """A replacement cut short was placed over the good PDF at once and only skipped by the build: the document
    stayed listed, but its file was gone and none of its pages could be shown."""
    project, client = writable
    original = (project.data / "beta-10k.pdf").read_bytes()
    whole = pdf_bytes(make_pdf, "Beta Corporation restated its dividend.")
    text = b"(Beta Corporation restated its dividend.)"
    blank = whole.replace(text, b"(" + b" " * (len(text) - 2) + b")")  # no text on any page: a scan
    for broken in (whole[: len(whole) // 2], blank):
        response = client.post("/api/documents?replace=true",
                               files={"files": ("beta-10k.pdf", broken, "application/pdf")})
        assert response.status_code == 422, response.json()
        assert response.json()["error"].startswith("beta-10k.pdf cannot be read (")
        assert "the file it would replace is kept as it was" in response.json()["error"]
        assert (project.data / "beta-10k.pdf").read_bytes() == original
    assert not list(project.data.glob(".upload-*"))


# ---------------------------------------------------------------- errors and headers


def test_errors_are_json_messages_never_tracebacks(client, monkeypatch):
    assert client.get("/api/nothing-here").json() == {"error": "not found: /api/nothing-here"}
    for blank in ("", "   \n"):
        invalid = client.post("/api/retrieve", json={"question": blank})
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("question:")
    not_allowed = client.get("/api/ask")
    assert not_allowed.status_code == 405 and not_allowed.json() == {"error": "Method Not Allowed"}
    assert client.post("/api/retrieve", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.get("/api/builds/unknown").status_code == 404

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("docqa.server.api.render_page", explode)
    broken = client.get("/api/documents/beta-10k.pdf/pages/1.png")
    assert broken.status_code == 500 and broken.json() == {"error": "unexpected RuntimeError: disk on fire"}
    assert "Traceback" not in broken.text


def test_every_response_carries_a_content_security_policy(client):
    for path in ("/", "/static/app.js", "/api/health"):
        policy = client.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy


def test_the_page_has_no_inline_script_style_or_external_resource(client):
    page = client.get("/").text
    assert "<style" not in page and " style=" not in page and "<script>" not in page
    assert "http://" not in page and "https://" not in page
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_html_inside_a_pdf_comes_back_as_plain_text(project, make_pdf):
    """The API returns PDF text verbatim in JSON; the page puts it in with textContent (see test_browser)."""
    from docqa.ingest import build_index
    from tests.support.pdfs import write_pdf

    payload = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> Omega Telecom sells fibre.'
    write_pdf(project.data / "omega.pdf", [payload])
    settings = project.configure(serve={"watch": False})
    build_index(settings)
    with local_client(create_app(settings, retrieval_only=True)) as client:
        passage = client.post("/api/retrieve", json={"question": "Omega fibre"}).json()["passages"][0]
    assert " ".join(passage["text"].split()) == payload


def test_with_a_token_the_api_document_asks_for_it(settings):
    """So that /docs shows "Authorize" and its "Try it out" sends the token (it got 401 before)."""
    with local_client(create_app(settings, retrieval_only=True, token="s3cret-token")) as client:
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": "The server's API token."}
    assert schema["paths"]["/api/retrieve"]["post"]["security"] == [{"token": []}]
    assert schema["paths"]["/v1/chat/completions"]["post"]["security"] == [{"token": []}]
    with local_client(create_app(settings, retrieval_only=True)) as client:
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})
