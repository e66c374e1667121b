"""Answer accuracy end to end: docqa's pipeline or the original tutorial's, with the same real model, on a gold file.

Indexes the PDFs of --corpus (each pipeline its own index, in ~/.cache/docqa-bench, reused while the PDFs and the
settings are unchanged), asks every selected question, writes one JSON line per question to --out (id, question,
answer, sources, timings, and whether the answer is correct by docs/evaluation.md's rule) and prints one summary
JSON object as the last line of stdout. Rerunning with the same --out skips the questions already answered there.

- ``--pipeline docqa`` goes through docqa's library (``DocQA``) with the settings of --config (default: the
  defaults), the corpus as data folder and the index in the cache.
- ``--pipeline tutorial`` retrieves as the tutorial does (PyPDFLoader pages, RecursiveCharacterTextSplitter 500/50,
  all-MiniLM-L6-v2 on torch, flat FAISS, k=2; the index bench/retrieval.py builds) and prompts with the card's
  template (``plain``), through the same LLM backend and settings, so that the comparison isolates what docqa's
  retrieval and prompting add.

    .venv/bin/python bench/answers.py --model "$(python bench/real_models.py qwen)" --pipeline docqa \\
        --split report --out runs/docqa.jsonl [--gold FILE] [--corpus DIR] [--k N] [--format F] [--config C]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from ingest import docqa_config, write_docqa_config
from measure import CACHE, CORPUS, GOLD, REPO

sys.path.insert(0, str(REPO / "src"))

from docqa.errors import BuildLockedError, DocqaError, StoreError  # noqa: E402
from docqa.evaluate import GoldQuestion, Retrieved, file_name, is_hit, read_gold  # noqa: E402
from docqa.grading import grade  # noqa: E402
from docqa.documents import find_pdfs  # noqa: E402
from docqa.qa import Answer, DocQA, Source  # noqa: E402
from docqa.retrieval import Searched  # noqa: E402
from docqa.settings import Settings, load_settings  # noqa: E402

TUTORIAL_K = 2
DEFAULT_MAX_NEW_TOKENS = 64  # answers are a figure and a sentence; two cores shared by many make every token count
SPLITS = ("all", "tuning", "report")


# ---------------------------------------------------------------- which questions


def split_questions(questions: list[GoldQuestion], half: str) -> list[GoldQuestion]:
    """A fixed split of a gold file in two halves: ids sorted, even positions tune, odd positions report.

    It depends on nothing but the ids, so every run and every helper gets the same halves."""
    if half == "all":
        return questions
    order = {qid: position for position, qid in enumerate(sorted(q.id for q in questions))}
    parity = 0 if half == "tuning" else 1
    return [q for q in questions if order[q.id] % 2 == parity]


def gold_lines(path: Path) -> dict[str, dict]:
    """The raw lines of the gold file by id, for the fields read_gold leaves out (the free-text ``answer``)."""
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    return {str(item["id"]): item for item in lines}


def gradable(gold: GoldQuestion, line: dict) -> bool:
    return grade("", answers=gold.answers, reference=line.get("answer")) is not None


# ---------------------------------------------------------------- the indexes


def corpus_fingerprint(corpus: Path) -> str:
    """Changes when a PDF of the corpus is added, removed, renamed or rewritten; not when the same files are copied
    anew (their times change, not their bytes: a fresh copy must not cost a 30-minute rebuild)."""
    digest = hashlib.sha256()
    for pdf in sorted(p for p in corpus.rglob("*") if p.suffix.lower() == ".pdf" and p.is_file()):
        digest.update(f"{pdf.relative_to(corpus)}\0{hashlib.sha256(pdf.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def docqa_settings(args: argparse.Namespace) -> Settings:
    """--config's settings (default: the defaults) over the corpus, with the LLM and prompt of this run and the index
    brought up to date in the cache: with the default index settings on the default corpus, the index bench/ingest.py
    and bench/retrieval.py use (one build serves them all); otherwise a folder per corpus and index settings."""
    from docqa.ingest import index_fingerprint

    base = load_settings(args.config) if args.config else Settings()
    if args.corpus.resolve() == CORPUS.resolve() and index_fingerprint(base) == index_fingerprint(Settings()):
        extractor = base.ingest.extractor
        config = docqa_config(CACHE / "ingest", extractor)
        write_docqa_config(config, args.corpus, extractor)
        shared = built(load_settings(config))
        return with_run_settings(base.model_copy(update={"paths": shared.paths}), args)
    key = hashlib.sha256(json.dumps([str(args.corpus.resolve()), index_fingerprint(base)], sort_keys=True).encode())
    paths = base.paths.model_copy(update={
        "data": args.corpus.resolve(),
        "vectorstore": CACHE / "answers" / f"docqa-{key.hexdigest()[:12]}",
        "models": REPO / "models",
    })
    return with_run_settings(built(base.model_copy(update={"paths": paths})), args)


def built(settings: Settings) -> Settings:
    """``settings`` after its index is brought up to date (rebuilt if made with other settings); waits while another
    benchmark builds the same index."""
    from docqa.ingest import build_index

    while True:
        try:
            report = build_index(settings)
            break
        except BuildLockedError:
            print("another build of this index is running; waiting", file=sys.stderr, flush=True)
            time.sleep(30)
        except StoreError as error:  # an index of other settings in that folder: start it again
            print(f"docqa: {error}; rebuilding", file=sys.stderr)
            report = build_index(settings, rebuild=True)
            break
    for skipped in report.skipped:
        print(f"docqa skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    print(f"docqa index {settings.paths.vectorstore}: {report.summary()}", file=sys.stderr)
    return settings


def with_run_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    llm = settings.llm.model_copy(update={"model_path": args.model.resolve(), "max_new_tokens": args.max_new_tokens,
                                          **({"threads": args.threads} if args.threads else {})})
    update = {"llm": llm}
    if args.format:
        update["prompt"] = settings.prompt.model_copy(update={"format": args.format})
    if args.k:
        update["retrieval"] = settings.retrieval.model_copy(update={"k": args.k})
    return settings.model_copy(update=update)


def tutorial_index(corpus: Path) -> Path:
    """The tutorial's FAISS.save_local folder for this corpus: bench/retrieval.py's (vectors from torch) if it is
    there, else one built here with the tutorial's pages and chunks (see build_tutorial_index)."""
    fingerprint = corpus_fingerprint(corpus)
    default = corpus.resolve() == CORPUS.resolve()
    exact = CACHE / "tutorial-langchain"
    if default and (exact / "index.faiss").is_file() and _stamp_matches(exact, fingerprint):
        return exact
    folder = CACHE / f"tutorial-langchain-bf16-{fingerprint}"
    if not (folder / "index.faiss").is_file():
        build_tutorial_index(corpus, folder)
    return folder


def _stamp_matches(folder: Path, fingerprint: str) -> bool:
    """True for a folder stamped with this corpus or not stamped yet (then it is stamped now)."""
    stamp = folder / "answers-corpus.txt"
    if not stamp.is_file():
        stamp.write_text(fingerprint)
    return stamp.read_text().strip() == fingerprint


def build_tutorial_index(corpus: Path, folder: Path) -> None:
    """The tutorial's index with its own pages, chunks and FAISS flat L2 index, the chunk vectors computed by
    docqa's chunk embedder (bf16 on OpenVINO where the CPU has it: cosine >= 0.99996 to torch, README
    "Embeddings") instead of torch: four times faster, which a shared two-core machine needs. Questions are still
    embedded by the tutorial's HuggingFaceEmbeddings on torch when the index is searched."""
    from langchain_community.document_loaders import DirectoryLoader, PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from docqa.embeddings import create_embedder

    started = time.perf_counter()
    print(f"building the tutorial's index of {corpus} in {folder}...", file=sys.stderr, flush=True)
    documents = DirectoryLoader(str(corpus), glob="**/*.pdf", loader_cls=PyPDFLoader).load()
    chunks = RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50).split_documents(documents)
    print(f"{len(documents)} pages, {len(chunks)} chunks in {time.perf_counter() - started:.0f} s; embedding",
          file=sys.stderr, flush=True)
    settings = Settings()
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"models": REPO / "models"})})
    texts = [chunk.page_content for chunk in chunks]
    vectors = create_embedder(settings, documents=True).embed_documents(texts)
    store = FAISS.from_embeddings(list(zip(texts, vectors.tolist())), embedding=_no_queries(),
                                  metadatas=[chunk.metadata for chunk in chunks])
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    store.save_local(str(partial))
    (partial / "answers-corpus.txt").write_text(corpus_fingerprint(corpus))
    partial.rename(folder)
    print(f"tutorial index built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def _no_queries():
    """FAISS.from_embeddings wants an Embeddings object; searching loads the tutorial's own (torch) instead."""
    from langchain_core.embeddings import Embeddings

    class NoQueries(Embeddings):
        def embed_query(self, text):
            raise NotImplementedError

        def embed_documents(self, texts):
            raise NotImplementedError

    return NoQueries()


class TutorialQA(DocQA):
    """The tutorial's retrieval behind DocQA's question path: the same prompt building, LLM and timings."""

    def __init__(self, settings: Settings, corpus: Path):
        from retrieval import tutorial_retriever

        started = time.perf_counter()
        self._prepare(settings)  # what DocQA.__init__ sets up, less its index and retriever
        folder = tutorial_index(corpus)
        self.tutorial = tutorial_retriever(corpus, folder)
        self.names = tuple(sorted(path.name for path in find_pdfs(corpus)))  # the tutorial searches them all
        print(f"tutorial index {folder}: {self.tutorial.chunks} chunks", file=sys.stderr)
        self._use_llm(self._load_llm())
        self.load_seconds = self._unreported_load = time.perf_counter() - started

    def search(self, question: str, *, k=None, doc=None) -> tuple[list[Source], Searched]:
        found = self.tutorial.faiss.similarity_search_with_score(question, k=k or self.settings.retrieval.k)
        sources = [
            Source(Path(d.metadata["source"]).name, d.metadata["page"], d.metadata["page"] + 1, d.page_content,
                   round(float(distance), 6), chunk_id=-1)  # the tutorial's FAISS store has no chunk rows
            for d, distance in found
        ]
        return sources, Searched("all", self.names)

    def close(self) -> None:
        pass


def open_pipeline(args: argparse.Namespace) -> DocQA:
    if args.pipeline == "docqa":
        return DocQA(docqa_settings(args))
    settings = Settings()
    settings = settings.model_copy(update={
        "retrieval": settings.retrieval.model_copy(update={"k": TUTORIAL_K}),
        "prompt": settings.prompt.model_copy(update={"format": "plain"}),  # the card's template as it is
    })
    return TutorialQA(with_run_settings(settings, args), args.corpus)


# ---------------------------------------------------------------- asking and scoring


def record(gold: GoldQuestion, line: dict, answer: Answer, max_new_tokens: int) -> dict:
    evidence = [is_hit(gold, Retrieved(s.document, s.page_index, s.text)) for s in answer.sources]
    return {
        "id": gold.id,
        "doc": gold.doc,
        "question": gold.question,
        "answer": answer.answer,
        "correct": grade(answer.answer, answers=gold.answers, reference=line.get("answer")),
        "answered": answer.answered,
        "evidence_in_prompt": any(evidence),
        "capped": answer.timings.tokens >= max_new_tokens,
        "sources": [{"document": s.document, "page_index": s.page_index, "text": s.text, "score": s.score}
                    for s in answer.sources],
        "timings": asdict(answer.timings),
        "notes": answer.notes,
    }


def summarize(records: list[dict], args: argparse.Namespace, settings: Settings | None = None) -> dict:
    """The summary line; without ``settings`` (--summarize) the format and k are those given on the command line."""
    graded = [r for r in records if r.get("correct") is not None]
    answered = [r for r in records if "error" not in r]
    count = len(answered) or 1
    return {
        "pipeline": args.pipeline,
        "model": args.model.name,
        "format": settings.prompt.format if settings else args.format,
        "k": settings.retrieval.k if settings else args.k,
        "max_new_tokens": args.max_new_tokens,
        "split": args.split,
        "questions": len(records),
        "graded": len(graded),
        "correct": sum(r["correct"] for r in graded),
        "accuracy": round(sum(r["correct"] for r in graded) / len(graded), 4) if graded else None,
        "abstained": sum(r.get("answered") is False for r in answered),
        "errors": len(records) - len(answered),
        "evidence_in_prompt": sum(bool(r.get("evidence_in_prompt")) for r in answered),
        "capped": sum(bool(r.get("capped")) for r in answered),
        "seconds_per_question": round(sum(r["timings"]["total"] for r in answered) / count, 2),
        "prompt_tokens_mean": round(sum(r["timings"]["prompt_tokens"] for r in answered) / count, 1),
    }


def previous_records(out: Path) -> dict[str, dict]:
    if not out.is_file():
        return {}
    records = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if "error" not in item:  # a failed question is asked again
                records[item["id"]] = item
    return records


def _model_file(value: str) -> Path:
    """--model: a path, or "demo" as docqa's own --model takes it (its errors advise it)."""
    from docqa.demo import DEMO, demo_model_path

    return demo_model_path() if value.lower() == DEMO else Path(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--model", type=_model_file, required=True,
                        help="a GGUF file (bench/real_models.py finds them), or demo: the tiny demo model")
    parser.add_argument("--pipeline", choices=("docqa", "tutorial"), default="docqa")
    parser.add_argument("--k", type=int, help="passages in the prompt (default: docqa's retrieval.k; tutorial 2)")
    parser.add_argument("--format", choices=("auto", "plain", "llama-2-chat", "gguf"),
                        help="prompt.format (default: the config's for docqa; plain, the card's, for the tutorial)")
    parser.add_argument("--config", type=Path, help="docqa's settings (default: the defaults)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--threads", type=int, help="llm.threads (default: the config's; all cores). On a machine "
                        "shared with other work, 1 avoids llama.cpp's threads waiting on each other at every token")
    parser.add_argument("--split", choices=SPLITS, default="all", help="half of the gold file (see split_questions)")
    parser.add_argument("--gradable", action="store_true",
                        help="only questions the grading rule can grade (with answers, or numbers in the gold answer)")
    parser.add_argument("--limit", type=int, help="only the first N questions of the selection")
    parser.add_argument("--out", type=Path, required=True, help="one JSON line per question; rerun to resume")
    parser.add_argument("--summarize", action="store_true",
                        help="only print the summary of the selected questions already answered in --out")
    args = parser.parse_args()
    if not args.corpus.is_dir() or not args.gold.is_file():
        if (args.corpus, args.gold) != (CORPUS, GOLD):  # named by the user: a typo, not a machine without the corpus
            parser.error(f"{args.gold if not args.gold.is_file() else args.corpus} not found")
        print(f"skipped: needs {args.corpus} and {args.gold}")
        return 0
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    lines = gold_lines(args.gold)
    questions = split_questions(read_gold(args.gold), args.split)
    if args.gradable:
        questions = [q for q in questions if gradable(q, lines[q.id])]
    questions = questions[: args.limit]
    indexed = {p.name for p in args.corpus.rglob("*.pdf")}
    missing = sorted({file_name(q.doc) for q in questions} - indexed)
    if missing:
        print(f"warning: not in the corpus, their questions will miss: {', '.join(missing)}", file=sys.stderr)
    done = previous_records(args.out)
    if args.summarize:
        print(json.dumps(summarize([done[q.id] for q in questions if q.id in done], args)))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        qa = open_pipeline(args)
    except DocqaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with qa, open(args.out, "a", encoding="utf-8") as out:
        todo = [q for q in questions if q.id not in done]
        print(f"{len(questions)} questions, {len(questions) - len(todo)} already in {args.out}", file=sys.stderr)
        for number, gold in enumerate(todo, 1):
            try:
                item = record(gold, lines[gold.id], qa.ask(gold.question), args.max_new_tokens)
            except DocqaError as error:
                item = {"id": gold.id, "question": gold.question, "error": str(error)}
            done[gold.id] = item
            out.write(json.dumps(item) + "\n")
            out.flush()
            mark = {True: "right", False: "wrong", None: "ungraded"}[item.get("correct")] if "error" not in item else "error"
            print(f"[{number}/{len(todo)}] {gold.id} {mark} "
                  f"{item.get('timings', {}).get('total', 0):.1f} s: {(item.get('answer') or item.get('error', ''))[:100]!r}",
                  file=sys.stderr, flush=True)
        summary = summarize([done[q.id] for q in questions if q.id in done], args, qa.settings)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
