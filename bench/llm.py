"""LLM speed: llama-cpp against ctransformers, and docqa's question path against calling each backend directly.

The models are random-weight files with the exact Llama-2-7B shapes and q8_0 quantisation (about 7.2 GB each,
written by tests.support.llama_writer in under a minute): speed depends on the shapes, not on the weights. They
are written once into a cache folder and reused. For each backend, in fresh processes, one after the other:

- raw: bench/llm_raw.py calls the library directly: load, evaluate the prompt, generate 64 tokens;
- docqa: `main.py --json` answers the question from an index of data/sample, with the same model and settings.

Both evaluate the same text, the prompt docqa builds for the question (the model card's template, two passages of
the sample annual report and the question: about 455 tokens of the random models' tokenizer), with the same
threads, batch size, context length and temperature. Every process starts with the model file in the page cache.

    .venv/bin/python bench/llm.py [--quick] [--cache DIR] [--keep] [--json FILE] [--threads N]
    .venv/bin/python bench/llm.py --real [--parts overhead lookup prefix] [--rounds 2] [--questions 6] [--threads N]

--real measures Qwen2.5-Coder-1.5B-Instruct (bench/real_models.py) in its own chat template: load, prompt
evaluation and generation rates, docqa against the raw library; prompt-lookup decoding against plain decoding
on FinanceBench dev questions (greedy, the same prompts, alternating); and the time to the first token saved by
keeping the prompt's fixed head in the KV cache between questions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

import yaml

# Run from a checkout without installing the package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # tests.support: the random-weight model writer

from docqa.llm.base import cpu_threads  # noqa: E402
from docqa.llm.llama_cpp import LlamaCppLLM  # noqa: E402
from docqa.qa import DocQA  # noqa: E402
from docqa.settings import load_settings  # noqa: E402
from tests.support.llama_writer import tensor_data_size, write_ggml, write_gguf  # noqa: E402

PRESET = "llama-2-7b"
MODEL_FILES = {
    "gguf": ("random-llama-2-7b.Q8_0.gguf", write_gguf),
    "ggml": ("random-llama-2-7b.ggmlv3.q8_0.bin", write_ggml),
}
QUESTION = "How much is the minimum guarantee payable by Apex Sportswear?"
NEW_TOKENS = 64
# The sample report's pages are short; chunks of at most 250 characters put two passages into the prompt, which
# makes it about 455 tokens, a typical RAG prompt.
INDEX_SETTINGS = {"ingest": {"chunk_size": 250, "chunk_overlap": 20}, "retrieval": {"k": 2}}
OVERHEAD_GOAL = 0.05


@dataclass(frozen=True)
class Case:
    backend: str
    model_format: str

    @property
    def label(self) -> str:
        return f"{self.backend} ({self.model_format})"


CASES = [Case("llama-cpp", "gguf"), Case("ctransformers", "ggml"), Case("ctransformers", "gguf")]


@dataclass
class Run:
    """One process: its wall time and the stages every backend reports alike."""

    side: str  # raw or docqa
    load_average: float  # of the last minute, when the process started
    process: float
    load: float
    prompt_tokens: int
    first_token: float
    tokens: int
    tokens_per_second: float
    time_to_tokens: float  # from the end of loading (docqa: of retrieval) to the last token
    prompt_eval: float | None = None  # raw only: tokenizing and evaluating the prompt
    token_times: list[float] | None = None  # raw only: from the end of loading to each token
    retrieval: float | None = None  # docqa only
    prompt_build: float | None = None  # docqa only: filling the template and fitting it to the context
    max_rss: int | None = None  # raw only: the process's peak resident bytes, the mapped model included


@dataclass
class Result:
    case: Case
    threads: int
    raw: Run
    docqa: Run

    def first_token_overhead(self) -> float:
        return self.docqa.first_token / self.raw.first_token - 1

    def per_token_overhead(self) -> float:
        return self.raw.tokens_per_second / self.docqa.tokens_per_second - 1

    def llm_overhead(self) -> float:
        """Prompt evaluation and generation together, for the number of tokens docqa generated."""
        return self.docqa.time_to_tokens / self.raw.token_times[self.docqa.tokens - 1] - 1


# ---------------------------------------------------------------- the models


def ensure_model(cache: Path, model_format: str) -> Path:
    """The cached model file, written first if it is missing or incomplete."""
    name, write = MODEL_FILES[model_format]
    path = cache / name
    if path.is_file() and path.stat().st_size >= tensor_data_size(PRESET):
        print(f"reusing {path}", file=sys.stderr)
        return path
    partial = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    write(partial, preset=PRESET)
    partial.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def warm_page_cache(path: Path) -> None:
    """Read the file once, so that a load starts from the page cache as it does on a real machine's second run."""
    buffer = bytearray(16 << 20)
    with path.open("rb", buffering=0) as model_file:
        while model_file.readinto(buffer):
            pass


# ---------------------------------------------------------------- the docqa project under test


class PromptRecorder(LlamaCppLLM):
    """The model's tokenizer and chat template without its weights, inside DocQA: captures the exact prompt docqa
    would send, generating nothing."""

    name = "prompt-recorder"

    def __init__(self, settings, model: Path) -> None:
        super().__init__(settings, model, vocab_only=True)
        self.prompt: str | None = None

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    def _generate(self, prompt: str):
        self.prompt = prompt
        yield from ()


class BenchProject:
    """A temporary index of data/sample and one config per backend case, beside docqa's models folder."""

    def __init__(self, folder: Path, threads: int | None, prompt_format: str = "plain") -> None:
        self.folder = folder
        self.threads = threads
        self.prompt_format = prompt_format
        defaults = load_settings()
        self.models_folder = defaults.path(defaults.paths.models)

    def config(self, case: Case | None = None, model: Path | None = None) -> Path:
        raw = {
            "paths": {"data": str(REPO / "data" / "sample"), "vectorstore": str(self.folder / "vectorstore"),
                      "models": str(self.models_folder)},
            **INDEX_SETTINGS,
            "llm": {"max_new_tokens": NEW_TOKENS, "threads": self.threads},
            "prompt": {"format": self.prompt_format},
        }
        if case:
            raw["llm"].update(backend=case.backend, model_path=str(model))
        path = self.folder / (f"{case.backend}-{case.model_format}.yml" if case else "index.yml")
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return path

    def build_index(self) -> None:
        run_checked([sys.executable, str(REPO / "db_build.py"), "--config", str(self.config())])

    def prompt(self, gguf_model: Path) -> str:
        """The prompt docqa builds for QUESTION with this model's tokenizer (and, in its format, chat template)."""
        settings = load_settings(self.config())
        recorder = PromptRecorder(settings.llm, gguf_model)
        with DocQA(settings, llm=recorder) as qa:
            qa.ask(QUESTION)
        return recorder.prompt

    def retrieval_only_load(self) -> float:
        """What docqa's load time holds besides the LLM: the index and the embedding model."""
        answer = json.loads(run_main(self.config(), "--retrieval-only").stdout)
        return answer["timings"]["load"]


def run_checked(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result


def run_main(config: Path, *options: str) -> subprocess.CompletedProcess:
    return run_checked([sys.executable, str(REPO / "main.py"), "--json", "--config", str(config), *options, QUESTION])


# ---------------------------------------------------------------- measuring


def measure(case: Case, model: Path, prompt: str, project: BenchProject, docqa_first: bool = False) -> Result:
    settings = load_settings(project.config(case, model)).llm
    spec = {
        "backend": case.backend, "model": str(model), "prompt": prompt, "threads": cpu_threads(settings),
        "context_length": settings.context_length, "batch_size": settings.batch_size,
        "temperature": settings.temperature, "new_tokens": NEW_TOKENS, "special": True,
    }
    if docqa_first:
        docqa = measure_docqa(project.config(case, model), model, None)
        log_run(case, docqa)
    raw = measure_raw(spec, model)
    log_run(case, raw)
    if not docqa_first:
        docqa = measure_docqa(project.config(case, model), model, raw.prompt_tokens)
        log_run(case, docqa)
    docqa.prompt_tokens = raw.prompt_tokens
    return Result(case, spec["threads"], raw, docqa)


def log_run(case: Case, run: Run) -> None:
    print(f"{case.label} {run.side}: load {run.load:.1f} s, first token {run.first_token:.1f} s, "
          f"{run.tokens} tokens at {run.tokens_per_second:.2f}/s, process {run.process:.0f} s "
          f"(load average {run.load_average:.1f})", file=sys.stderr)


def measure_raw(spec: dict, model: Path) -> Run:
    warm_page_cache(model)
    load_average = os.getloadavg()[0]
    started = time.perf_counter()
    output = run_checked([sys.executable, str(REPO / "bench" / "llm_raw.py"), json.dumps(spec)]).stdout
    process = time.perf_counter() - started
    timings = json.loads(output.strip().splitlines()[-1])
    times = timings["token_times"]
    return Run(
        side="raw", load_average=load_average, process=process, load=timings["load"],
        prompt_tokens=timings["prompt_tokens"], first_token=times[0], tokens=len(times),
        tokens_per_second=(len(times) - 1) / (times[-1] - times[0]), time_to_tokens=times[-1],
        prompt_eval=timings["prompt_eval"], token_times=times, max_rss=timings["max_rss"],
    )


def measure_docqa(config: Path, model: Path, prompt_tokens: int | None) -> Run:
    warm_page_cache(model)
    load_average = os.getloadavg()[0]
    started = time.perf_counter()
    answer = json.loads(run_main(config).stdout)
    process = time.perf_counter() - started
    timings = answer["timings"]
    # docqa times its stages from the prompt being ready; building it is work on the LLM path too.
    prompt_build = timings["total"] - timings["load"] - timings["retrieval"] - timings["generation"]
    return Run(
        side="docqa", load_average=load_average, process=process, load=timings["load"], prompt_tokens=prompt_tokens,
        first_token=prompt_build + timings["first_token"], tokens=timings["tokens"],
        tokens_per_second=timings["tokens_per_second"], time_to_tokens=prompt_build + timings["generation"],
        retrieval=timings["retrieval"], prompt_build=prompt_build,
    )


# ---------------------------------------------------------------- the report


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}"


def print_report(results: list[Result], index_load: float, started: datetime) -> None:
    loads = [run.load_average for result in results for run in (result.raw, result.docqa)]
    print(f"\n{started:%Y-%m-%d %H:%M} UTC · {machine()}")
    print(f"threads {results[0].threads} · load average (1 min) {min(loads):.1f} to {max(loads):.1f} "
          f"· prompt {results[0].raw.prompt_tokens} tokens · {NEW_TOKENS} new tokens · random-weight Llama-2-7B q8_0\n")
    print(f"{'backend':<22}{'side':<7}{'load s':>8}{'prompt eval tok/s':>19}{'first token s':>15}"
          f"{'gen tok/s':>11}{'tokens':>8}{'process s':>11}{'load avg':>10}")
    for result in results:
        for run in (result.raw, result.docqa):
            prompt_rate = f"{run.prompt_tokens / run.prompt_eval:.1f}" if run.prompt_eval else "-"
            print(f"{result.case.label:<22}{run.side:<7}{run.load:>8.2f}{prompt_rate:>19}{run.first_token:>15.2f}"
                  f"{run.tokens_per_second:>11.2f}{run.tokens:>8}{run.process:>11.1f}{run.load_average:>10.1f}")
    print("\nload: importing the library and loading the model; docqa's also holds the index and the embedding model,"
          f"\n{index_load:.2f} s of it in a --retrieval-only run. first token: from the end of loading (docqa: of"
          "\nretrieval, so building the prompt counts). gen tok/s: tokens after the first / the time they took.")
    for result in results:
        print(f"{result.case.label} docqa: retrieval {result.docqa.retrieval:.2f} s, "
              f"building the prompt {result.docqa.prompt_build:.3f} s")
    print_ratios(results)
    print_overheads(results)


def print_ratios(results: list[Result]) -> None:
    by_label = {result.case.label: result.raw for result in results}
    llama_cpp = by_label.get("llama-cpp (gguf)")
    for label, other in by_label.items():
        if label.startswith("ctransformers"):
            print(f"\nllama-cpp (gguf) against {label}, raw: prompt evaluation "
                  f"{other.prompt_eval / llama_cpp.prompt_eval:.2f}x and generation "
                  f"{llama_cpp.tokens_per_second / other.tokens_per_second:.2f}x the speed, load "
                  f"{llama_cpp.load / other.load:.2f}x the time", end="")
    print()


def print_overheads(results: list[Result]) -> None:
    print(f"\ndocqa against the raw backend (goal: LLM stages under {OVERHEAD_GOAL:.0%} slower):")
    for result in results:
        docqa, raw = result.docqa, result.raw
        print(f"  {result.case.label:<22} first token {result.first_token_overhead():+.1%}, "
              f"per generated token {result.per_token_overhead():+.1%}, "
              f"LLM stages (prompt + {docqa.tokens} tokens) {result.llm_overhead():+.1%}; "
              f"whole process {docqa.process - raw.process:+.1f} s ({docqa.process / raw.process - 1:+.0%})")
    print("  whole process: docqa also starts its CLI, loads the index and the embedding model, embeds the question,\n"
          "  retrieves and builds the prompt; the raw process only imports the library, loads, evaluates and generates.")


def save_json(path: Path, results: list[Result], index_load: float, started: datetime) -> None:
    record = {
        "date": started.isoformat(), "machine": machine(), "question": QUESTION, "new_tokens": NEW_TOKENS,
        "index_and_embeddings_load": index_load,
        "results": [{**asdict(result), "llm_overhead": result.llm_overhead(),
                     "first_token_overhead": result.first_token_overhead(),
                     "per_token_overhead": result.per_token_overhead()} for result in results],
    }
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")


# ---------------------------------------------------------------- real weights (--real)

DEV_GOLD = REPO.parent / "shared" / "eval" / "financebench_dev.jsonl"
# What docqa's default k = 4 puts into the prompt on FinanceBench, on average (README, "Finding the evidence").
CONTEXT_CHARACTERS = 1_750
LOOKUP_DRAFT = 10  # tokens drafted per step, llama-cpp-python's default


def real_main(args: argparse.Namespace) -> int:
    """Qwen2.5-Coder-1.5B-Instruct (bench/real_models.py) in its own chat template: docqa against the raw library,
    then prompt-lookup decoding and the reuse of the prompt's fixed head, each side by side in this one process."""
    sys.path.insert(0, str(REPO / "bench"))
    from real_models import qwen_gguf

    model = qwen_gguf()
    started = datetime.now(timezone.utc)
    print(f"{started:%Y-%m-%d %H:%M} UTC · {machine()} · {model.name}")
    threads = args.threads or os.cpu_count() or 1
    record: dict = {"date": started.isoformat(), "machine": machine(), "model": model.name, "threads": threads}
    if "overhead" in args.parts:
        with tempfile.TemporaryDirectory(prefix="docqa-bench-llm-") as folder:
            project = BenchProject(Path(folder), args.threads, prompt_format="gguf")
            project.build_index()
            prompt = project.prompt(model)
            case = Case("llama-cpp", "gguf")
            # Alternating which side goes first, so that a change in the machine's load hits both alike.
            results = [measure(case, model, prompt, project, docqa_first=bool(n % 2)) for n in range(args.rounds)]
        record["overhead"] = [asdict(result) for result in results]
        print_real_overhead(results)
    prompts = dev_prompts(model, args.questions) if {"lookup", "prefix"} & set(args.parts) else []
    if "lookup" in args.parts:
        record["prompt_lookup"] = measure_prompt_lookup(model, prompts, threads, args.new_tokens)
    if "prefix" in args.parts:
        record["prefix_reuse"] = measure_prefix_reuse(model, prompts, threads)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return 0


def print_real_overhead(results: list[Result]) -> None:
    print(f"\n{'round':<7}{'side':<7}{'load s':>8}{'prompt tokens':>15}{'prompt eval tok/s':>19}{'first token s':>15}"
          f"{'gen tok/s':>11}{'tokens':>8}{'load avg':>10}")
    for number, result in enumerate(results, 1):
        for run in (result.raw, result.docqa):
            prompt_rate = f"{run.prompt_tokens / run.prompt_eval:.1f}" if run.prompt_eval else "-"
            print(f"{number:<7}{run.side:<7}{run.load:>8.2f}{run.prompt_tokens:>15}{prompt_rate:>19}"
                  f"{run.first_token:>15.2f}{run.tokens_per_second:>11.2f}{run.tokens:>8}{run.load_average:>10.1f}")
    raw_first = sum(result.raw.first_token for result in results)
    docqa_first = sum(result.docqa.first_token for result in results)
    llm = [result.llm_overhead() for result in results]
    print(f"docqa against raw llama-cpp-python (goal under {OVERHEAD_GOAL:.0%}): first token {docqa_first / raw_first - 1:+.1%} "
          f"over {len(results)} rounds; LLM stages per round " + ", ".join(f"{value:+.1%}" for value in llm))


def dev_prompts(model: Path, count: int) -> list[str]:
    """docqa's prompts (the model's chat template around the card's) for ``count`` FinanceBench dev questions spread
    over the file, with each question's gold evidence as the context, cut to what docqa's default k holds."""
    import re

    from docqa.prompts import render
    from docqa.settings import LLM as LLMSettings
    from docqa.settings import Prompt

    if not DEV_GOLD.is_file():
        raise SystemExit(f"needs {DEV_GOLD}")
    lines = [json.loads(line) for line in DEV_GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = sorted(lines, key=lambda line: line["id"])[:: max(1, len(lines) // count)][:count]
    tokenizer = LlamaCppLLM(LLMSettings(model_path=model), model, vocab_only=True)
    prompts = []
    for line in chosen:
        context = re.sub(r"[ \t]*\n[ \t\n]*", "\n", re.sub(r"[ \t]+", " ", "\n\n".join(line["evidence"])))
        context = context[:CONTEXT_CHARACTERS]
        prompts.append(render(Prompt(format="gguf"), context, line["question"], tokenizer.chat_template,
                              tokenizer.template_tokens))
    return prompts


def timed_answer(llm: LlamaCppLLM, prompt: str) -> tuple[str, float, float]:
    """The answer, the time to its first piece and the whole time, with nothing of an earlier prompt in the cache."""
    llm._model.reset()
    started = time.perf_counter()
    first, pieces = None, []
    for piece in llm.stream(prompt):
        first = first if first is not None else time.perf_counter() - started
        pieces.append(piece)
    return "".join(pieces), first or 0.0, time.perf_counter() - started


def measure_prompt_lookup(model: Path, prompts: list[str], threads: int, new_tokens: int) -> dict:
    """Greedy answers of the same prompts with and without prompt-lookup drafting, alternating which goes first."""
    from docqa.settings import LLM as LLMSettings

    base = LLMSettings(model_path=model, threads=threads, temperature=0.0, max_new_tokens=new_tokens)
    sides = {"off": LlamaCppLLM(base, model),
             "lookup": LlamaCppLLM(base.model_copy(update={"prompt_lookup": LOOKUP_DRAFT}), model)}
    rows = []
    print(f"\nprompt lookup ({LOOKUP_DRAFT} drafted tokens) against plain decoding, greedy, at most {new_tokens} tokens:")
    print(f"{'question':<10}{'side':<8}{'first token s':>15}{'tokens':>8}{'gen tok/s':>11}{'load avg':>10}  same text")
    for number, prompt in enumerate(prompts, 1):
        order = ["off", "lookup"] if number % 2 else ["lookup", "off"]
        answers = {}
        for side in order:
            load_average = os.getloadavg()[0]
            text, first, total = timed_answer(sides[side], prompt)
            tokens = sides[side].generated_tokens
            rate = (tokens - 1) / (total - first) if tokens > 1 and total > first else None
            answers[side] = text
            rows.append({"question": number, "side": side, "first_token": first, "total": total, "tokens": tokens,
                         "tokens_per_second": rate, "load_average": load_average, "answer": text})
        for row in rows[-2:]:
            rate = f"{row['tokens_per_second']:.2f}" if row["tokens_per_second"] else "-"
            print(f"{number:<10}{row['side']:<8}{row['first_token']:>15.2f}{row['tokens']:>8}{rate:>11}"
                  f"{row['load_average']:>10.1f}  {answers['off'] == answers['lookup']}")
    summary = {}
    for side in sides:
        mine = [row for row in rows if row["side"] == side]
        decode = sum(row["total"] - row["first_token"] for row in mine)
        summary[side] = {"first_token": sum(row["first_token"] for row in mine) / len(mine),
                         "tokens_per_second": sum(row["tokens"] - 1 for row in mine) / decode}
    identical = sum(rows[i]["answer"] == rows[i + 1]["answer"] for i in range(0, len(rows), 2))
    speedup = summary["lookup"]["tokens_per_second"] / summary["off"]["tokens_per_second"]
    print(f"generation {summary['lookup']['tokens_per_second']:.2f} against {summary['off']['tokens_per_second']:.2f} "
          f"tokens/s ({speedup:.2f}x); first token {summary['lookup']['first_token']:.2f} against "
          f"{summary['off']['first_token']:.2f} s; identical answers {identical} of {len(prompts)}")
    return {"rows": rows, "summary": summary, "speedup": speedup, "identical": identical, "questions": len(prompts)}


def measure_prefix_reuse(model: Path, prompts: list[str], threads: int) -> dict:
    """Time to the first token of each prompt after the previous question's prompt (llama-cpp-python keeps the
    common head in the KV cache) against after a reset (the whole prompt evaluated), alternating the order."""
    from docqa.settings import LLM as LLMSettings

    llm = LlamaCppLLM(LLMSettings(model_path=model, threads=threads, temperature=0.0, max_new_tokens=1), model)
    tokens = [llm.encode(prompt, add_bos=True) for prompt in prompts]
    heads = [len(_common_head(tokens[n - 1], tokens[n])) for n in range(1, len(prompts))]
    rows = []
    print(f"\nthe prompt's fixed head kept in the KV cache ({min(heads)} to {max(heads)} tokens of "
          f"{min(map(len, tokens))} to {max(map(len, tokens))}):")
    for number in range(1, len(prompts)):
        for side in (["reuse", "reset"] if number % 2 else ["reset", "reuse"]):
            llm._model.reset()
            if side == "reuse":
                list(llm.stream(prompts[number - 1]))  # untimed: leaves the previous question's prompt in the cache
            started = time.perf_counter()
            list(llm.stream(prompts[number]))
            rows.append({"question": number + 1, "side": side, "first_token": time.perf_counter() - started,
                         "head_tokens": heads[number - 1], "prompt_tokens": len(tokens[number])})
    reuse = sum(row["first_token"] for row in rows if row["side"] == "reuse")
    reset = sum(row["first_token"] for row in rows if row["side"] == "reset")
    count = len(prompts) - 1
    print(f"time to first token {reuse / count:.2f} s with the head reused against {reset / count:.2f} s without "
          f"({1 - reuse / reset:.1%} saved, {(reset - reuse) / count:.2f} s per question)")
    return {"rows": rows, "first_token_reuse": reuse / count, "first_token_reset": reset / count}


def _common_head(first: list[int], second: list[int]) -> list[int]:
    length = 0
    while length < min(len(first), len(second)) and first[length] == second[length]:
        length += 1
    return first[:length]


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="llama-cpp only (no GGML file is written)")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/docqa-bench/models"),
                        help="folder for the 7 GB model files (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the model files for the next run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument("--threads", type=int, help="llm.threads for both sides (default: the configured all cores)")
    real = parser.add_argument_group("real weights", "Qwen2.5-Coder-1.5B-Instruct instead of random Llama-2-7B weights")
    real.add_argument("--real", action="store_true", help="measure the real model (bench/real_models.py)")
    real.add_argument("--parts", nargs="+", choices=["overhead", "lookup", "prefix"], default=["overhead", "lookup", "prefix"])
    real.add_argument("--rounds", type=int, default=2, help="raw/docqa pairs, alternating which goes first")
    real.add_argument("--questions", type=int, default=6, help="FinanceBench dev questions for lookup and prefix")
    real.add_argument("--new-tokens", type=int, default=64, help="prompt lookup: at most this many tokens per answer")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.real:
        return real_main(args)
    started = datetime.now(timezone.utc)
    cases = CASES[:1] if args.quick else CASES
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        models = {fmt: ensure_model(cache, fmt) for fmt in dict.fromkeys(case.model_format for case in cases)}
        with tempfile.TemporaryDirectory(prefix="docqa-bench-llm-") as folder:
            project = BenchProject(Path(folder), args.threads)
            project.build_index()
            prompt = project.prompt(models["gguf"])
            results = [measure(case, models[case.model_format], prompt, project) for case in cases]
            index_load = project.retrieval_only_load()
    finally:
        if not args.keep:
            for name, _ in MODEL_FILES.values():
                (cache / name).unlink(missing_ok=True)
                (cache / f"{name}.partial").unlink(missing_ok=True)
    print_report(results, index_load, started)
    if args.json:
        save_json(args.json, results, index_load, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
