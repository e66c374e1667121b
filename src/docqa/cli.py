"""Command-line entry points behind main.py and db_build.py.

This is the only place where domain errors become a one-line message and an exit code.
Results go to stdout; progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

from docqa.errors import DocqaError

EXIT_NO_ANSWER = 1
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def run(command: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> int:
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return command(args)
    except DocqaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0
    except Exception as error:
        if os.environ.get("DOCQA_DEBUG"):
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (set DOCQA_DEBUG=1 to see where)", file=sys.stderr)
        return EXIT_UNEXPECTED


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="settings file (default: config.yml in the project folder)")


# ---------------------------------------------------------------- db_build.py


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="db_build.py", description="Build or update the index of the PDFs in the data folder.")
    _config_argument(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rebuild", action="store_true", help="re-read and re-embed every file")
    group.add_argument("--list", action="store_true", help="show what is indexed and exit")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def build_main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_build, build_parser(), argv)


def _build(args: argparse.Namespace) -> int:
    from docqa.errors import DocumentError
    from docqa.settings import load_settings

    settings = load_settings(args.config)
    if args.list:
        return _list_index(settings, args.json)
    from docqa.ingest import build_index

    with _progress_bar("pages") as (on_total, progress):
        report = build_index(settings, rebuild=args.rebuild, on_total=on_total, progress=progress)
    for skipped in report.skipped:
        print(f"skipped {skipped.name}: {skipped.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report.__dict__, "skipped": [s.__dict__ for s in report.skipped]}, indent=2))
    else:
        print(report.summary())
    return DocumentError.exit_code if report.skipped else 0


def _list_index(settings, as_json: bool) -> int:
    from docqa.store import Store

    with Store(settings.path(settings.paths.vectorstore)) as store:
        documents = store.documents()
    if as_json:
        print(json.dumps([record.__dict__ for record in documents], indent=2))
        return 0
    for record in documents:
        print(f"{record.name}\t{record.pages} pages\t{record.chunks} chunks\t{record.indexed_at}")
    print(f"{len(documents)} documents, {sum(r.pages for r in documents)} pages, {sum(r.chunks for r in documents)} chunks")
    return 0


@contextmanager
def _progress_bar(unit: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A tqdm bar on stderr, created once the total is known, so that it can estimate the time left."""
    from tqdm import tqdm

    bars: list = []

    def on_total(total: int) -> None:
        bars.append(tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5))

    def progress(count: int) -> None:
        if bars:
            bars[0].update(count)

    try:
        yield on_total, progress
    finally:
        for bar in bars:
            bar.close()


# ---------------------------------------------------------------- main.py


class _AskParser(argparse.ArgumentParser):
    """``--k`` takes several values; a question written after them (``--k 4 "question"``) stays the question."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        spill = getattr(namespace, "k_spill", None) or []
        if spill:
            if namespace.question is not None or len(spill) > 1:
                self.error(f"--k: invalid whole number: {spill[0]!r}")
            namespace.question = spill[0]
        if hasattr(namespace, "k_spill"):
            del namespace.k_spill
        return namespace, extras


class _KValues(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        ks, spill = [], []
        for value in values:
            if not spill:
                try:
                    ks.append(int(value))
                    continue
                except ValueError:
                    pass
            spill.append(value)
        if not ks:
            parser.error(f"--k: invalid whole number: {values[0]!r}")
        setattr(namespace, self.dest, ks)
        namespace.k_spill = spill


def ask_parser() -> argparse.ArgumentParser:
    parser = _AskParser(prog="main.py", description="Ask a question about the indexed PDF documents.")
    parser.add_argument("question", nargs="?", help="the question, in quotes")
    _config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--retrieval-only", action="store_true", help="show the retrieved passages; no LLM needed")
    parser.add_argument("--k", nargs="+", action=_KValues, metavar="N",
                        help="passages to retrieve (default: retrieval.k in config); "
                             "with --evaluate, the cut-offs to score (default: 1 2 4 8 16)")
    parser.add_argument("--doc", metavar="PATTERN", help="only search documents whose file name matches this glob")
    parser.add_argument("--model", metavar="demo|PATH",
                        help="answer with this model file instead of llm.model_path; 'demo': the tiny SmolLM2 that "
                             "installs with docqa (offline, no download; weak answers)")
    batch = parser.add_argument_group("batch", "many questions, the model loaded once")
    batch.add_argument("--batch", metavar="FILE",
                       help="questions: a text file (one per line), JSONL (question, id, doc) or CSV (question column)")
    batch.add_argument("--out", metavar="FILE",
                       help="answers: .jsonl or .csv; rerunning with the same file skips the ids already answered. "
                            "With --each-doc: .csv or .md (default: Markdown on stdout)")
    batch.add_argument("--each-doc", action="store_true",
                       help="ask each question of every indexed document (or those matching --doc): "
                            "one row per document, answer and page per question")
    evaluation = parser.add_argument_group("evaluation", "retrieval scored against a gold file; no LLM needed")
    evaluation.add_argument("--evaluate", metavar="GOLD", help="gold JSONL file (see docs/evaluation.md)")
    evaluation.add_argument("--details", metavar="FILE", help="write one JSON line per question with its hits and ranks")
    evaluation.add_argument("--per-doc", action="store_true",
                            help="also score with retrieval restricted to each question's gold document")
    return parser


def ask_main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    return run(_ask, ask_parser(), argv)


def _ask(args: argparse.Namespace) -> int:
    from docqa.demo import use_model
    from docqa.errors import InputError
    from docqa.qa import DocQA
    from docqa.settings import load_settings

    _check_ask_arguments(args)
    if args.evaluate:
        return _evaluate(args)
    if args.batch or args.each_doc:
        return _run_batch(args)
    question = (args.question or "").strip()
    if not question:
        raise InputError('no question given; usage: python main.py "your question"')
    settings = use_model(load_settings(args.config), args.model)
    stream = None if args.json else _write_token
    with DocQA(settings, retrieval_only=args.retrieval_only) as qa:
        answer = qa.ask(question, doc=args.doc, k=_single_k(args), on_token=stream)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_answer(answer)
    if answer.answered is False:
        print("note: the model found no answer in the retrieved passages", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0


def _check_ask_arguments(args: argparse.Namespace) -> None:
    from docqa.errors import InputError

    if args.k is not None and min(args.k) < 1:
        raise InputError("--k must be 1 or more")
    if args.evaluate:
        clashes = [flag for flag, given in (("a question", args.question), ("--batch", args.batch), ("--out", args.out),
                                            ("--each-doc", args.each_doc), ("--doc", args.doc)) if given]
        if clashes:
            raise InputError(f"--evaluate cannot be combined with {', '.join(clashes)}")
        return
    for flag, given in (("--details", args.details), ("--per-doc", args.per_doc)):
        if given:
            raise InputError(f"{flag} only applies to --evaluate")
    if args.k is not None and len(args.k) > 1:
        raise InputError("--k takes several values only with --evaluate")
    if args.batch and args.question:
        raise InputError("give either a question or --batch FILE, not both")
    if args.batch and not args.each_doc and not args.out:
        raise InputError("--batch needs --out FILE (.jsonl or .csv)")
    if args.out and not (args.batch or args.each_doc):
        raise InputError("--out only applies to --batch or --each-doc")


def _single_k(args: argparse.Namespace) -> Optional[int]:
    return args.k[0] if args.k else None


def _run_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from docqa.batch import Question, TableWriter, read_questions, run_batch, run_each_doc
    from docqa.demo import use_model
    from docqa.errors import InputError
    from docqa.qa import DocQA
    from docqa.settings import load_settings

    if args.each_doc:
        table_format = TableWriter.format_for(Path(args.out) if args.out else None)
    if args.batch:
        if args.out and Path(args.out).resolve() == Path(args.batch).resolve():
            raise InputError("--out must not be the --batch file")
        questions = read_questions(args.batch)
    else:
        question = (args.question or "").strip()
        if not question:
            raise InputError("--each-doc needs a question or --batch FILE")
        questions = [Question("q1", question)]
    settings = use_model(load_settings(args.config), args.model)
    with DocQA(settings, retrieval_only=args.retrieval_only) as qa:
        if args.each_doc:
            with _open_output(args.out) as handle:
                failed = run_each_doc(qa, questions, handle, table_format, doc=args.doc, k=_single_k(args),
                                      progress=True)
            if failed:
                print(f"{failed} answers failed; the table shows their errors", file=sys.stderr)
            return 1 if failed else 0
        summary = run_batch(qa, questions, args.out, k=_single_k(args), doc=args.doc, progress=True)
    print(summary.text(args.out), file=sys.stderr)
    return 1 if summary.failed else 0


@contextmanager
def _open_output(path: Optional[str]):
    if path is None:
        yield sys.stdout
        return
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        yield handle


def _evaluate(args: argparse.Namespace) -> int:
    from docqa.batch import Progress
    from docqa.demo import use_model
    from docqa.evaluate import DEFAULT_KS, evaluate, llm_token_counter, read_gold
    from docqa.qa import DocQA
    from docqa.settings import load_settings

    questions = read_gold(args.evaluate)  # a bad gold file fails before any model loads
    settings = use_model(load_settings(args.config), args.model)
    count_tokens = llm_token_counter(settings)
    with DocQA(settings, retrieval_only=True) as qa, Progress(len(questions)) as bar:
        result = evaluate(qa, args.evaluate, args.k or DEFAULT_KS, per_doc=args.per_doc, details=args.details,
                          count_tokens=count_tokens, progress=bar.advance)
    if result.get("documents_not_indexed"):
        print(f"warning: gold documents not in the index: {', '.join(result['documents_not_indexed'])}",
              file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _write_token(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def print_answer(answer) -> None:
    """The text form of an answer whose text was already streamed: notes, sources, timings."""
    out = sys.stdout
    if answer.answer is not None:
        out.write("\n\n")
    for note in answer.notes:
        print(f"note: {note}", file=sys.stderr)
    print("Sources:" if answer.sources else "Sources: none found in the index", file=out)
    for number, source in enumerate(answer.sources, 1):
        print(f"[{number}] {source.document}, page {source.page_number} (page index {source.page_index}), "
              f"score {source.score:.4f}", file=out)
        print(textwrap.indent(source.text.strip(), "    "), file=out)
    print(format_timings(answer.timings), file=out)


def format_timings(timings) -> str:
    parts = [f"load {timings.load:.2f} s", f"retrieval {timings.retrieval:.2f} s"]
    if timings.generation is not None:
        if timings.first_token is not None:
            parts.append(f"first token {timings.first_token:.2f} s")
        rate = f", {timings.tokens_per_second:.1f} tokens/s" if timings.tokens_per_second else ""
        parts.append(f"generation {timings.generation:.2f} s ({timings.tokens} tokens{rate})")
    parts.append(f"total {timings.total:.2f} s")
    if timings.backend:
        parts.append(f"backend {timings.backend}")
    return "Timings: " + " · ".join(parts)


# ---------------------------------------------------------------- main.py serve


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py serve", description="Serve the web app and the HTTP API.")
    _config_argument(parser)
    parser.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1); "
                                       "any other than loopback needs the API token variable set")
    parser.add_argument("--port", type=int, help="TCP port (default: serve.port, 8000)")
    parser.add_argument("--retrieval-only", action="store_true", help="serve passages only; no language model loaded")
    return parser


def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_serve, serve_parser(), argv)


def _serve(args: argparse.Namespace) -> int:
    from docqa.server import serve
    from docqa.settings import load_settings

    settings = load_settings(args.config)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"docqa: serving http://{shown}:{port}/ (API documentation at /docs); Ctrl-C stops", file=sys.stderr)

    serve(settings, host=args.host, port=args.port, retrieval_only=args.retrieval_only, on_ready=ready)
    return 0
