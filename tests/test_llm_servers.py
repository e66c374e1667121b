"""Server backends: ``openai`` against a real ``python -m llama_cpp.server`` running SmolLM2, and against
GPT4All's request rules; ``ollama`` against a local server that speaks Ollama's protocol."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from docqa.cli import ask_main
from docqa.errors import ConfigError, LLMError, MissingDependencyError, ModelNotFoundError
from docqa.llm import create_llm
from docqa.settings import LLM as LLMSettings

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "docqa-test-key"
# FACTS in fixtures_project: the board's dividend, on page 3 of beta-10k.pdf.
FACT_QUESTION = "What quarterly dividend per share did the board declare?"
FACT_CONTEXT = "The board declared a quarterly dividend of 42 cents per share."


def settings(**values) -> LLMSettings:
    defaults = {"temperature": 0.0, "context_length": 1024, "max_new_tokens": 24, "stop": []}
    return LLMSettings(**{**defaults, **values})


def smollm2_chat(user: str) -> str:
    """The prompt in SmolLM2's own chat format, as docqa renders it for the completions API."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = ask_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- a real llama_cpp.server with SmolLM2


@dataclass
class LlamaServer:
    base_url: str
    model: Path


SERVER_MODULES = ["fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings", "llama_cpp"]


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf, tmp_path_factory) -> Iterator[LlamaServer]:
    """``python -m llama_cpp.server`` on a free port of 127.0.0.1, with a 1024-token window and an API key."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama-cpp-python's server needs {', '.join(missing)}")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--api_key", API_KEY,
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(base_url, process, log)
        yield LlamaServer(base_url, smollm2_gguf)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(base_url: str, process: subprocess.Popen, log: Path) -> None:
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"llama_cpp.server did not start within 180 s: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("DOCQA_TEST_KEY", API_KEY)
    return "DOCQA_TEST_KEY"


def test_llama_server_streams_an_answer_from_the_prompts_context(llama_server, api_key):
    llm = create_llm(settings(backend="openai", base_url=llama_server.base_url, api_key_env=api_key), Path("/"))
    prompt = smollm2_chat(f"Context: {FACT_CONTEXT}\nQuestion: {FACT_QUESTION}")
    pieces = list(llm.stream(prompt))
    answer = "".join(pieces)
    assert "42" in answer, answer  # the fact exists only in the prompt's context
    assert len(pieces) > 1 and llm.generated_tokens == len(pieces)  # streamed, piece by piece
    assert llm.name == "openai"


def test_llama_server_chat_api_applies_the_models_template(llama_server, api_key):
    llm = create_llm(
        settings(backend="openai", base_url=llama_server.base_url, api_key_env=api_key, api="chat"), Path("/")
    )
    answer = "".join(llm.stream(f"Context: {FACT_CONTEXT}\nQuestion: {FACT_QUESTION}"))
    assert "42" in answer, answer
    assert llm.context_length == 1024 - 64  # room left for the template the server wraps around the prompt


def test_llama_server_stops_at_stop_sequences(llama_server, api_key):
    values = {"backend": "openai", "base_url": llama_server.base_url, "api_key_env": api_key, "max_new_tokens": 40}
    prompt = smollm2_chat("Count from one to twenty in words, separated by commas.")
    full = "".join(create_llm(settings(**values), Path("/")).stream(prompt))
    stop = full[len(full) // 2 :][:4]
    assert stop.strip(), full
    llm = create_llm(settings(**values, stop=[stop]), Path("/"))
    cut = "".join(llm.stream(prompt))
    assert cut == full[: full.index(stop)]
    assert llm.generated_tokens < 40


def test_llama_server_counts_tokens_with_the_models_tokenizer(llama_server, api_key):
    import llama_cpp

    vocabulary = llama_cpp.Llama(model_path=str(llama_server.model), vocab_only=True, verbose=False)
    llm = create_llm(settings(backend="openai", base_url=llama_server.base_url, api_key_env=api_key), Path("/"))
    for text in [FACT_CONTEXT, smollm2_chat(FACT_QUESTION), "日本語 é€", ""]:
        expected = len(vocabulary.tokenize(text.encode(), add_bos=False, special=True))
        assert llm.count_tokens(text) == expected, text


def test_llama_server_prompt_beyond_its_window_is_one_line_llm_error(llama_server, api_key):
    # docqa is told 4096 tokens, the server holds 1024: the server's refusal must reach the user as one line.
    llm = create_llm(
        settings(backend="openai", base_url=llama_server.base_url, api_key_env=api_key, context_length=4096), Path("/")
    )
    prompt = smollm2_chat("revenue " * 1500)
    # Not streamed, the server refuses with HTTP 400; streamed, it sends an empty stream.
    with pytest.raises(LLMError, match="does not fit the server's context window") as refused:
        list(create_llm(llm.settings.model_copy(update={"stream": False}), Path("/")).stream(prompt))
    with pytest.raises(LLMError, match="ended the answer without finishing it") as ended:
        list(llm.stream(prompt))
    for caught in (refused, ended):
        assert "llm.context_length" in str(caught.value) and "\n" not in str(caught.value)


def test_llama_server_wrong_key_is_a_config_error(llama_server, monkeypatch):
    monkeypatch.setenv("DOCQA_WRONG_KEY", "not-the-key")
    with pytest.raises(ConfigError, match="HTTP 401") as caught:
        create_llm(settings(backend="openai", base_url=llama_server.base_url, api_key_env="DOCQA_WRONG_KEY"), Path("/"))
    assert "llm.api_key_env" in str(caught.value) and "\n" not in str(caught.value)


def test_llama_server_without_v1_is_a_config_error_naming_base_url(llama_server, api_key):
    root = llama_server.base_url.removesuffix("/v1")
    llm = create_llm(settings(backend="openai", base_url=root, api_key_env=api_key, model="smollm2"), Path("/"))
    with pytest.raises(ConfigError, match="HTTP 404") as caught:
        list(llm.stream("hello"))
    assert "llm.base_url" in str(caught.value) and "\n" not in str(caught.value)


def test_main_answers_through_llama_server(built_fact_index, llama_server, api_key, smollm2_gguf, tmp_path, capsys):
    config = built_fact_index.write_config(
        tmp_path / "config.yml",
        llm={"backend": "openai", "base_url": llama_server.base_url, "api_key_env": api_key, "api": "chat",
             "max_new_tokens": 32, "context_length": 1024, "temperature": 0.0},
    )
    code, out, err = run_main(["--config", str(config), "--json", "--k", "2", FACT_QUESTION], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert "42" in result["answer"], result["answer"]
    assert result["sources"][0]["document"] == "beta-10k.pdf"
    assert result["timings"]["backend"] == "openai" and result["timings"]["tokens"] > 1
    assert result["model"] == str(smollm2_gguf)  # the id llama_cpp.server lists first (llm.model is empty)


def test_main_with_server_down_is_one_line_exit_7(built_fact_index, tmp_path):
    down = f"http://127.0.0.1:{free_port()}/v1"
    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"backend": "openai", "base_url": down, "model": "m"})
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--config", str(config), FACT_QUESTION],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 7, result.stderr
    assert result.stderr.startswith(f"error: cannot reach {down}") and result.stderr.count("\n") == 1, result.stderr


# ---------------------------------------------------------------- local protocol servers


@dataclass
class Recorded:
    """What a fake server received: (path, JSON body) per request."""

    requests: list[tuple[str, dict]] = field(default_factory=list)


def serve(handler: type[BaseHTTPRequestHandler], listen: bool = True) -> tuple[ThreadingHTTPServer, str]:
    """A server on a free port of 127.0.0.1; with ``listen=False`` the port is bound but refuses connections,
    as a server still starting does, until ``start_listening``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.server_bind()
    server.daemon_threads = True
    if listen:
        start_listening(server)
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}"


def start_listening(server: ThreadingHTTPServer, after_s: float = 0.0) -> None:
    def run() -> None:
        time.sleep(after_s)
        server.server_activate()
        server.listening_since = time.monotonic()
        server.serve_forever(poll_interval=0.05)

    threading.Thread(target=run, daemon=True).start()


class JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorded: Recorded

    def read_json(self) -> dict:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.recorded.requests.append((self.path, body))
        return body

    def send_json(self, status: int, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


# Ollama: /api/generate and /api/chat stream NDJSON, chunked, one object per token; the last one says
# done with done_reason and the counts; an unknown model is a 404 with Ollama's own error JSON.

OLLAMA_PIECES = ["The", " board", " declared", " 42", " cents", ".", "\nQuestion", ":", " next"]


def ollama_handler(recorded: Recorded, models: set[str], fail_after: int | None = None,
                   cut_after: int | None = None) -> type[JSONHandler]:
    """``fail_after``: an error line after that many pieces; ``cut_after``: the stream ends there, no "done" line."""
    class Ollama(JSONHandler):
        def do_POST(self):
            self.recorded = recorded
            body = self.read_json()
            if self.path not in ("/api/generate", "/api/chat"):
                return self.send_json(404, {"error": "404 page not found"})
            if body.get("model") not in models:
                return self.send_json(404, {"error": f'model "{body.get("model")}" not found, try pulling it first'})
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            options = body.get("options", {})
            limit, stops = options.get("num_predict", -1), options.get("stop", [])
            held, reason, count = "", "stop", 0
            for piece in OLLAMA_PIECES:
                if fail_after is not None and count == fail_after:
                    return self.write_line({"error": "an error was encountered while running the model: out of memory"}, end=True)
                if cut_after is not None and count == cut_after:
                    self.wfile.write(b"0\r\n\r\n")  # the server stopped part way: the stream ends, not the answer
                    return self.wfile.flush()
                if 0 <= limit <= count:
                    reason = "length"
                    break
                count, held = count + 1, held + piece
                if any(stop in held for stop in stops):
                    break  # Ollama ends at a stop sequence and leaves it out
                if not any(stop.startswith(held) for stop in stops):  # text that may begin a stop is held back
                    self.write_line(self.chunk(body, held, done=False))
                    held = ""
            final = self.chunk(body, "", done=True)
            final.update(done_reason=reason, total_duration=912_000_000, load_duration=8_000_000,
                         prompt_eval_count=57, prompt_eval_duration=300_000_000, eval_count=count,
                         eval_duration=600_000_000)
            if self.path == "/api/generate":
                final["context"] = [1, 2, 3]
            self.write_line(final, end=True)

        def chunk(self, body: dict, piece: str, done: bool) -> dict:
            chunk = {"model": body["model"], "created_at": "2026-11-29T17:00:00.123456789Z"}
            if self.path == "/api/chat":
                chunk["message"] = {"role": "assistant", "content": piece}
            else:
                chunk["response"] = piece
            chunk["done"] = done
            return chunk

        def write_line(self, value: dict, end: bool = False) -> None:
            line = json.dumps(value).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            if end:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Ollama


@pytest.fixture
def ollama() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()
    server, url = serve(ollama_handler(recorded, {"llama2", "llama2:latest"}))
    yield url, recorded
    server.shutdown()
    server.server_close()


def test_ollama_streams_raw_generate_with_the_context_size(ollama):
    url, recorded = ollama
    llm = create_llm(
        settings(backend="ollama", base_url=url, model="llama2", context_length=4096, max_new_tokens=256,
                 stop=["\nQuestion:"]),
        Path("/"),
    )
    pieces = list(llm.stream("[INST] What dividend? [/INST]"))
    assert "".join(pieces) == "The board declared 42 cents."
    assert len(pieces) == 6 and llm.generated_tokens == 6  # "\nQuestion" was held back, then dropped by Ollama
    path, body = recorded.requests[-1]
    assert path == "/api/generate"
    assert body == {
        "model": "llama2",
        "prompt": "[INST] What dividend? [/INST]",
        "raw": True,
        "stream": True,
        "options": {"num_ctx": 4096, "num_predict": 256, "temperature": 0.0, "stop": ["\nQuestion:"]},
    }


def test_ollama_chat_api_sends_the_prompt_as_a_user_message(ollama):
    url, recorded = ollama
    llm = create_llm(settings(backend="ollama", base_url=url, model="llama2", api="chat", max_new_tokens=3), Path("/"))
    assert "".join(llm.stream("What dividend?")) == "The board declared"
    path, body = recorded.requests[-1]
    assert path == "/api/chat"
    assert body["messages"] == [{"role": "user", "content": "What dividend?"}]
    assert body["options"]["num_ctx"] == 1024 and body["options"]["num_predict"] == 3 and body["stream"] is True


def test_ollama_says_whether_the_answer_was_cut_at_the_token_limit(ollama):
    """Counting pieces called an answer that ended by itself on its last allowed token cut off (finish_reason
    "length" through the web API); Ollama's done_reason says which it was."""
    url, _ = ollama
    whole = create_llm(settings(backend="ollama", base_url=url, model="llama2", max_new_tokens=len(OLLAMA_PIECES)), Path("/"))
    list(whole.stream("What dividend?"))
    assert whole.generated_tokens == whole.token_limit and not whole.reached_limit  # it ended by itself
    cut = create_llm(settings(backend="ollama", base_url=url, model="llama2", max_new_tokens=3), Path("/"))
    list(cut.stream("What dividend?"))
    assert cut.reached_limit


def test_ollama_counts_tokens_by_estimate_and_keeps_the_answer_inside_the_window(ollama):
    url, recorded = ollama
    llm = create_llm(settings(backend="ollama", base_url=url, model="llama2", context_length=100, max_new_tokens=50), Path("/"))
    assert llm.count_tokens("x" * 30) == 10 and llm.count_tokens("x" * 31) == 11
    list(llm.stream("x" * 180))  # 60 tokens by the estimate: 40 left for the answer
    assert recorded.requests[-1][1]["options"]["num_predict"] == 40
    with pytest.raises(LLMError, match="llm.context_length is 100"):
        list(llm.stream("x" * 400))


def test_ollama_model_not_pulled_says_ollama_pull(ollama):
    url, _ = ollama
    llm = create_llm(settings(backend="ollama", base_url=url, model="mistral"), Path("/"))
    with pytest.raises(ModelNotFoundError) as caught:
        list(llm.stream("hello"))
    assert str(caught.value).endswith("ollama pull mistral") and "\n" not in str(caught.value)


def test_ollama_error_during_generation_is_one_line_llm_error():
    recorded = Recorded()
    server, url = serve(ollama_handler(recorded, {"llama2"}, fail_after=2))
    try:
        llm = create_llm(settings(backend="ollama", base_url=url, model="llama2"), Path("/"))
        with pytest.raises(LLMError, match="Ollama reported an error: an error was encountered while running the model"):
            list(llm.stream("hello"))
    finally:
        server.shutdown()
        server.server_close()



def test_ollama_stream_that_ends_without_its_done_line_is_an_llm_error():
    """A stream closed part way was taken for a whole answer ("The total revenue", exit 0)."""
    recorded = Recorded()
    server, url = serve(ollama_handler(recorded, {"llama2"}, cut_after=2))
    try:
        llm = create_llm(settings(backend="ollama", base_url=url, model="llama2"), Path("/"))
        with pytest.raises(LLMError, match=r'ended the answer before finishing it \(no "done" line\)'):
            list(llm.stream("hello"))
    finally:
        server.shutdown()
        server.server_close()

def test_ollama_needs_a_model_name():
    with pytest.raises(ConfigError, match="ollama pull llama2"):
        create_llm(settings(backend="ollama"), Path("/"))


def test_ollama_default_server_is_the_local_one():
    llm = create_llm(settings(backend="ollama", model="llama2"), Path("/"))
    try:
        list(llm.stream("hello"))
    except LLMError as error:  # nothing listens on 11434 here
        assert "cannot reach Ollama at http://127.0.0.1:11434" in str(error)
    else:
        pytest.skip("an Ollama server is running on this machine")


def assert_connect_is_retried(handler: type[BaseHTTPRequestHandler], make_llm) -> str:
    """Ask a server that begins listening 0.3 s after the request was sent; return the answer."""
    server, url = serve(handler, listen=False)
    try:
        llm = make_llm(url)
        start_listening(server, after_s=0.3)
        asked = time.monotonic()
        answer = "".join(llm.stream("hello"))
        assert asked < server.listening_since  # so the first connection was refused
        return answer
    finally:
        server.shutdown()
        server.server_close()


def test_ollama_connect_is_retried_while_the_server_starts():
    answer = assert_connect_is_retried(
        ollama_handler(Recorded(), {"llama2"}),
        lambda url: create_llm(settings(backend="ollama", base_url=url, model="llama2", max_new_tokens=2), Path("/")),
    )
    assert answer == "The board"


def test_main_with_ollama_not_pulled_and_down(built_fact_index, ollama, tmp_path, capsys):
    url, _ = ollama
    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"backend": "ollama", "base_url": url, "model": "mistral"})
    code, out, err = run_main(["--config", str(config), FACT_QUESTION], capsys)
    assert code == 2 and err.count("\n") == 1 and "ollama pull mistral" in err
    down = built_fact_index.write_config(
        tmp_path / "down.yml", llm={"backend": "ollama", "base_url": f"http://127.0.0.1:{free_port()}", "model": "llama2"}
    )
    code, out, err = run_main(["--config", str(down), FACT_QUESTION], capsys)
    assert code == 7 and err.startswith("error: cannot reach Ollama at") and err.count("\n") == 1


# GPT4All's desktop API server (gpt4all-chat/src/server.cpp): /v1/completions and /v1/chat/completions
# without streaming; it refuses 'stream': true, 'stop' and any key it does not know, and needs 'model'.

GPT4ALL_KEYS = {"model", "prompt", "max_tokens", "temperature", "top_p", "min_p", "n", "echo", "user",
                "frequency_penalty", "presence_penalty", "seed", "best_of", "logit_bias", "logprobs", "suffix"}


def gpt4all_handler(recorded: Recorded) -> type[JSONHandler]:
    class GPT4All(JSONHandler):
        def do_GET(self):
            self.recorded = recorded
            recorded.requests.append((self.path, {}))
            if self.path == "/v1/models":
                return self.send_json(200, {"object": "list", "data": [
                    {"id": "Llama 3 8B Instruct", "object": "model", "created": 0, "owned_by": "humanity"}]})
            self.send_json(404, {})

        def do_POST(self):
            self.recorded = recorded
            body = self.read_json()
            if self.path != "/v1/completions":
                return self.send_json(404, {})
            for key in ("stop", "stream"):
                if body.get(key):
                    return self.refuse(f"'{key}' is not supported")
            unknown = sorted(set(body) - GPT4ALL_KEYS - {"stop", "stream"})
            if unknown:
                return self.refuse(f"Unrecognized request argument supplied: {unknown[0]}")
            if "model" not in body:
                return self.refuse("you must provide a model parameter")
            self.send_json(200, {
                "id": "placeholder", "object": "text_completion", "created": 1764435600, "model": body["model"],
                "choices": [{"text": " 42 cents per share.\nQuestion: more", "index": 0, "logprobs": None,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 31, "completion_tokens": 11, "total_tokens": 42},
            })

        def refuse(self, message: str) -> None:
            self.send_json(400, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})

    return GPT4All


@pytest.fixture
def gpt4all() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()
    server, url = serve(gpt4all_handler(recorded))
    yield f"{url}/v1", recorded
    server.shutdown()
    server.server_close()


def test_gpt4all_answers_without_streaming_or_stop(gpt4all):
    url, recorded = gpt4all
    llm = create_llm(
        settings(backend="openai", base_url=url, stream=False, send_stop=False, stop=["\nQuestion:"]), Path("/")
    )
    assert "".join(llm.stream("Context: ...\nQuestion: What dividend?")) == " 42 cents per share."
    assert llm.generated_tokens == 11  # the server's count, for tokens per second
    assert recorded.requests[0][0] == "/v1/models"  # no llm.model: the first model the server lists
    path, body = recorded.requests[-1]
    assert path == "/v1/completions"
    assert body == {"model": "Llama 3 8B Instruct", "prompt": "Context: ...\nQuestion: What dividend?",
                    "max_tokens": 24, "temperature": 0.0, "stream": False}


def test_openai_takes_the_servers_word_on_how_the_answer_ended(gpt4all):
    """The answer used all 11 tokens it was allowed, but the server says it ended by itself ("stop")."""
    url, recorded = gpt4all
    llm = create_llm(settings(backend="openai", base_url=url, stream=False, send_stop=False, max_new_tokens=11), Path("/"))
    list(llm.stream("What dividend?"))
    assert recorded.requests[-1][1]["max_tokens"] == 11 and llm.generated_tokens == 11
    assert not llm.reached_limit


def test_llama_server_says_when_the_answer_was_cut_at_the_token_limit(llama_server, api_key):
    values = {"backend": "openai", "base_url": llama_server.base_url, "api_key_env": api_key}
    prompt = smollm2_chat(f"Context: {FACT_CONTEXT}\nQuestion: {FACT_QUESTION}")
    whole = create_llm(settings(**values), Path("/"))
    list(whole.stream(prompt))
    cut = create_llm(settings(**values, max_new_tokens=2), Path("/"))
    list(cut.stream(prompt))
    assert not whole.reached_limit and whole.generated_tokens > 2, whole.generated_tokens
    assert cut.reached_limit and cut.generated_tokens == 2


@pytest.mark.parametrize(("values", "setting"), [({}, "llm.send_stop: false"), ({"send_stop": False}, "llm.stream: false")])
def test_gpt4all_refusals_name_the_setting(gpt4all, values, setting):
    url, _ = gpt4all
    llm = create_llm(settings(backend="openai", base_url=url, model="m", stop=["\nQuestion:"], **values), Path("/"))
    with pytest.raises(ConfigError, match=setting) as caught:
        list(llm.stream("hello"))
    assert "is not supported" in str(caught.value) and "\n" not in str(caught.value)


def test_openai_connect_is_retried_while_the_server_starts():
    answer = assert_connect_is_retried(
        gpt4all_handler(Recorded()),
        lambda url: create_llm(
            settings(backend="openai", base_url=f"{url}/v1", model="m", stream=False, send_stop=False, stop=["\nQuestion:"]),
            Path("/"),
        ),
    )
    assert answer == " 42 cents per share."


def test_openai_estimates_tokens_where_the_server_cannot_tokenize(gpt4all):
    url, recorded = gpt4all
    llm = create_llm(settings(backend="openai", base_url=url, model="m"), Path("/"))
    assert llm.count_tokens("x" * 30) == 10 and llm.count_tokens("x" * 31) == 11
    # Each known tokenize endpoint asked once, then never again.
    assert [path for path, _ in recorded.requests] == ["/tokenize", "/extras/tokenize", "/tokenize"]


def tokenizing_handler(recorded: Recorded, kind: str) -> type[JSONHandler]:
    """/tokenize as llama.cpp's llama-server (``content``) or vLLM (``prompt``) answers it: one token a word."""

    class Tokenizer(JSONHandler):
        def do_POST(self):
            self.recorded = recorded
            body = self.read_json()
            if self.path != "/tokenize":
                return self.send_json(404, {"detail": "Not Found"})
            if kind == "llama-server":
                return self.send_json(200, {"tokens": list(range(len(body.get("content", "").split())))})
            if "prompt" not in body:
                return self.send_json(400, {"object": "error", "message": "prompt: Field required", "type": "BadRequestError", "code": 400})
            tokens = list(range(len(body["prompt"].split())))
            self.send_json(200, {"count": len(tokens), "max_model_len": 4096, "tokens": tokens, "token_strs": None})

    return Tokenizer


@pytest.mark.parametrize(
    ("kind", "paths"),
    [("llama-server", ["/tokenize"]), ("vllm", ["/tokenize", "/extras/tokenize", "/tokenize"])],
)
def test_openai_counts_with_the_servers_tokenize_endpoint(kind, paths):
    recorded = Recorded()
    server, url = serve(tokenizing_handler(recorded, kind))
    try:
        llm = create_llm(settings(backend="openai", base_url=f"{url}/v1", model="m"), Path("/"))
        assert llm.count_tokens("one two three") == 3
        assert [path for path, _ in recorded.requests] == [*paths, "/tokenize"]  # found once, then asked
        assert recorded.requests[-1][1] == (
            {"content": "one two three", "add_special": False} if kind == "llama-server"
            else {"prompt": "one two three", "model": "m", "add_special_tokens": False}
        )
    finally:
        server.shutdown()
        server.server_close()



def web_page_handler(events: bytes | None = None, events_type: str | None = "text/event-stream") -> type[JSONHandler]:
    """A web page at every path (a chat UI on the port given as llm.base_url); with ``events``, the completions
    route streams those server-sent events instead, as ``events_type`` (None: no Content-Type at all)."""

    class WebPage(JSONHandler):
        def do_GET(self):
            self.send_body(b"<!doctype html><title>Chat</title>", "text/html; charset=utf-8")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if events is not None and self.path == "/v1/completions":
                return self.send_body(events, events_type)
            self.send_body(b"<!doctype html><title>Chat</title>", "text/html; charset=utf-8")

        def send_body(self, data: bytes, kind: str | None) -> None:
            self.send_response(200)
            if kind:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return WebPage


@pytest.mark.parametrize("values", [{}, {"model": "x"}, {"model": "x", "stream": False}])
def test_openai_base_url_of_a_web_page_is_said_to_be_no_api(values):
    """It was 'unexpected AttributeError' (no llm.model), an answer blamed on the context window (streaming) or an
    empty answer, exit 1 (not streaming)."""
    server, url = serve(web_page_handler())
    try:
        with pytest.raises(LLMError, match=r"did not answer as an OpenAI-compatible API \(.*\); check llm.base_url"):
            list(create_llm(settings(backend="openai", base_url=f"{url}/v1", **values), Path("/")).stream("hello"))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_a_plain_web_server_as_base_url_is_said_to_be_no_api(backend, tmp_path):
    """Python's own file server (python -m http.server) answers a POST with HTTP 501: that page's first line was all
    the message said ('answered HTTP 501: <!DOCTYPE HTML>'), exit 7."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server, url = serve(functools.partial(Quiet, directory=str(tmp_path)))
    try:
        base = f"{url}/v1" if backend == "openai" else url
        with pytest.raises(ConfigError) as caught:
            list(create_llm(settings(backend=backend, base_url=base, model="llama2"), Path("/")).stream("hello"))
        assert f"{base} answered HTTP 501" in str(caught.value)
        assert str(caught.value).endswith("check llm.base_url (usually ending in /v1)" if backend == "openai"
                                          else "is llm.base_url an Ollama server?")
    finally:
        server.shutdown()
        server.server_close()


def test_openai_stream_event_that_is_not_json_is_an_llm_error():
    """It escaped as 'unexpected JSONDecodeError'."""
    events = b'data: {"choices": [{"text": "The", "index": 0, "finish_reason": null}]}\n\ndata: {not json\n\n'
    server, url = serve(web_page_handler(events))
    try:
        llm = create_llm(settings(backend="openai", base_url=f"{url}/v1", model="x"), Path("/"))
        with pytest.raises(LLMError, match="a stream event that is not JSON"):
            list(llm.stream("hello"))
    finally:
        server.shutdown()
        server.server_close()



@pytest.mark.parametrize("events_type", ["Text/Event-Stream", None])
def test_openai_stream_of_events_is_taken_whatever_its_content_type_s_case_or_without_one(events_type):
    """The check for a web page refused a stream sent as Text/Event-Stream, or with no content type."""
    events = (b'data: {"choices": [{"text": "42 cents", "index": 0, "finish_reason": null}]}\n\n'
              b'data: {"choices": [{"text": "", "index": 0, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')
    server, url = serve(web_page_handler(events, events_type))
    try:
        llm = create_llm(settings(backend="openai", base_url=f"{url}/v1", model="x"), Path("/"))
        assert "".join(llm.stream("hello")) == "42 cents"
    finally:
        server.shutdown()
        server.server_close()

def test_an_answer_given_in_one_piece_has_no_rate(built_fact_index, gpt4all):
    """A server with llm.stream: false sends the answer whole: its rate was the tokens over the milliseconds after
    the one piece (88,939 tokens/s)."""
    from docqa.qa import DocQA

    url, _ = gpt4all
    llm = create_llm(settings(backend="openai", base_url=url, stream=False, send_stop=False), Path("/"))
    with DocQA(built_fact_index.settings, llm=llm) as qa:
        timings = qa.ask(FACT_QUESTION).timings
    assert timings.tokens == 11 and timings.generation > 0 and timings.tokens_per_second is None


def test_openai_waits_for_a_server_still_loading_its_model():
    """llama-server answers HTTP 503 "Loading model" until its model is in memory: docqa gave up at once (exit 7)."""
    recorded = Recorded()
    started = time.monotonic()

    class Loading(JSONHandler):
        def do_GET(self):
            self.recorded = recorded
            recorded.requests.append((self.path, {}))
            self.answer({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "me"}]})

        def do_POST(self):
            self.recorded = recorded
            self.read_json()
            if self.path != "/v1/completions":
                return self.send_json(404, {})
            self.answer({"id": "c", "object": "text_completion", "created": 0, "model": "m", "usage": None,
                         "choices": [{"text": "42 cents", "index": 0, "logprobs": None, "finish_reason": "stop"}]})

        def answer(self, value: dict) -> None:
            if time.monotonic() - started < 1.0:
                return self.send_json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
            self.send_json(200, value)

    server, url = serve(Loading)
    try:
        llm = create_llm(settings(backend="openai", base_url=f"{url}/v1", stream=False), Path("/"))
        assert "".join(llm.stream("What dividend?")) == "42 cents"
        assert [path for path, _ in recorded.requests].count("/v1/models") > 1  # asked again until it was loaded
        # one wait for all requests: each (3 tokenize probes, then the answer) waited llm.timeout_s of its own
        started = time.monotonic() + 3600  # loading for an hour from now
        stuck = create_llm(settings(backend="openai", base_url=f"{url}/v1", model="m", timeout_s=1), Path("/"))
        began = time.monotonic()
        with pytest.raises(LLMError, match=r"was still loading its model after 1 s \(HTTP 503\); wait for it, or "
                                           r"raise llm.timeout_s"):
            list(stuck.stream("What dividend?"))
        assert time.monotonic() - began < 3
    finally:
        server.shutdown()
        server.server_close()

def test_openai_needs_base_url():
    with pytest.raises(ConfigError, match="llm.base_url"):
        create_llm(settings(backend="openai"), Path("/"))


def test_openai_names_unset_api_key_variable(monkeypatch):
    monkeypatch.delenv("DOCQA_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="DOCQA_TEST_KEY"):
        create_llm(settings(backend="openai", base_url="http://127.0.0.1:9/v1", api_key_env="DOCQA_TEST_KEY"), Path("/"))


def test_openai_without_the_client_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"openai is not installed: pip install 'docqa\[openai\]'$"):
        create_llm(settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m"), Path("/"))


def test_importing_docqa_llm_loads_no_client_library():
    code = "import sys, docqa.llm; print(sorted({'openai', 'httpx', 'httpx2'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
