"""The raw side of bench/llm.py: one backend's library called directly, with nothing of docqa in the process.

    python bench/llm_raw.py SPEC_JSON    # one line of JSON: load, prompt_tokens, prompt_eval, token_times, max_rss

SPEC_JSON holds backend (llama-cpp or ctransformers), model, prompt, threads, context_length, batch_size,
temperature and new_tokens. Generation runs exactly new_tokens tokens: nothing checks for the end-of-text
token, which random weights could produce. Times are in seconds; prompt_eval and token_times count from the
end of loading, so that token_times[0] is the time to the first token.
"""

from __future__ import annotations

import json
import sys
import time
from itertools import islice


def run_llama_cpp(spec: dict) -> dict:
    started = time.perf_counter()
    import llama_cpp

    model = llama_cpp.Llama(
        model_path=spec["model"],
        n_ctx=spec["context_length"],
        n_batch=spec["batch_size"],
        n_threads=spec["threads"],
        n_threads_batch=spec["threads"],
        use_mmap=True,
        verbose=False,
    )
    loaded = time.perf_counter()
    # A prompt rendered from a chat template holds special tokens (<|im_start|>), parsed as docqa parses them.
    tokens = model.tokenize(spec["prompt"].encode(), add_bos=True, special=spec.get("special", False))
    model.eval(tokens)
    evaluated = time.perf_counter()
    # generate() finds the prompt already evaluated and samples at once; each later step evaluates the previous token.
    generated = islice(model.generate(tokens, temp=spec["temperature"]), spec["new_tokens"])
    token_times = [time.perf_counter() - loaded for _ in generated]
    return _result(loaded - started, len(tokens), evaluated - loaded, token_times)


def run_ctransformers(spec: dict) -> dict:
    started = time.perf_counter()
    from ctransformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        spec["model"],
        model_type="llama",
        local_files_only=True,
        context_length=spec["context_length"],
        threads=spec["threads"],
        batch_size=spec["batch_size"],
    )
    loaded = time.perf_counter()
    tokens = model.tokenize(spec["prompt"])
    model.eval(tokens)
    evaluated = time.perf_counter()
    token_times = []
    for _ in range(spec["new_tokens"]):
        # What ctransformers' generate() does per token, without its end-of-text check.
        model.eval([model.sample(temperature=spec["temperature"])])
        token_times.append(time.perf_counter() - loaded)
    return _result(loaded - started, len(tokens), evaluated - loaded, token_times)


def _result(load: float, prompt_tokens: int, prompt_eval: float, token_times: list[float]) -> dict:
    import resource

    # Peak resident memory in bytes (Linux counts kilobytes), the model's mapped pages included.
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"load": load, "prompt_tokens": prompt_tokens, "prompt_eval": prompt_eval, "token_times": token_times,
            "max_rss": max_rss}


RUNNERS = {"llama-cpp": run_llama_cpp, "ctransformers": run_ctransformers}

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(RUNNERS[spec["backend"]](spec)))
