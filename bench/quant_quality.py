"""What the smaller quantizations cost in quality, measured on a real model: perplexity on report text.

The Llama-2-7B weights cannot be fetched here, so the README's quality notes for `download_model.py --quant` are
TheBloke's. This measures the same question on the one real chat model there is (Qwen2.5-Coder-1.5B-Instruct,
Q4_K_M, bench/real_models.py): the file is requantized by llama.cpp's own quantizer into each smaller type, and each
file reads the same pages of an annual report. Reported per type:

- perplexity on that text (lower is better) and its ratio to Q4_K_M's;
- the share of positions where the type's most likely next token is the Q4_K_M file's (1.0: identical choices);
  greedy answers follow those choices, so this is what changes answers.

Requantizing from Q4_K_M adds the smaller type's error to Q4_K_M's, so the figures bound what each type loses
against Q4_K_M; the types above Q4_K_M (Q5_0 to Q8_0) cannot be measured from it and are not offered. A 1.5B model
is usually hurt more by quantization than a 7B one, so Llama-2-7B likely loses less.

    .venv/bin/python bench/quant_quality.py [--quants Q2_K Q3_K_M ...] [--pdf FILE] [--pages 60-90]
        [--tokens 2048] [--threads N] [--keep] [--json FILE]

About two minutes a type for 2,048 tokens on 2 cores. --keep leaves the files, for bench/answers.py --model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from docqa.documents import read_pages  # noqa: E402
from measure import CORPUS  # noqa: E402
from quants import quantized  # noqa: E402
from real_models import ModelNotFound, qwen_gguf  # noqa: E402

BASE_QUANT = "Q4_K_M"  # the type of the real file
SMALLER = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S"]
# Tokens evaluated at once. Windows overlap by half and only each window's second half is scored, so every scored
# token has at least 256 tokens before it, and each token after the first 256 is scored once.
WINDOW = 512


def page_range(text: str) -> tuple[int, int]:
    """``--pages``: "60-90", 0-based and inclusive."""
    first, _, last = text.partition("-")
    if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, such as 60-90, not {text!r}")
    return int(first), int(last)


def report_text(pdf: Path, pages: tuple[int, int]) -> str:
    first, last = pages
    return "\n".join(page.text for page in read_pages(pdf)[first:last + 1] if page.text)


def scored(model_path: Path, tokens: list[int], threads: int, window: int = WINDOW) -> tuple[list[float], list[int]]:
    """For each scored token: the log-probability the model gives it, and the model's own most likely token there."""
    import llama_cpp
    import numpy as np

    model = llama_cpp.Llama(model_path=str(model_path), n_ctx=window, n_batch=window, n_threads=threads,
                            n_threads_batch=threads, logits_all=True, verbose=False)
    log_probs: list[float] = []
    top: list[int] = []
    try:
        half = window // 2
        for start in range(0, len(tokens) - window + 1, half):
            text = tokens[start:start + window]
            model.reset()
            model.eval(text)
            logits = np.asarray(model.scores[:window], dtype=np.float64)
            for position in range(half - 1, window - 1):  # the logits at a position predict the next token
                row = logits[position]
                peak = row.max()
                log_z = peak + math.log(np.exp(row - peak).sum())
                log_probs.append(float(row[text[position + 1]] - log_z))
                top.append(int(row.argmax()))
    finally:
        model.close()
    return log_probs, top


def tokenized(model_path: Path, text: str, count: int) -> list[int]:
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    try:
        tokens = model.tokenize(text.encode(), add_bos=False)
    finally:
        model.close()
    if len(tokens) < count:
        raise SystemExit(f"the pages give {len(tokens)} tokens, fewer than --tokens {count}: choose more pages")
    return tokens[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quants", nargs="+", choices=SMALLER, default=SMALLER)
    parser.add_argument("--pdf", type=Path, default=CORPUS / "manu-20f-2022-09-24.pdf")
    parser.add_argument("--pages", type=page_range, default="60-90", help="0-based page range of the text read, inclusive")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens of that text read by every file")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the requantized files for the next run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args()
    if not args.pdf.is_file():
        print(f"skipped: needs {args.pdf}")
        return 0
    try:
        base = qwen_gguf()
    except ModelNotFound as err:
        sys.exit(str(err))
    tokens = tokenized(base, report_text(args.pdf, args.pages), args.tokens)

    def measured(path: Path) -> dict:
        started = time.perf_counter()
        log_probs, top = scored(path, tokens, args.threads)
        return {"perplexity": math.exp(-sum(log_probs) / len(log_probs)), "top": top, "scored": len(log_probs),
                "seconds": round(time.perf_counter() - started, 1), "size_gb": round(path.stat().st_size / 1e9, 3)}

    rows = {BASE_QUANT: measured(base)}
    print(f"{BASE_QUANT}: perplexity {rows[BASE_QUANT]['perplexity']:.3f}", file=sys.stderr, flush=True)
    for quant in args.quants:
        path, _ = quantized(base, quant, args.threads, out=base.with_name(f"{base.stem}.{quant}{base.suffix}"))
        rows[quant] = measured(path)
        print(f"{quant}: perplexity {rows[quant]['perplexity']:.3f}", file=sys.stderr, flush=True)
        if not args.keep:
            path.unlink()

    reference = rows[BASE_QUANT]
    for row in rows.values():
        row["perplexity_ratio"] = round(row["perplexity"] / reference["perplexity"], 4)
        row["same_top_token"] = round(sum(a == b for a, b in zip(row["top"], reference["top"])) / len(row["top"]), 4)
        row["perplexity"] = round(row["perplexity"], 4)
    print(f"Qwen2.5-Coder-1.5B-Instruct requantized from {BASE_QUANT}; {reference['scored']} tokens scored of "
          f"{args.pdf.name} pages {args.pages[0]} to {args.pages[1]}")
    print(f"{'quant':<8} {'file GB':>8} {'perplexity':>11} {'× ' + BASE_QUANT:>9} {'same top token':>15}")
    for quant in [*SMALLER, BASE_QUANT]:
        if quant in rows:
            row = rows[quant]
            print(f"{quant:<8} {row['size_gb']:>8.3f} {row['perplexity']:>11.3f} {row['perplexity_ratio']:>9.3f} "
                  f"{row['same_top_token']:>15.3f}")
    if args.json:
        args.json.write_text(json.dumps({"pdf": args.pdf.name, "pages": list(args.pages), "tokens": args.tokens, "quants": {
            quant: {key: value for key, value in row.items() if key != "top"} for quant, row in rows.items()}},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
