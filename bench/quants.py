"""File size, memory and speed of each quantization `download_model.py --quant` offers, measured here.

The weights cannot be fetched here, so the files are random weights with the exact Llama-2-7B shapes: llama.cpp's
speed and memory depend on the shapes and the quantization type, not on the weights' values. bench/llm.py's
random Q8_0 file (written once, about 7.2 GB) is requantized by llama.cpp's own quantizer
(``llama_model_quantize``) into each type; llama.cpp picks each tensor's type for a mix such as Q4_K_M as it does
for a real model, so the file sizes are what this llama.cpp writes for Llama-2-7B. TheBloke converted his files
with a 2023 llama.cpp, whose mixes differed slightly.

Each file is then loaded in a fresh process (bench/llm_raw.py, the model file first read into the page cache),
evaluates the same prompt and generates the same number of tokens. Q8_0 is measured first and last: the speed of
each type is given relative to the mean of those two runs, so that a machine busy with other work shifts the
ratios less. Memory is the process's peak resident size, the mapped weights included.

    .venv/bin/python bench/quants.py [--quants Q4_K_M Q8_0 ...] [--threads N] [--keep] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from docqa.llm.catalog import DEFAULT_QUANT, QUANTIZATIONS  # noqa: E402
from llm import ensure_model, measure_raw  # noqa: E402

PROMPT = " ".join(["The annual report states revenue, operating income and cash flows for the fiscal year."] * 5)


def quantized(base: Path, quant: str, threads: int, out: Path | None = None) -> tuple[Path, float]:
    """``base`` requantized to ``quant`` next to it, or to ``out`` (reused when already there), and the seconds it
    took."""
    if quant == DEFAULT_QUANT and out is None:
        return base, 0.0
    out = out or base.with_name(base.name.replace(f".{DEFAULT_QUANT}.", f".{quant}."))
    if out.is_file():
        return out, 0.0
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = threads
    params.allow_requantize = True  # the source is already quantized (bench/quant_quality.py says what that costs)
    partial = out.with_name(out.name + ".partial")
    started = time.perf_counter()
    if llama_cpp.llama_model_quantize(str(base).encode(), str(partial).encode(), params) != 0:
        raise SystemExit(f"llama.cpp could not quantize {base.name} to {quant}")
    partial.replace(out)
    return out, time.perf_counter() - started


def measure(model: Path, threads: int, new_tokens: int) -> dict:
    """One fresh process (bench/llm.py's raw side): load, prompt evaluation and generation, and its peak memory."""
    spec = {"backend": "llama-cpp", "model": str(model), "prompt": PROMPT, "threads": threads,
            "context_length": 2048, "batch_size": 512, "temperature": 0.01, "new_tokens": new_tokens}
    run = measure_raw(spec, model)
    return {
        "load_s": round(run.load, 2),
        "prompt_tokens": run.prompt_tokens,
        "prompt_tokens_per_s": round(run.prompt_tokens / run.prompt_eval, 3),
        "generation_tokens_per_s": round(run.tokens_per_second, 3),
        "max_rss_gb": round(run.max_rss / 1e9, 2),
        "load_average": round(run.load_average, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quants", nargs="+", choices=list(QUANTIZATIONS), default=list(QUANTIZATIONS))
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/docqa-bench/models"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the requantized files for the next run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args()
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    base = ensure_model(cache, "gguf")

    rows: dict[str, dict] = {}
    reference = [measure(base, args.threads, args.new_tokens)]
    print(f"{DEFAULT_QUANT} first: {reference[0]}", file=sys.stderr, flush=True)
    for quant in [quant for quant in args.quants if quant != DEFAULT_QUANT]:
        model, seconds = quantized(base, quant, args.threads)
        rows[quant] = {"size_gb": round(model.stat().st_size / 1e9, 2), "quantize_s": round(seconds, 1),
                       **measure(model, args.threads, args.new_tokens)}
        print(f"{quant}: {rows[quant]}", file=sys.stderr, flush=True)
        if not args.keep:
            model.unlink()
    reference.append(measure(base, args.threads, args.new_tokens))
    print(f"{DEFAULT_QUANT} last: {reference[1]}", file=sys.stderr, flush=True)
    rows[DEFAULT_QUANT] = {"size_gb": round(base.stat().st_size / 1e9, 2), "quantize_s": 0.0, **{
        key: round(sum(run[key] for run in reference) / 2, 3) for key in reference[0]}}

    q8 = rows[DEFAULT_QUANT]
    print(f"random-weight Llama-2-7B, {args.threads} threads, a {q8['prompt_tokens']:.0f}-token prompt, "
          f"{args.new_tokens} new tokens; speeds relative to {DEFAULT_QUANT} (mean of its first and last run)")
    print(f"{'quant':<8} {'file GB':>8} {'peak RSS GB':>12} {'prompt tok/s':>13} {'gen tok/s':>10} "
          f"{'prompt ×':>9} {'gen ×':>6}")
    for quant in QUANTIZATIONS:
        if quant not in rows:
            continue
        row = rows[quant]
        print(f"{quant:<8} {row['size_gb']:>8.2f} {row['max_rss_gb']:>12.2f} {row['prompt_tokens_per_s']:>13.2f} "
              f"{row['generation_tokens_per_s']:>10.2f} {row['prompt_tokens_per_s'] / q8['prompt_tokens_per_s']:>9.2f} "
              f"{row['generation_tokens_per_s'] / q8['generation_tokens_per_s']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "new_tokens": args.new_tokens,
                                         "reference_runs": reference, "quants": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
