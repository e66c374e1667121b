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

from docqa.llm.base import LLM, cpu_threads  # noqa: E402
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


class PromptRecorder(LLM):
    """Stands in for the model inside DocQA to capture the exact prompt docqa would send, generating nothing."""

    name = "prompt-recorder"

    def __init__(self, settings, vocabulary) -> None:
        super().__init__(settings)
        self.vocabulary = vocabulary
        self.prompt: str | None = None

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    def count_tokens(self, text: str) -> int:
        return len(self.vocabulary.tokenize(text.encode(), add_bos=False))

    def _generate(self, prompt: str):
        self.prompt = prompt
        yield from ()


class BenchProject:
    """A temporary index of data/sample and one config per backend case, beside docqa's models folder."""

    def __init__(self, folder: Path, threads: int | None) -> None:
        self.folder = folder
        self.threads = threads
        defaults = load_settings()
        self.models_folder = defaults.path(defaults.paths.models)

    def config(self, case: Case | None = None, model: Path | None = None) -> Path:
        raw = {
            "paths": {"data": str(REPO / "data" / "sample"), "vectorstore": str(self.folder / "vectorstore"),
                      "models": str(self.models_folder)},
            **INDEX_SETTINGS,
            "llm": {"max_new_tokens": NEW_TOKENS, "threads": self.threads},
        }
        if case:
            raw["llm"].update(backend=case.backend, model_path=str(model))
        path = self.folder / (f"{case.backend}-{case.model_format}.yml" if case else "index.yml")
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return path

    def build_index(self) -> None:
        run_checked([sys.executable, str(REPO / "db_build.py"), "--config", str(self.config())])

    def prompt(self, gguf_model: Path) -> str:
        """The prompt docqa builds for QUESTION, counted with the random models' tokenizer."""
        import llama_cpp

        vocabulary = llama_cpp.Llama(model_path=str(gguf_model), vocab_only=True, verbose=False)
        settings = load_settings(self.config())
        recorder = PromptRecorder(settings.llm, vocabulary)
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


def measure(case: Case, model: Path, prompt: str, project: BenchProject) -> Result:
    settings = load_settings(project.config(case, model)).llm
    spec = {
        "backend": case.backend, "model": str(model), "prompt": prompt, "threads": cpu_threads(settings),
        "context_length": settings.context_length, "batch_size": settings.batch_size,
        "temperature": settings.temperature, "new_tokens": NEW_TOKENS,
    }
    raw = measure_raw(spec, model)
    log_run(case, raw)
    docqa = measure_docqa(project.config(case, model), model, raw.prompt_tokens)
    log_run(case, docqa)
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
        prompt_eval=timings["prompt_eval"], token_times=times,
    )


def measure_docqa(config: Path, model: Path, prompt_tokens: int) -> Run:
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


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="llama-cpp only (no GGML file is written)")
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/docqa-bench/models"),
                        help="folder for the 7 GB model files (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the model files for the next run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument("--threads", type=int, help="llm.threads for both sides (default: the configured all cores)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
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
