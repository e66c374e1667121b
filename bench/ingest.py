"""Ingestion speed: docqa's index build against the original tutorial's pipeline, side by side in one run.

Each pipeline runs in a process of its own, which is timed and whose peak resident memory is read from wait4().
docqa (db_build.py) builds the index of the whole corpus from scratch (--rebuild), then runs again with nothing
changed. The tutorial (bench/tutorial_ingest.py) needs over 20 minutes on two cores for the whole corpus, so by
default it runs on a sample: every n-th page of the corpus, copied into one PDF per source file. Its pages/s then
leaves out its imports and model load (a fixed cost, in its favour), and the ratio compares pages/s. --full runs the
tutorial on the whole corpus and compares wall times end to end.

    .venv/bin/python bench/ingest.py [--tutorial-sample 400 | --full] [--tutorial-index FOLDER] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from measure import CACHE, CORPUS, PYTHON, REPO, Measured, checked, run_measured

sys.path.insert(0, str(REPO / "src"))

from docqa.documents import EXTRACTORS, find_pdfs, page_count  # noqa: E402


def docqa_config(cache: Path, extractor: str) -> Path:
    """The config of docqa's bench index: default settings over the corpus, the index in the cache folder."""
    return cache / f"docqa-{extractor}" / "config.yml"


def write_docqa_config(config: Path, corpus: Path, extractor: str) -> None:
    import yaml

    config.parent.mkdir(parents=True, exist_ok=True)
    paths = {"data": str(corpus), "vectorstore": str(config.parent / "vectorstore"), "models": str(REPO / "models")}
    config.write_text(yaml.safe_dump({"paths": paths, "ingest": {"extractor": extractor}}), encoding="utf-8")


def measure_docqa(config: Path) -> dict:
    """A one-time ONNX export if none exists yet (not timed as ingestion), a full build, then a no-change run."""
    export = ("import sys; sys.path.insert(0, sys.argv[1]); from docqa.settings import load_settings; "
              "from docqa.embeddings import ensure_onnx_export; ensure_onnx_export(load_settings(sys.argv[2]))")
    checked(run_measured([PYTHON, "-c", export, str(REPO / "src"), str(config)]), "the ONNX export")
    build = checked(run_measured([PYTHON, str(REPO / "db_build.py"), "--config", str(config), "--rebuild", "--json"]),
                    "docqa's build")
    report = json.loads(build.stdout)
    rerun = checked(run_measured([PYTHON, str(REPO / "db_build.py"), "--config", str(config), "--json"], quiet=True),
                    "docqa's no-change run")
    return {**_figures(build), "pages": report["pages"], "chunks": report["chunks"],
            "skipped": {s["name"]: s["reason"] for s in report["skipped"]}, "no_change_seconds": rerun.seconds}


def write_page_sample(corpus: Path, folder: Path, pages: int) -> int:
    """Every n-th page of the corpus, so that about ``pages`` pages of every kind are in; returns how many."""
    import pypdfium2 as pdfium

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pdfs = find_pdfs(corpus)
    counts = [page_count(path) for path in pdfs]
    step = max(1, sum(counts) // pages)
    position = written = 0
    for path, count in zip(pdfs, counts):
        chosen = [index for index in range(count) if (position + index) % step == 0]
        position += count
        if chosen:
            sample = pdfium.PdfDocument.new()
            sample.import_pages(pdfium.PdfDocument(path), chosen)
            sample.save(folder / path.name)
            written += len(chosen)
    return written


def measure_tutorial(data: Path, save: Path | None) -> dict:
    command = [PYTHON, str(REPO / "bench" / "tutorial_ingest.py"), str(data)] + (["--save", str(save)] if save else [])
    run = checked(run_measured(command), "the tutorial's build")
    return {**_figures(run), **json.loads(run.stdout.strip().splitlines()[-1])}


def _figures(run: Measured) -> dict:
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "peak_rss_mib": run.peak_rss_mib}


def compare(docqa: dict, tutorial: dict, corpus_pages: int, full: bool) -> dict:
    phases = tutorial["phases"]
    ours = docqa["pages"] / docqa["seconds"]
    if full:
        theirs = tutorial["pages"] / tutorial["seconds"]
        estimate = tutorial["seconds"]
    else:
        theirs = tutorial["pages"] / (phases["extract_and_split"] + phases["embed_and_index"])
        estimate = phases["imports"] + phases["model_load"] + corpus_pages / theirs
    return {
        "docqa_pages_per_s": ours,
        "docqa_chunks_per_s": docqa["chunks"] / docqa["seconds"],
        "tutorial_pages_per_s": theirs,
        "tutorial_extract_split_pages_per_s": tutorial["pages"] / phases["extract_and_split"],
        "tutorial_embed_chunks_per_s": tutorial["chunks"] / phases["embed_and_index"],
        "tutorial_corpus_seconds": estimate,
        "speedup": ours / theirs,
    }


def print_report(docqa: dict, tutorial: dict, result: dict, full: bool) -> None:
    scope = "whole corpus" if full else f"sample of {tutorial['pages']} pages; whole corpus estimated"
    print(f"docqa     {docqa['pages']} pages, {docqa['chunks']} chunks in {docqa['seconds']:.1f} s: "
          f"{result['docqa_pages_per_s']:.1f} pages/s, {result['docqa_chunks_per_s']:.1f} chunks/s, "
          f"peak RSS {docqa['peak_rss_mib']:.0f} MiB")
    print(f"          no-change re-run: {docqa['no_change_seconds']:.2f} s; skipped: {docqa['skipped'] or 'none'}")
    print(f"tutorial  {tutorial['pages']} pages, {tutorial['chunks']} chunks in {tutorial['seconds']:.1f} s ({scope}): "
          f"{result['tutorial_pages_per_s']:.1f} pages/s (extraction and splitting "
          f"{result['tutorial_extract_split_pages_per_s']:.1f} pages/s, embedding "
          f"{result['tutorial_embed_chunks_per_s']:.1f} chunks/s), peak RSS {tutorial['peak_rss_mib']:.0f} MiB")
    print(f"          whole corpus: {result['tutorial_corpus_seconds'] / 60:.1f} min")
    print(f"speed-up  {result['speedup']:.2f}x pages/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--cache", type=Path, default=CACHE / "ingest", help="where both indexes and the sample go")
    parser.add_argument("--extractor", choices=EXTRACTORS, default="pypdfium2", help="docqa's text extractor")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--tutorial-sample", type=int, default=400, metavar="PAGES",
                       help="pages of the corpus the tutorial runs on (default 400)")
    scope.add_argument("--full", action="store_true", help="run the tutorial on the whole corpus")
    parser.add_argument("--tutorial-index", type=Path, metavar="FOLDER",
                        help="save the tutorial's index there with FAISS.save_local (bench/query.py reads it)")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"skipped: {args.corpus} not found")
        return 0

    config = docqa_config(args.cache, args.extractor)
    write_docqa_config(config, args.corpus, args.extractor)
    docqa = measure_docqa(config)
    data = args.corpus
    if not args.full:
        data = args.cache / f"tutorial-sample-{args.tutorial_sample}"
        write_page_sample(args.corpus, data, args.tutorial_sample)
    tutorial = measure_tutorial(data, args.tutorial_index)
    result = compare(docqa, tutorial, docqa["pages"], args.full)
    print_report(docqa, tutorial, result, args.full)
    if args.json:
        print(json.dumps({"docqa": docqa, "tutorial": tutorial, "comparison": result, "full": args.full}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
