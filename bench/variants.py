"""Index variants on a part of the corpus: build speed and retrieval recall of each, in one run.

Each variant is docqa's default settings with one change (the text extractor, int8 chunk vectors...). All build
an index of the same FinanceBench filings, by default the 12 that the most questions of
../shared/eval/financebench_dev.jsonl ask about, and are scored on the questions about those filings with
`docqa.evaluate` (the hit rule of docs/evaluation.md). A part of the corpus keeps a run to minutes; recall on it
is higher than on the whole corpus (fewer documents to confuse), so compare variants with each other only.

    .venv/bin/python bench/variants.py [--documents 12] [--only NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

from measure import CACHE, REPO, add_evaluation_options, evaluation_data_missing

sys.path.insert(0, str(REPO / "src"))

from docqa.documents import find_pdfs  # noqa: E402
from docqa.evaluate import evaluate  # noqa: E402
from docqa.settings import load_settings  # noqa: E402

KS = (1, 2, 4, 8, 16)
VARIANTS = {
    "default": {},
    "pypdf": {"ingest": {"extractor": "pypdf"}},
    "fp32-chunks": {"embeddings": {"chunk_precision": "fp32"}},
    "bf16-chunks": {"embeddings": {"chunk_precision": "bf16"}},
    "int8-chunks": {"embeddings": {"chunk_precision": "int8"}},
}


def most_asked(gold: list[dict], corpus: Path, count: int) -> list[Path]:
    asked = Counter(question["doc"] for question in gold)
    paths = {path.name: path for path in find_pdfs(corpus)}
    return [paths[name] for name, _ in asked.most_common() if name in paths][:count]


def write_subset(documents: list[Path], gold: list[dict], folder: Path) -> tuple[Path, Path]:
    """A data folder with copies of the documents, and the gold file of the questions about them."""
    data = folder / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for document in documents:
        shutil.copy2(document, data / document.name)
    names = {document.name for document in documents}
    subset = folder / "gold.jsonl"
    subset.write_text("".join(json.dumps(q) + "\n" for q in gold if q["doc"] in names), encoding="utf-8")
    return data, subset


def measure(name: str, changes: dict, data: Path, gold: Path, folder: Path) -> dict:
    import yaml

    from docqa.ingest import build_index
    from docqa.qa import DocQA

    config = folder / name / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    paths = {"data": str(data), "vectorstore": str(config.parent / "vectorstore"), "models": str(REPO / "models")}
    config.write_text(yaml.safe_dump({"paths": paths, **changes}), encoding="utf-8")
    settings = load_settings(config)
    report = build_index(settings, rebuild=True)
    print(f"{name}: {report.summary()}", file=sys.stderr)
    build = {"pages": report.pages, "chunks": report.chunks, "build_seconds": report.seconds,
             "pages_per_s": report.pages / report.seconds, "chunks_per_s": report.chunks / report.seconds}
    with DocQA(settings, retrieval_only=True) as qa:
        return {**build, **evaluate(qa, gold, KS)}


def print_report(results: dict, questions: int, documents: int) -> None:
    names = list(results)
    print(f"{questions} questions about {documents} filings, one index per variant, each built from scratch")
    print(f"{'':<24}" + "".join(f"{name:>14}" for name in names))
    rows = [("build pages/s", "pages_per_s", "{:>14.1f}"), ("build chunks/s", "chunks_per_s", "{:>14.1f}"),
            ("chunks", "chunks", "{:>14d}")]
    rows += [(f"recall@{k}", f"recall@{k}", "{:>14.3f}") for k in KS] + [("mrr", "mrr", "{:>14.3f}")]
    rows += [("context chars (mean)", "context_chars_mean", "{:>14.0f}")]
    for label, key, form in rows:
        print(f"{label:<24}" + "".join(form.format(results[name][key]) for name in names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_evaluation_options(parser)
    parser.add_argument("--documents", type=int, default=12, help="filings to index (the most asked about)")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="measure these variants only")
    parser.add_argument("--cache", type=Path, default=CACHE / "variants")
    args = parser.parse_args()
    if evaluation_data_missing(args):
        return 0
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    gold = [json.loads(line) for line in args.gold.read_text(encoding="utf-8").splitlines() if line.strip()]
    documents = most_asked(gold, args.corpus, args.documents)
    data, subset = write_subset(documents, gold, args.cache)
    questions = sum(1 for line in subset.read_text(encoding="utf-8").splitlines() if line.strip())
    results = {name: measure(name, VARIANTS[name], data, subset, args.cache) for name in args.only or VARIANTS}
    print_report(results, questions, len(documents))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
