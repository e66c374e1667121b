"""The ``docqa`` command: one subcommand per job, each a thin function over the library.

    docqa ask "question"        docqa build            docqa list
    docqa batch FILE --out FILE docqa each-doc ...     docqa evaluate GOLD     docqa download

``docqa`` reads the config.yml of the folder it runs in (``--config`` elsewhere). ``main.py``, ``db_build.py``
and ``download_model.py`` are the same commands for this checkout, under the flags they always had.
This is the only place where domain errors become a one-line message and an exit code.
Results go to stdout; progress, warnings and errors go to stderr.

To add a subcommand, write a function that adds its arguments and one that runs it, and register them with
``@command(name, help, arguments)`` below; ``COMMANDS`` is the registry.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import signal
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from docqa.checkout import CHECKOUT
from docqa.documents import shown
from docqa.errors import DocqaError, InputError, advice_for
from docqa.signals import Stopped, stopped_as_interrupt

EXIT_NO_ANSWER = 1
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


def run(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], *, project: Optional[Path] = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; every failure ends as one line on stderr and an exit code."""
    argv = config_after_command(list(sys.argv[1:] if argv is None else argv))
    if "--version" in argv:  # wherever it stands, also after a subcommand the entry point put first
        argv = ["--version"]
    if sys.stderr is None:  # closed (2>&-): progress and notes go nowhere, never into the results on stdout
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    stdout = sys.stdout
    sys.stdout = _Results(stdout)  # --help and --version too: their text is the results
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help, or a usage error argparse has already printed
            sys.stdout.flush()
            return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
        args.project = project
        args.prog = _typed_prog(parser.prog, project)  # how the user runs docqa, for the commands notes advise
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(AdvisingFormatter(args.prog, args.config))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
        code = args.run(args)
        sys.stdout.flush()  # results still buffered fail here, not unnoticed at exit
        return code
    except ResultsUnwritable as error:
        print(f"error: {error}", file=sys.stderr)
        _discard_results(stdout)
        return error.exit_code
    except DocqaError as error:
        print(f"error: {shown(advice_for(str(error), args.prog, args.config))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stopped:
        print("interrupted", file=sys.stderr)
        return 128 + stopped.signum if isinstance(stopped, Stopped) else EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0
    except Exception as error:
        if os.environ.get("DOCQA_DEBUG"):
            raise
        print(f"error: unexpected {type(error).__name__}: {error} (set DOCQA_DEBUG=1 to see where)", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        sys.stdout = stdout


class AdvisingFormatter(logging.Formatter):
    """Warnings on stderr with the commands they advise as this user types them, as errors and notes have them: a
    damaged FAISS file's "python db_build.py writes it again", or the server's "run: docqa build --config config.yml"
    (said to its clients by the path in the project), acted on the checkout's index when followed as written."""

    def __init__(self, prog: str, config: Optional[str]):
        super().__init__("%(levelname)s: %(message)s")
        self.prog, self.config = prog, config

    def format(self, record: logging.LogRecord) -> str:
        return advice_for(super().format(record), self.prog, self.config)


class ResultsUnwritable(DocqaError):
    """Standard output takes no results: closed when the command started (``>&-``, where print() dropped them
    without a word), or failing (a full disk)."""

    exit_code = 2


class _Results:
    """Standard output, whose failures are said as such (they were 'unexpected OSError', or nothing at all)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._checked(lambda stream: stream.write(text))

    def flush(self) -> None:
        if self._stream is not None:  # closed, with nothing written: a progress bar flushes it too
            self._checked(lambda stream: stream.flush())

    def _checked(self, call):
        if self._stream is None:
            raise ResultsUnwritable("the results cannot be written to standard output: it is closed")
        try:
            return call(self._stream)
        except BrokenPipeError:  # a reader that stopped (head): not a failure
            raise
        except OSError as error:
            raise ResultsUnwritable(f"the results cannot be written to standard output "
                                    f"({error.strerror or error})") from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _discard_results(stream) -> None:
    """After standard output failed: what stays buffered goes nowhere at exit instead of failing again there."""
    try:
        if stream is not None and stream.fileno() == 1:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
    except (OSError, ValueError, AttributeError):  # no file behind it (a test's capture)
        pass


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated function as subcommand ``name``; ``arguments`` adds its options to its parser."""

    def register(function: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, arguments, function)
        return function

    return register


def _typed_prog(prog: str, project: Optional[Path]) -> str:
    """``prog``, or for a script of the checkout run from another folder, its path: what advice names."""
    if prog.endswith(".py") and project is not None and Path.cwd().resolve() != project.resolve():
        return str(project / prog)
    return prog


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line, as docqa's other errors are: argparse printed its whole
    usage block first, a screen of options for `evaluate --k 1 2 x`, with the reason on its last line."""

    def error(self, message: str, prog: Optional[str] = None):
        prog = prog or self.prog
        self.exit(2, f"{prog}: error: {message} ({prog} --help lists the options)\n")

    def parse_args(self, args=None, namespace=None):
        # A subcommand's unknown options are refused by the top parser, which named itself and its own help.
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command = getattr(parsed, "command", None)
            self.error(f"unrecognized arguments: {' '.join(unknown)}", f"{self.prog} {command}" if command else None)
        return parsed


def parser(prog: str = "docqa", epilog: Optional[str] = None) -> argparse.ArgumentParser:
    top = _Parser(prog=prog, description="Private question answering over local PDF documents.",
                                  epilog=epilog)
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in COMMANDS.values():
        sub = subcommands.add_parser(entry.name, help=entry.help, description=entry.help)
        sub.add_argument("--config", metavar="PATH", help="settings file (default: config.yml in the project folder)")
        entry.arguments(sub)
        sub.set_defaults(run=entry.run)
    return top


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("docqa")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _settings(args: argparse.Namespace):
    """The project's settings, with the model of ``--model`` where the command has that option."""
    from docqa.demo import use_model
    from docqa.settings import load_settings

    return use_model(load_settings(args.config, project=args.project), getattr(args, "model", None))


def _positive(value: str) -> int:
    from docqa.qa import MAX_K

    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    if number > MAX_K:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_K:,}")
    return number


def _question(value: Optional[str]) -> str:
    """A question from the command line; bytes that are not UTF-8 reach Python as lone surrogates."""
    question = (value or "").strip()
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(f"the question is not valid UTF-8 text (at character {error.start + 1}); "
                         "check the terminal's encoding") from None
    return question


def _retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retrieval-only", action="store_true", help="show the retrieved passages; no LLM needed")
    parser.add_argument("--k", type=_positive, metavar="N", help="passages to retrieve (default: retrieval.k in config)")
    parser.add_argument("--doc", metavar="PATTERN", action="append",
                        help="only search documents whose file name matches this glob; repeat it for several")
    _model_argument(parser)


def _doc(args: argparse.Namespace):
    """``--doc``: None, one pattern, or the list of those given (a document matching any of them is searched)."""
    return None if not args.doc else args.doc[0] if len(args.doc) == 1 else args.doc


def _model_argument(parser: argparse.ArgumentParser,
                    use: str = "answer with this model file instead of llm.model_path") -> None:
    parser.add_argument("--model", metavar="demo|PATH",
                        help=f"{use}; 'demo': the tiny SmolLM2 that installs with docqa (offline, no download; weak "
                             "answers)")


# ---------------------------------------------------------------- entry points


def main(argv: Optional[Sequence[str]] = None, prog: str = "docqa") -> int:
    """The ``docqa`` console script (``prog``: how it was run, ``python -m docqa`` too): the project is the folder
    it runs in."""
    return run(parser(prog, epilog=DOCQA_EPILOG), argv, project=Path.cwd())


def console_main() -> None:
    """The ``docqa`` console script's entry point."""
    exit_process(main())


def exit_process(code: int) -> None:
    """End the process of a command-line script with ``code``. Stopped (Ctrl-C, kill, a closed terminal), it ends at
    once once the output is flushed, without the interpreter's teardown: that met the embedding runtime's native
    threads and aborted the process ("terminate called without an active exception", exit 134) in 4 of 30 builds
    interrupted while they embedded; everything worth keeping is written and closed by then."""
    if code in (EXIT_INTERRUPTED, 128 + signal.SIGTERM, 128 + signal.SIGHUP):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):  # closed, or a reader gone: nothing more to say there
                pass
        os._exit(code)
    sys.exit(code)


DOCQA_EPILOG = ("Inside a project folder, its config.yml is used (--config PATH elsewhere). "
                "docqa COMMAND --help describes each command.")
MAIN_PY_EPILOG = ('python main.py "question" is python main.py ask "question": python main.py ask --help gives the '
                  "options a question takes (--json, --doc, --k, --retrieval-only, --model). The flags --batch FILE, "
                  "--each-doc and --evaluate GOLD still choose batch, each-doc and evaluate.")


def ask_main(argv: Optional[Sequence[str]] = None) -> int:
    """main.py: a question, a subcommand, or the flags main.py had before subcommands."""
    argv = config_after_command(list(sys.argv[1:] if argv is None else argv))
    return run(parser("main.py", MAIN_PY_EPILOG), _main_py_command(argv), project=CHECKOUT)


def build_main(argv: Optional[Sequence[str]] = None) -> int:
    """db_build.py: build the index; ``--list`` lists it."""
    argv = config_after_command(list(sys.argv[1:] if argv is None else argv))
    if not (argv and argv[0] in COMMANDS):
        argv = ["build", *argv]
    return run(parser("db_build.py"), argv, project=CHECKOUT)


def download_main(argv: Optional[Sequence[str]] = None) -> int:
    """download_model.py: download the model."""
    argv = config_after_command(list(sys.argv[1:] if argv is None else argv))
    if not (argv and argv[0] == "download"):  # taken as well: its help's usage line shows it
        argv = ["download", *argv]
    return run(parser("download_model.py"), argv, project=CHECKOUT)


def config_after_command(argv: list[str]) -> list[str]:
    """``--config PATH`` before the command (``docqa --config p/config.yml list``) is that command's option: left
    there, the command's name was read as a question, or as an unknown command."""
    if len(argv) >= 3 and argv[0] == "--config" and argv[2] in COMMANDS:
        return [argv[2], *argv[:2], *argv[3:]]
    if len(argv) >= 2 and argv[0].startswith("--config=") and argv[1] in COMMANDS:
        return [argv[1], argv[0], *argv[2:]]
    return argv


def _main_py_command(argv: list[str]) -> list[str]:
    """main.py's arguments as a subcommand: --evaluate GOLD, --batch FILE and --each-doc name the command."""
    if (argv and argv[0] in COMMANDS) or argv in (["-h"], ["--help"]):
        return argv
    if "--each-doc" in argv:
        return ["each-doc", *[arg for arg in argv if arg != "--each-doc"]]
    for flag in ("--evaluate", "--batch"):
        value, rest = _take_option(argv, flag)
        if value is not None:
            return [flag[2:], value, *rest]
        if flag in argv:  # without its file: the command says it needs one ("unrecognized arguments: --evaluate")
            return [flag[2:], *[arg for arg in argv if arg != flag]]
    return ["ask", *argv]


def _take_option(argv: list[str], flag: str) -> tuple[Optional[str], list[str]]:
    for index, arg in enumerate(argv):
        # an option after the flag is none of its file (--evaluate --k 1 4 gold.jsonl): the file comes later
        if arg == flag and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            return argv[index + 1], argv[:index] + argv[index + 2:]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1], argv[:index] + argv[index + 1:]
    return None, argv


# ---------------------------------------------------------------- ask


def _ask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="?", help="the question, in quotes")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    _retrieval_arguments(parser)


@command("ask", "Ask a question about the indexed PDF documents.", _ask_arguments)
def ask(args: argparse.Namespace) -> int:
    from docqa.qa import DocQA

    question = _question(args.question)
    if not question:
        raise InputError('no question given; usage: python main.py "your question"')
    stream = None if args.json else _TokenWriter()
    # On a terminal, a line saying what the model is reading until its first token (a 7B model on a CPU takes tens
    # of seconds over the prompt): the screen stayed blank as if docqa hung
    waiting = stream.reading if stream and not args.retrieval_only and sys.stderr.isatty() else None
    with DocQA(_settings(args), retrieval_only=args.retrieval_only) as qa:
        qa.advice_prog = args.prog
        try:
            answer = qa.ask(question, doc=_doc(args), k=args.k, on_token=stream, on_sources=waiting)
        finally:
            if stream:
                stream.stop_reading()  # also where the model failed: its message has a line of its own
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        _print_notes(answer.notes, args)
    else:
        print_answer(answer, args)
    if answer.answered is False:
        print("note: the model found no answer in the retrieved passages", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0


class _TokenWriter:
    """Writes an answer as it is generated, without the blank it may start with (a server's completion often
    begins with a line break), as the answer itself is kept."""

    def __init__(self) -> None:
        self.started = False
        self._reading = False  # the line on stderr saying what the model reads is shown

    def reading(self, found) -> None:
        """``ask``'s ``on_sources``: until the first token, one line on the terminal's stderr."""
        documents = len({source.document for source in found.sources})
        count = len(found.sources)
        sys.stderr.write(f"docqa: the model is reading {count} passage{'' if count == 1 else 's'} from {documents} "
                         f"document{'' if documents == 1 else 's'}…")
        sys.stderr.flush()
        self._reading = True

    def stop_reading(self) -> None:
        if self._reading:
            sys.stderr.write("\r\033[K")  # the line is taken back: the answer follows on stdout
            sys.stderr.flush()
            self._reading = False

    def __call__(self, piece: str) -> None:
        self.stop_reading()
        if not self.started:
            piece = piece.lstrip()
            self.started = bool(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()


def print_answer(answer, args: argparse.Namespace) -> None:
    """The text form of an answer whose text was already streamed: notes, sources, timings."""
    out = sys.stdout
    if answer.answer is not None:
        out.write("\n\n")
    _print_notes(answer.notes, args)
    print("Sources:" if answer.sources else "Sources: none found in the index", file=out)
    for number, source in enumerate(answer.sources, 1):
        print(f"[{number}] {shown(source.document)}, page {source.page_number} (page index {source.page_index}), "
              f"score {source.score:.4f}", file=out)
        print(textwrap.indent(source.text.strip(), "    "), file=out)
    if answer.searched is not None:
        print(f"Searched: {shown(answer.searched.summary())}", file=out)
    print(format_timings(answer.timings), file=out)


def _print_notes(notes, args: argparse.Namespace) -> None:
    """On stderr; a command a note advises (the demo's download) as this user types it, with their --config."""
    for note in notes:
        print(f"note: {advice_for(note, args.prog, args.config)}", file=sys.stderr)


def _say_if_demo(args: argparse.Namespace, qa, answered: int) -> None:
    """After many answers, once: the demo model's note, which each record carries but nobody reads on screen."""
    from docqa.demo import NOTE_MANY, is_demo

    if not args.retrieval_only and is_demo(qa.settings.llm) and answered:
        _print_notes([NOTE_MANY], args)


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


# ---------------------------------------------------------------- build, list


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rebuild", action="store_true", help="re-read and re-embed every file")
    parser.add_argument("--list", action="store_true", help="show what is indexed instead of building (docqa list)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


@command("build", "Build or update the index of the PDFs in the data folder.", _build_arguments)
def build(args: argparse.Namespace) -> int:
    from docqa.documents import name_as_text
    from docqa.errors import DocumentError
    from docqa.ingest import BuildInterrupted, BuildReport, build_index
    from docqa.progress import counted_bar

    if args.list:
        if args.rebuild:
            raise InputError("--list shows the index; it does not go with --rebuild")
        return list_documents(args)
    settings = _settings(args)
    signals: list[int] = []
    try:
        # kill or a closed terminal stops the build as Ctrl-C does: the documents finished are kept
        with stopped_as_interrupt() as signals, counted_bar("pages") as (on_total, progress):
            report = build_index(settings, rebuild=args.rebuild, on_total=on_total, progress=progress)
    except BuildInterrupted as interrupted:
        report = interrupted.report
    except KeyboardInterrupt:
        # A rebuild is switched in whole or not at all; an update stopped here had changed nothing yet (still
        # finding or hashing the files): its reading and committing stop by BuildInterrupted
        kept = ("the rebuild was stopped before it finished; the index is as it was before it" if args.rebuild else
                "the build was stopped before it changed anything; the index is as it was")
        print(f"interrupted: {kept}", file=sys.stderr)
        if args.json:  # the object an interrupted update prints, so that a script reads either alike
            print(json.dumps({**BuildReport(interrupted=True, notes=[kept]).__dict__, "documents": None}, indent=2))
        return 128 + signals[0] if signals else EXIT_INTERRUPTED
    if not args.json:  # which files, not only how many ("1 removed" said nothing of which); --json lists them all
        for kind in ("added", "updated", "renamed", "removed"):
            names = getattr(report, kind)
            for name in names[:NAMED_CHANGES]:
                was = f"{shown(report.renamed_from[name])} -> " if kind == "renamed" else ""
                print(f"{kind} {was}{shown(name)}", file=sys.stderr)
            if len(names) > NAMED_CHANGES:
                print(f"... and {len(names) - NAMED_CHANGES} more {kind} (--json lists them all)", file=sys.stderr)
    for skipped in report.skipped:
        print(f"skipped {shown(skipped.name)}: {skipped.reason}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {shown(note)}", file=sys.stderr)
    if args.json:
        # a name that is not UTF-8 as the text output shows it: JSON's "\udce9" for it is refused by jq
        skipped = [{"name": name_as_text(s.name), "reason": s.reason} for s in report.skipped]
        print(json.dumps({**report.__dict__, "skipped": skipped}, indent=2))
    else:
        print(report.summary())
    if report.interrupted:
        return 128 + signals[0] if signals else EXIT_INTERRUPTED
    return DocumentError.exit_code if report.skipped else 0


NAMED_CHANGES = 20  # files of each kind a build names on stderr


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list")


@command("list", "Show what is indexed: file, pages, chunks, when.", _list_arguments)
def list_documents(args: argparse.Namespace) -> int:
    from docqa.storage import open_reader

    from docqa.profiles import describe

    with open_reader(_settings(args)) as store:
        documents, copies, first_pages = store.documents(), store.copies(), store.first_page_texts()
    # What the first page says each is (company, form, period): what a question naming them is matched against
    labels = {record.name: describe(first_pages.get(record.name, "")).label for record in documents}
    copies_of: dict[str, list[str]] = {}
    for copy, twin in sorted(copies.items()):
        copies_of.setdefault(twin, []).append(copy)
    if args.json:
        print(json.dumps([{**record.__dict__, "label": labels[record.name], "copies": copies_of.get(record.name, [])}
                          for record in documents], indent=2))
        return 0
    for record in documents:
        # files with the same content, indexed once under this name: on its line, so that its first field stays
        # the names of the documents
        also = copies_of.get(record.name, [])
        copied = f"\talso as: {', '.join(shown(copy) for copy in also)} (the same file, indexed once)" if also else ""
        print(f"{shown(record.name)}\t{record.pages} pages\t{record.chunks} chunks\t{record.indexed_at}\t"
              f"{labels[record.name] or '-'}{copied}")
    print(f"{len(documents)} documents, {sum(r.pages for r in documents)} pages, {sum(r.chunks for r in documents)} chunks")
    return 0


# ---------------------------------------------------------------- batch, each-doc


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE",
                        help="questions: a text file (one per line), JSONL (question, id, doc) or CSV (question column)")
    parser.add_argument("--out", metavar="FILE", required=True,
                        help="answers: .jsonl or .csv; rerunning with the same file skips the ids already answered")
    _retrieval_arguments(parser)


@command("batch", "Answer a file of questions with the model loaded once; resumable.", _batch_arguments)
def batch(args: argparse.Namespace) -> int:
    from docqa.batch import BatchOutput, read_questions, run_batch
    from docqa.batch.writers import same_file
    from docqa.llm.factory import configured_model_name
    from docqa.qa import DocQA

    if same_file(Path(args.out), Path(args.file)):
        raise InputError("--out must not be the questions file")
    questions = read_questions(args.file)
    settings = _settings(args)
    # --out's problems (a typo, another program's data, a run writing it, another model's answers) before the
    # model's minutes of loading
    model = None if args.retrieval_only else configured_model_name(settings.llm)
    BatchOutput(args.out, answers=not args.retrieval_only, questions=questions, doc=_doc(args), model=model).check()
    written = 0  # this run's answers, each in --out as soon as it came

    def count(record: dict) -> None:
        nonlocal written
        written += not record["error"]

    with DocQA(settings, retrieval_only=args.retrieval_only) as qa:
        qa.advice_prog = args.prog
        try:
            with stopped_as_interrupt():
                summary = run_batch(qa, questions, args.out, k=args.k, doc=_doc(args), progress=True, on_record=count)
        except KeyboardInterrupt:
            print(f"{written} answer{'s' if written != 1 else ''} of this run {'are' if written != 1 else 'is'} in "
                  f"{shown(args.out)}; the same command goes on with the rest", file=sys.stderr)
            raise
    print(summary.text(args.out), file=sys.stderr)
    _say_if_demo(args, qa, summary.answered)
    return 1 if summary.failed else 0


def _each_doc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="?", help="the question, in quotes (or --batch FILE)")
    parser.add_argument("--batch", metavar="FILE", help="several questions, in a file as for docqa batch")
    parser.add_argument("--out", metavar="FILE", help="the table: .csv or .md (default: Markdown on stdout)")
    _retrieval_arguments(parser)


@command("each-doc", "Ask each question of every indexed document (or those matching --doc): one row per "
         "document, answer and page per question.", _each_doc_arguments)
def each_doc(args: argparse.Namespace) -> int:
    from docqa.batch import Question, read_questions, run_each_doc, table_format
    from docqa.batch.each_doc import each_doc_documents
    from docqa.qa import DocQA

    question = _question(args.question)
    if question and args.batch:
        raise InputError("each-doc takes a question or --batch FILE, not both")
    if not question and not args.batch:
        raise InputError("each-doc needs a question or --batch FILE")
    fmt = table_format(Path(args.out) if args.out else None)
    if args.out:
        _check_table_target(Path(args.out), args.batch)
    questions = read_questions(args.batch) if args.batch else [Question("q1", question)]
    if scoped := [q.id for q in questions if q.doc]:
        # each-doc asks every document (or --doc's) in turn: a question's own doc would be passed over unsaid
        # the batch command as this user runs docqa: main.py's flags as advice writes them (the CLI boundary gives
        # them the script's path and the --config), or the subcommand
        config = f" --config {shlex.quote(args.config)}" if args.config else ""
        batch = "python main.py --batch" if args.prog.endswith("main.py") else f"{args.prog} batch{config}"
        raise InputError(f"each-doc asks each document in turn, so the \"doc\" of question {scoped[0]} in {args.batch} "
                         f"would not be used; choose the documents with --doc, or ask with "
                         f"{batch} {shlex.quote(args.batch)} --out FILE")
    from docqa.batch.table_file import table_file

    with DocQA(_settings(args), retrieval_only=args.retrieval_only) as qa, stopped_as_interrupt(), \
            table_file(args.out, fmt, say=lambda text: print(text, file=sys.stderr)) as handle:
        qa.advice_prog = args.prog
        failed = run_each_doc(qa, questions, handle, fmt, doc=_doc(args), k=args.k, progress=True)
        cells = len(questions) * len(each_doc_documents(qa, _doc(args)))
    _say_if_demo(args, qa, answered=cells - failed)
    if failed:
        print(f"{failed} answer{'s' if failed != 1 else ''} failed; the table shows the errors", file=sys.stderr)
    return 1 if failed else 0


def _check_table_target(out: Path, questions_file: Optional[str]) -> None:
    """Refuse an --out whose contents a table would destroy: the questions file, a batch's answers, anything else."""
    from docqa.batch.writers import check_writable, holds_a_table, same_file

    if questions_file and same_file(out, Path(questions_file)):
        raise InputError("--out must not be the questions file")
    if not holds_a_table(out):
        raise InputError(f"--out {out} holds something other than an each-doc table; choose another file, or "
                         "delete it first")
    check_writable(out)  # before the model loads; the table is written beside it, then renamed


# ---------------------------------------------------------------- evaluate


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gold", metavar="GOLD", nargs="?", help="gold JSONL file (see docs/evaluation.md)")
    parser.add_argument("--k", nargs="+", action=_Cutoffs, metavar="N", help="cut-offs to score (default: 1 2 4 8 16)")
    parser.add_argument("--details", metavar="FILE", help="write one JSON line per question with its hits and ranks")
    parser.add_argument("--per-doc", action="store_true",
                        help="also score with retrieval restricted to each question's gold document")
    _model_argument(parser, "count the context's tokens with this model's tokenizer (else llm.model_path's, where "
                            "it exists; else characters / 4)")


class _Cutoffs(argparse.Action):
    """``--k 1 2 4``, also where the gold file follows (``evaluate --k 1 2 4 gold.jsonl``): --k takes every word
    after it, so GOLD was read as a cut-off ("invalid whole number: 'gold.jsonl'"). The words after the numbers are
    kept aside and taken as GOLD where none came before --k."""

    def __call__(self, parser, namespace, values, option_string=None):
        numbers = list(itertools.takewhile(lambda value: value.isdigit() or value.lstrip("+-").isdigit(), values))
        try:
            setattr(namespace, self.dest, [_positive(value) for value in numbers or values[:1]])
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument --k: {error}")
        namespace.after_cutoffs = values[len(numbers):]


def _a_file(word: str) -> bool:
    """Whether a word after --k names a file rather than mistyping a cut-off."""
    return os.path.exists(word) or "/" in word or "." in word.lstrip("+-.0123456789")


def _gold_after_cutoffs(args: argparse.Namespace) -> None:
    rest = getattr(args, "after_cutoffs", [])
    if args.gold is None and len(rest) == 1:
        args.gold = rest[0]
    elif rest and (args.gold is not None or len(rest) > 1) and all(_a_file(word) for word in rest):
        files = [args.gold, *rest] if args.gold is not None else rest
        raise InputError(f"evaluate scores one gold file, not {len(files)} ({', '.join(files)}); run it once for each")
    elif rest:
        raise InputError(f"--k: invalid whole number: {rest[0]!r} (one gold file is scored, before or after the "
                         "cut-offs)")
    elif args.gold is None:
        raise InputError(f"evaluate needs a gold file: {args.prog} evaluate GOLD [--k N ...] (its format is in "
                         "docs/evaluation.md)")


@command("evaluate", "Score retrieval against a gold file; no LLM needed.", _evaluate_arguments)
def evaluate_retrieval(args: argparse.Namespace) -> int:
    from docqa.batch.writers import check_writable, same_file
    from docqa.evaluate import (DEFAULT_KS, check_details_file, check_gold_indexed, evaluate, llm_token_counter,
                                read_gold)
    from docqa.progress import Progress
    from docqa.qa import DocQA

    _gold_after_cutoffs(args)
    questions = read_gold(args.gold)  # a bad gold file fails before any model loads
    settings = _settings(args)
    count_tokens = llm_token_counter(settings)
    if args.model and count_tokens is None:  # asked for by name (a missing file is refused before): no estimate
        model = settings.llm.model_path
        raise InputError(f"--model {model}: evaluate counts tokens with a GGUF model's tokenizer (llama-cpp), "
                         "and this file gives none")
    if args.details:  # before the index loads, so that a path that cannot be written fails at once
        if args.details == "-":  # it made a file named "-"
            raise InputError("--details needs a file name: the scores go to standard output")
        if same_file(Path(args.details), Path(args.gold)):
            raise InputError("--details must not be the gold file")
        check_details_file(Path(args.details))
        check_writable(Path(args.details))
    with DocQA(settings, retrieval_only=True) as qa:
        check_gold_indexed(qa, questions)  # before the progress bar starts
        with Progress(len(questions)) as bar:
            result = evaluate(qa, args.gold, args.k or DEFAULT_KS, per_doc=args.per_doc, details=args.details,
                              count_tokens=count_tokens, progress=bar.advance, questions=questions)
    if result.get("documents_not_indexed"):
        print(f"warning: gold documents not in the index: {', '.join(result['documents_not_indexed'])}",
              file=sys.stderr)
    for beyond in result.get("gold_pages_beyond_document", []):
        pages = beyond["pages"]
        print(f"warning: question {beyond['id']}: gold page {'index' if len(pages) == 1 else 'indices'} "
              f"{', '.join(map(str, pages))} past the end of {beyond['doc']} ({beyond['document_pages']} "
              f"page{'s' if beyond['document_pages'] != 1 else ''}, indices 0 to {beyond['document_pages'] - 1}); "
              + ("only its other pages can be found" if beyond["findable"] else "it can never be found"),
              file=sys.stderr)
    if shifted := result.get("gold_pages_look_one_based"):
        print(f"warning: for {shifted['questions']} of the {shifted['with_answers']} questions with answers, an answer "
              "string stands on the page before a gold page: are the gold pages numbered as a viewer shows them? A "
              "gold file gives 0-based page indices (the page number minus 1)", file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


# ---------------------------------------------------------------- download


def _download_arguments(parser: argparse.ArgumentParser) -> None:
    from docqa.llm.catalog import DEFAULT_QUANT, GGML_MODEL, GGUF_MODEL, GGUF_REPO, QUANTIZATIONS

    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--quant", choices=list(QUANTIZATIONS), default=DEFAULT_QUANT,
                        help=f"which quantization of {GGUF_REPO} (default: %(default)s; README: size, memory, quality)")
    choice.add_argument("--ggml", action="store_true",
                        help=f"the model card's GGML v3 file {GGML_MODEL.filename} (default: {GGUF_MODEL.filename})")
    choice.add_argument("--repo", metavar="OWNER/NAME", help="any GGUF chat model: its repository on the Hugging Face hub")
    parser.add_argument("--file", metavar="NAME.gguf", help="with --repo: the GGUF file to download")


@command("download", "Download a chat model (Llama-2-7B-Chat by default) into the models folder.", _download_arguments)
def download_model(args: argparse.Namespace) -> int:
    from docqa.download import fetch_model
    from docqa.llm.catalog import chosen_model

    model = chosen_model(ggml=args.ggml, quant=args.quant, repo=args.repo, file=args.file)
    settings = _settings(args)
    path, fetched = fetch_model(model, settings.path(settings.paths.models))
    print(f"saved {path}" if fetched else f"{path} is already present; nothing to download")
    if path != settings.path(settings.llm.model_path):
        advice = f"set llm.model_path: {path}"
        if args.repo:  # another model family: its own chat template, not Llama-2's [INST] or the card's text
            advice += " and prompt.format: gguf"
        print(f"to use it, {advice} in the configuration")
    return 0


# ---------------------------------------------------------------- serve


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1); "
                                       "any other than loopback needs the API token variable set")
    parser.add_argument("--port", type=int, help="TCP port (default: serve.port, 8000)")
    parser.add_argument("--retrieval-only", action="store_true", help="serve passages only; no language model loaded")
    _model_argument(parser)


@command("serve", "Serve the web app and the HTTP API.", _serve_arguments)
def serve_app(args: argparse.Namespace) -> int:
    from docqa.server import serve

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"docqa: serving http://{shown}:{port}/ (API documentation at /docs); Ctrl-C stops", file=sys.stderr)

    serve(_settings(args), host=args.host, port=args.port, retrieval_only=args.retrieval_only, on_ready=ready)
    print("docqa: stopped", file=sys.stderr)
    return 0
