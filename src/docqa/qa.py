"""The question path: retrieve → prompt → stream the answer → a result with sources and timings.

``DocQA`` is the Python API: it loads the index, the embedding model and the LLM once, then
answers any number of questions::

    from docqa import DocQA
    with DocQA.from_config() as qa:
        answer = qa.ask("How much is the minimum guarantee payable by adidas?")
        print(answer.answer, answer.sources[0].document, answer.sources[0].page_number)
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Callable, Optional, Sequence

from docqa.errors import ClosedError, ConfigError, InputError, advice_for, advising
from docqa.reranking import load_reranker
from docqa.retrieval import Hit, Retriever, Searched
from docqa.settings import MAX_K, Settings, check_settings, load_settings
from docqa.stopping import StopSignal, take_turn
from docqa.storage import IndexReader, open_reader

TOKEN_MARGIN = 8  # room for the BOS token and tokenizer edge cases
# How a model says that the context holds no answer: the card's "just say that you don't know", and the ways
# chat models put it. Looked for in the answer's first sentence only: a real answer may go on to say what the
# documents leave out ("...; the context does not give 2021's figure"), or quote "fans who cannot find tickets".
_NO_ANSWER = re.compile(
    r"^(?:[\w\s,]*\b)?(?:i|we)\s+(?:don'?t|do not|cannot|can'?t|could not|couldn'?t|am unable to|was unable to)\s+"
    r"(?:know|find|answer|provide|determine|say|tell|locate|see)\b"
    r"|^(?:[\w\s,]*\b)?(?:i'?m|i am|we are)\s+(?:sorry|afraid|unable|not able)\b|^i\s+apologi[sz]e\b"
    r"|\b(?:context|documents?|passages?|information|text|excerpts?|report)\s+(?:provided\s+|given\s+|above\s+)?"
    r"(?:does not|doesn'?t|do not|don'?t)\s+(?:contain|include|provide|mention|state|say|specify|give|have|offer)\b"
    r"|\bthere\s+is\s+no\s+(?:information|mention|data|indication|figure)\b"
    r"|\bnot\s+(?:mentioned|provided|stated|given|found|specified|included|available)\s+in\s+the\s+"
    r"(?:provided\s+|given\s+)?(?:context|documents?|information|passages?|text)",
    re.IGNORECASE,
)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class Source:
    document: str
    page_index: int
    page_number: int
    text: str
    score: float
    chunk_id: int  # the chunk's row in the index; stable until its document is re-indexed

    @classmethod
    def from_hit(cls, hit: Hit) -> "Source":
        chunk = hit.chunk
        return cls(chunk.document, chunk.page_index, chunk.page_number, chunk.text, round(hit.score, 6), chunk.id)


@dataclass
class Timings:
    load: float = 0.0
    retrieval: float = 0.0
    first_token: Optional[float] = None
    prompt_tokens: int = 0
    generation: Optional[float] = None
    tokens: int = 0
    tokens_per_second: Optional[float] = None
    total: float = 0.0
    backend: Optional[str] = None


@dataclass
class Answer:
    question: str
    answer: Optional[str]
    sources: list[Source]
    timings: Timings
    notes: list[str] = field(default_factory=list)
    searched: Optional[Searched] = None  # which documents retrieval covered, and why
    cut_off: bool = False  # the answer ended at its token limit, not where the model ended it
    model: Optional[str] = None  # the model that answered (its file's name; a server's model name); None without one

    @property
    def answered(self) -> Optional[bool]:
        """False when the model says the documents hold no answer; None without an LLM."""
        if self.answer is None:
            return None
        first = next((part for part in _FIRST_SENTENCE.split(self.answer.strip()) if part.strip()), "")
        return bool(first) and not _NO_ANSWER.search(first.strip())

    def to_dict(self) -> dict:
        return {**asdict(self), "answered": self.answered}


CLOSED = "this DocQA is closed; load it again (DocQA.from_config) to ask more"


def check_arguments(question, k, doc) -> None:
    """InputError for what no search can take: the library's callers get the CLI's one-line reasons."""
    check_question(question)
    check_scope(k, doc)


def check_question(question) -> None:
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"the question must be text that is not blank, not {question!r}")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON and the shell can hand over a lone surrogate such as \ud800
        raise InputError(f"the question is not valid Unicode text: a lone surrogate "
                         f"{question[error.start]!r} at character {error.start + 1}") from None


def check_token_limit(limit, name: str = "max_new_tokens") -> None:
    """InputError for an answer's own token limit that is not a whole number of 1 or more (None: the configured)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 1):
        raise InputError(f"{name} must be a whole number of 1 or more, not {limit!r}")


def check_generation_arguments(on_token, stop, stop_signal, on_sources=None) -> None:
    """InputError for an ``on_token``, ``on_sources``, ``stop`` or ``stop_signal`` that ``ask`` cannot use, said
    before the search rather than as a TypeError once the model has read the prompt."""
    if on_token is not None and not callable(on_token):
        raise InputError(f"on_token must be a function that takes each piece of the answer, not {on_token!r}")
    if on_sources is not None and not callable(on_sources):
        raise InputError(f"on_sources must be a function that takes the answer's passages (an Answer without its "
                         f"answer), not {on_sources!r}")
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, (list, tuple)) or not all(isinstance(text, str) for text in stops):
        raise InputError(f"stop must be a text or a list of texts, not {stop!r}")
    if stop_signal is not None and not isinstance(stop_signal, StopSignal):
        raise InputError(f"stop_signal must be a docqa.StopSignal (its set() reaches llama.cpp), not "
                         f"{type(stop_signal).__name__}")


def check_llm(llm) -> None:
    """InputError where ``DocQA(llm=...)`` is given something other than a docqa model (None: load the configured)."""
    from docqa.llm.base import check_model

    if llm is not None:
        check_model(llm, "llm", "; a DocQALLM's own model is its .backend" if hasattr(llm, "backend") else "")


def check_scope(k, doc) -> None:
    """InputError for a ``k`` or ``doc`` no search can take (None: the defaults)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InputError(f"k must be a whole number of 1 or more, not {k!r}")
    if k is not None and k > MAX_K:
        raise InputError(f"k must be at most {MAX_K:,}, not {k:,}")
    patterns = [doc] if isinstance(doc, str) else doc
    if doc is not None and (not isinstance(patterns, (list, tuple)) or not patterns
                            or not all(isinstance(pattern, str) and pattern.strip() for pattern in patterns)):
        raise InputError(f"doc must be a file-name pattern or a list of them, not {doc!r}")


class DocQA:
    """Loaded once, asked many times. ``retrieval_only`` skips the LLM entirely.

    Safe to share between threads: ``retrieve`` and ``ask`` may run in many at once; retrieval runs side by
    side, generation one question at a time (the model has one context; the others wait their turn).
    The index is refused unless it was built with these settings (``python db_build.py --rebuild`` fixes that).
    """

    def __init__(self, settings: Settings, *, retrieval_only: bool = False, llm=None):
        """Open the index that ``settings`` (docqa.load_settings) names and load the embedding model and, unless
        ``retrieval_only``, the language model; ``llm``: a docqa model already loaded, used in place of loading
        one (and not closed with this DocQA). ``DocQA.from_config(path)`` does the loading of the settings too."""
        from docqa.embeddings import create_embedder
        from docqa.ingest import index_fingerprint

        check_settings(settings, "DocQA(...)")
        check_llm(llm)
        started = time.perf_counter()
        self._prepare(settings, llm)
        try:
            with advising(settings):
                self.store = open_reader(settings, index_fingerprint(settings))
                self.retriever = Retriever(self.store, create_embedder(settings), settings.retrieval,
                                           load_reranker(settings), settings.ingest.chunk_overlap)
                self._use_llm(None if retrieval_only else (llm or self._load_llm()))
        except BaseException:
            self.close()  # what was loaded before the failure is released, not left to the collector
            raise
        self.load_seconds = time.perf_counter() - started
        self._unreported_load = self.load_seconds

    def _prepare(self, settings: Settings, llm=None) -> None:
        """What every DocQA holds before it loads anything. A subclass that finds passages its own way (override
        ``search``; bench/answers.py's tutorial pipeline does) calls this, then ``_use_llm``, instead of __init__."""
        self.settings = settings
        # How a command that a note advises (the demo's download) is named: "python" for the checkout's scripts;
        # the command line sets how its user ran docqa ("docqa", "python -m docqa"), so that the notes in its JSON
        # and its records say what its stderr says.
        self.advice_prog = "docqa"
        self.store: Optional[IndexReader] = None
        self.retriever = None
        self.llm = None
        # Questions in progress, by thread: close() waits for them, so that it never frees the index or the model
        # under a search or a generation (llama.cpp would crash).
        self._in_progress: list[int] = []
        self._closed = False
        self._idle = threading.Condition()
        self._owns_llm = llm is None
        self._generation_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self.load_seconds = self._unreported_load = 0.0

    def _use_llm(self, llm) -> None:
        self.llm = llm
        # The model's own lock, so that its other users (docqa.langchain) take turns too.
        self._generation_lock = llm.lock if llm is not None else self._generation_lock

    @classmethod
    def from_config(cls, path: Path | str | None = None, *, model: Optional[str] = None, **kwargs) -> "DocQA":
        """The settings of a config file (config.yml without ``path``); ``model``: "demo" (the tiny demo model, no
        download) or a model file's path, in place of the configured one, as ``--model`` on the command line."""
        from docqa.demo import use_model

        return cls(use_model(load_settings(path), model), **kwargs)

    def _load_llm(self):
        from docqa.llm import create_llm
        from docqa.settings import check_one_chat_template

        check_one_chat_template(self.settings)
        return create_llm(self.settings.llm, self.settings.root)

    def close(self) -> None:
        """Release the index and the model this object loaded, once the questions in progress in other threads
        are answered; later calls raise ClosedError. Safe to call twice."""
        with self._idle:
            if threading.get_ident() in self._in_progress:
                raise InputError("close() from inside one of this DocQA's own questions (an on_token callback, "
                                 "say) would wait for itself; close it once the question returns")
            if self._owns_llm and self.llm is not None and self.llm.generating_here():
                raise InputError("close() while a stream of this DocQA's model is paused in this thread would "
                                 "free the model under it; finish or close the stream first")
            self._closed = True
            while self._in_progress:
                self._idle.wait()
        llm, self.llm = self.llm, None
        if llm is not None and self._owns_llm:
            llm.close()
        self.retriever = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> "DocQA":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def retrieve(self, question: str, *, k: Optional[int] = None, doc: Optional[str | Sequence[str]] = None) -> list[Source]:
        """The ``k`` passages that best match ``question`` (default: retrieval.k), best first, each with its document
        and page; ``doc``: only documents whose name matches this glob, or any of several. No model is used."""
        return self.search(question, k=k, doc=doc)[0]

    def search(self, question: str, *, k: Optional[int] = None,
               doc: Optional[str | Sequence[str]] = None) -> tuple[list[Source], Searched]:
        """The k best passages, and which documents were searched."""
        with self._in_use():
            doc = self.doc_patterns(doc)
            check_arguments(question, k, doc)
            result = self.retriever.search(question, k, doc)
        return [Source.from_hit(hit) for hit in result.hits], result.searched

    def checked_doc(self, doc):
        """``doc`` as the file-name patterns a search takes (``doc_patterns``), each matching an indexed document:
        InputError, naming what is indexed, before a batch writes a record of failures for each of its questions."""
        from docqa.retrieval import matching_documents

        doc = self.doc_patterns(doc)
        check_scope(None, doc)
        for pattern in [doc] if isinstance(doc, str) else doc or []:
            matching_documents(self.store, pattern)
        return doc

    def doc_patterns(self, doc):
        """``doc`` with each file given as a path (``Path("reports/nke-20190531.pdf")``) as the name it is indexed
        under, relative to the data folder: a Path was refused as no pattern."""
        if isinstance(doc, (list, tuple)):
            return type(doc)(self.doc_patterns(item) for item in doc)
        if not isinstance(doc, os.PathLike):
            return doc
        data = self.settings.path(self.settings.paths.data).resolve()
        # from where the program runs, else from the data folder (a name as the index has it)
        for path in (Path(doc).expanduser().resolve(), (data / Path(doc).expanduser()).resolve()):
            if path.is_relative_to(data) and path != data:
                return path.relative_to(data).as_posix()
        raise InputError(f"doc {doc}: not in the data folder ({data}); give a file of it, or a file-name pattern")

    @contextmanager
    def _in_use(self):
        """A search or an answer in progress, which close() waits for (a search inside an answer already
        admitted goes on)."""
        with self._idle:
            if self._closed and threading.get_ident() not in self._in_progress:
                raise ClosedError(CLOSED)
            self._in_progress.append(threading.get_ident())
        try:
            yield
        finally:
            with self._idle:
                self._in_progress.remove(threading.get_ident())
                self._idle.notify_all()

    def documents(self) -> list:
        """The indexed documents (``DocumentRecord``: name, pages, chunks, when indexed), as ``docqa list`` shows
        them; none where a subclass searches without an index."""
        with self._in_use():  # close() waits for it, as for a search
            return self.store.documents() if self.store is not None else []

    # LangChain views of this loaded instance (docqa.langchain; needs langchain-core, imported only here).
    def as_retriever(self, **fields):
        """A LangChain retriever over this index; ``fields``: ``k``, ``doc`` (a file-name glob)."""
        from docqa.langchain import DocQARetriever

        self._check_open()
        return DocQARetriever(qa=self, **fields)

    def as_llm(self, **fields):
        """A LangChain LLM over this instance's model, applying the configured prompt format."""
        from docqa.langchain import DocQALLM

        self._check_open()
        return DocQALLM.from_docqa(self, **fields)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(CLOSED)

    def as_chain(self, **retriever_fields):
        """An LCEL runnable: ``{"query": ...}`` → ``{"query", "result", "source_documents"}``, as RetrievalQA returns."""
        from docqa.langchain import retrieval_qa_chain
        from docqa.prompts import passage_order

        llm = self.as_llm()
        order = passage_order(self.settings.prompt.passage_order, llm.prompt_format, llm.backend.chat_template)
        return retrieval_qa_chain(self.as_retriever(**retriever_fields), llm, self.settings.prompt.template, order)

    def ask(
        self,
        question: str,
        *,
        doc: Optional[str | Sequence[str]] = None,
        k: Optional[int] = None,
        on_token: Optional[Callable[[str], None]] = None,
        retrieval_only: bool = False,
        max_new_tokens: Optional[int] = None,
        stop: Sequence[str] = (),
        stop_signal: Optional[StopSignal] = None,
        on_sources: Optional[Callable[[Answer], None]] = None,
    ) -> Answer:
        """Answer one question; ``on_token`` receives the answer as it is generated.

        ``doc``: a glob of document names, or several; ``retrieval_only``: the passages without an answer,
        even where a model is loaded; ``max_new_tokens``: this answer's own limit, at most llm.max_new_tokens
        (an OpenAI client's max_tokens); ``stop``: texts that end this answer, beside llm.stop;
        ``stop_signal``: a ``docqa.StopSignal`` that another thread may set to abandon the answer (AnswerStopped
        is raised), even while llama.cpp evaluates the prompt; ``on_sources``: called once with this Answer before
        the model reads the prompt (its ``answer`` still None), when its sources, ``searched`` and notes are those the
        answer will have, so that a reader sees the passages during the seconds to the first token.
        """
        check_token_limit(max_new_tokens)
        check_generation_arguments(on_token, stop, stop_signal, on_sources)
        if threading.get_ident() in self._in_progress and not retrieval_only:
            # The model is this thread's already, mid-answer: a second answer would write into the first one's.
            raise InputError("ask() from inside one of this DocQA's own answers (an on_token callback) cannot "
                             "answer; retrieve() can, or ask once the answer returns")
        started = time.perf_counter()
        timings = Timings(load=self._take_load_time())
        with self._in_use():
            sources, searched = self.search(question, k=k, doc=doc)
            timings.retrieval = time.perf_counter() - started
            result = Answer(question, None, sources, timings, searched=searched)
            if searched is not None and searched.unmet:
                result.notes.append(f"{'; '.join(searched.unmet)}: the passages, and any answer from them, may be "
                                    "about another period, form or company")
            if searched is not None and searched.unmentioned:
                names = " or ".join(searched.unmentioned)
                result.notes.append(f"no passage found mentions {names}, which the question names: they, and any "
                                    "answer from them, may be about something else")
            if searched is not None and searched.companies:
                result.notes.append(f"the passages come from {searched.companies} companies' documents, and an "
                                    "answer from them may mix their figures: name the company in the question, or "
                                    "choose its documents, for one company's answer")
            if self.llm is not None and not retrieval_only:
                take_turn(self._generation_lock, stop_signal)  # another thread may be answering
                try:
                    self._generate(result, on_token, max_new_tokens, stop, stop_signal, on_sources)
                finally:
                    self._generation_lock.release()
            elif on_sources is not None:
                on_sources(result)
        timings.total = timings.load + time.perf_counter() - started
        return result

    def _take_load_time(self) -> float:
        """Loading is reported once, with the first question of this process."""
        with self._load_lock:
            load, self._unreported_load = self._unreported_load, 0.0
        return load

    def _generate(self, result: Answer, on_token: Optional[Callable[[str], None]],
                  max_new_tokens: Optional[int] = None, stop: Sequence[str] = (),
                  stop_signal: Optional[StopSignal] = None,
                  on_sources: Optional[Callable[[Answer], None]] = None) -> None:
        """The answer to ``result``'s question from its passages, with its timings and notes, into ``result``."""
        from docqa.demo import FILE_NAME as DEMO_FILE, NOTE as DEMO_NOTE, is_demo

        prompt = self._fitted_prompt(result, max_new_tokens)
        if on_sources is not None:  # the passages that did not fit are gone from the sources by now
            on_sources(result)
        pieces = self._stream(prompt.text, result.timings, on_token, max_new_tokens, stop, stop_signal)
        # This thread's: another DocQA sharing the model (the web app's, after a build) may have generated since
        ended = self.llm.ended_here()
        self._record_generation(result.timings, pieces, ended.tokens)
        result.model = self.llm.model_name
        result.answer = "".join(pieces).strip()
        if ended.cut_off:
            result.cut_off = True
            result.notes.append(self._cut_off_note(max_new_tokens, ended.limit or ended.tokens))
        if is_demo(self.settings.llm) or self.llm.model_name == DEMO_FILE:  # also a demo model passed in
            # the download into this config's models folder, named as the user runs docqa
            result.notes.append(advice_for(DEMO_NOTE, self.advice_prog, self.settings.own_config))

    def _answer_room(self, max_new_tokens: Optional[int]) -> int:
        """The tokens kept for the answer: this answer's own limit where it is lower (more passages fit beside it)."""
        return min(max_new_tokens or self.settings.llm.max_new_tokens, self.settings.llm.max_new_tokens)

    def _prompt(self, question: str, passages: list[str], budget: int):
        from docqa.prompts import build_prompt

        llm = self.llm
        return build_prompt(self.settings.prompt, question, passages, count_tokens=llm.count_tokens,
                            token_budget=budget, chat_template=llm.chat_template, template_tokens=llm.template_tokens)

    def _fitted_prompt(self, result: Answer, max_new_tokens: Optional[int]):
        """The prompt with as many of ``result``'s passages as fit the context beside the answer's room; those left
        out are dropped from its sources, with a note. A prompt that cannot fit is refused, blaming whichever is at
        fault: the question (InputError) or the settings (ConfigError)."""
        llm = self.llm
        answer_room = self._answer_room(max_new_tokens)
        budget = llm.context_length - answer_room - TOKEN_MARGIN
        prompt = self._prompt(result.question, [source.text for source in result.sources], budget)
        if prompt.tokens >= llm.context_length:
            self._refuse_overlong_prompt(prompt, budget)
        if result.sources and not prompt.chunks_used:
            self._refuse_prompt_without_passages(result, prompt, budget, answer_room)
        if prompt.chunks_dropped:
            result.notes.append(
                f"{prompt.chunks_dropped} of {len(result.sources)} passages left out: they do not fit "
                f"the model's {llm.context_length}-token context with {answer_room} tokens for the answer"
            )
            result.sources = result.sources[: prompt.chunks_used]
        result.timings.prompt_tokens = prompt.tokens
        return prompt

    def _refuse_overlong_prompt(self, prompt, budget: int) -> None:
        """The prompt alone overflows the context. The question's fault only where a one-word one would fit: else
        the settings' (a tiny context_length)."""
        context_length = self.llm.context_length
        bare = self._prompt("?", [], budget)
        if bare.tokens >= context_length:
            raise ConfigError(f"the prompt's own text takes {bare.tokens} tokens, and the model's context holds "
                              f"{context_length}; raise llm.context_length")
        raise InputError(f"the question is too long: its prompt alone takes {prompt.tokens} tokens, and the "
                         f"model's context holds {context_length}; ask a shorter question")

    def _refuse_prompt_without_passages(self, result: Answer, prompt, budget: int, answer_room: int) -> None:
        """No passage fits: an answer would come from nothing the index holds. Whose fault: with a one-word question
        the best passage, the one the prompt takes first, would fit (the question's, 400 over HTTP), or not even
        then (the settings', 500)."""
        beside_a_word = self._prompt("?", [result.sources[0].text], budget)
        kept = (f"of the model's {self.llm.context_length}-token context, {answer_room} are kept for the answer "
                f"({'llm.max_new_tokens' if answer_room == self.settings.llm.max_new_tokens else 'max_new_tokens'})")
        if beside_a_word.chunks_used:
            raise InputError(f"no passage fits beside the question: {kept} and the question's prompt takes "
                             f"{prompt.tokens}; ask a shorter question")
        raise ConfigError(f"no passage fits beside any question: {kept}, and the prompt's own text with the "
                          f"best passage needs more; lower llm.max_new_tokens or raise llm.context_length")

    def _stream(self, prompt: str, timings: Timings, on_token: Optional[Callable[[str], None]],
                max_new_tokens: Optional[int], stop: Sequence[str], stop_signal: Optional[StopSignal]) -> list[str]:
        """The answer's pieces as the model generates them, each passed on to ``on_token``; ``timings`` gets the
        time to the first and to the last."""
        started = time.perf_counter()
        pieces = []
        stop = (stop,) if isinstance(stop, str) else tuple(stop)  # one text, not its characters
        stream = self.llm.stream(prompt, max_new_tokens=max_new_tokens, stop=stop, stop_signal=stop_signal)
        # closed however it ends: an on_token that raised (stdout full, a reader gone) left the stream paused, held by
        # the error's traceback, and close() then refused to free the model under it, hiding the error
        with closing(stream):
            for piece in stream:
                if not pieces:
                    timings.first_token = time.perf_counter() - started
                pieces.append(piece)
                if on_token:
                    on_token(piece)
        timings.generation = time.perf_counter() - started
        return pieces

    def _record_generation(self, timings: Timings, pieces: list[str], tokens: int) -> None:
        """The tokens the model generated, their rate and the backend, into ``timings``."""
        timings.tokens = tokens
        decode_seconds = timings.generation - (timings.first_token or 0.0)
        # Only for an answer that came piece by piece: one piece (a server with llm.stream: false) holds every token,
        # and the time after it says nothing of their rate (88,939 tokens/s)
        if timings.tokens > 1 and decode_seconds > 0 and len(pieces) > 1:
            timings.tokens_per_second = round((timings.tokens - 1) / decode_seconds, 2)
        timings.backend = self.llm.name

    def _cut_off_note(self, max_new_tokens: Optional[int], limit: int) -> str:
        """What an answer that stopped at its token ``limit`` says: the limit, and which setting raises it. (The
        limit, not the tokens counted: a server may send several tokens in one piece.)"""
        fix = ("raise llm.max_new_tokens for longer answers" if limit >= self.settings.llm.max_new_tokens
               else "the limit the question was asked with (max_new_tokens; an OpenAI client's max_tokens); "
                    "ask with a higher one for more"
               if max_new_tokens and limit >= max_new_tokens
               else "the context had no more room: raise llm.context_length or lower retrieval.k")
        return f"the answer stopped at its limit of {limit} token{'' if limit == 1 else 's'} and may be cut short; {fix}"
