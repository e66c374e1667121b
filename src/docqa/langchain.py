"""LangChain components over docqa: a retriever, an LLM and a chain shaped like RetrievalQA.

Needs only ``langchain-core`` (``pip install "docqa[langchain]"``); docqa's own question path never imports
this module, so ``main.py`` starts as fast without LangChain as with it::

    from docqa.langchain import DocQALLM, DocQARetriever

    retriever = DocQARetriever.from_config("config.yml", k=4)   # a LangChain BaseRetriever over the index
    llm = DocQALLM.from_config("config.yml")                     # a LangChain LLM over the configured backend

or, for an already loaded ``DocQA``: ``qa.as_retriever()``, ``qa.as_llm()`` and ``qa.as_chain()``.
"""

from __future__ import annotations

import asyncio
from contextlib import closing
from operator import itemgetter
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Literal, Optional

from docqa.errors import ConfigError, ContextFullError, InputError, advising
from docqa.optional import require
from docqa.stopping import StopSignal
from docqa.settings import SYSTEM_PROMPT

require("langchain_core", "langchain")  # else the imports below fail with Python's ModuleNotFoundError

from langchain_core.callbacks import (  # noqa: E402
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document  # noqa: E402
from langchain_core.language_models.llms import LLM  # noqa: E402
from langchain_core.outputs import GenerationChunk, LLMResult  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda, RunnablePassthrough  # noqa: E402
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError  # noqa: E402

__all__ = ["DocQALLM", "DocQARetriever", "as_document", "retrieval_qa_chain"]

MODEL_SETTINGS = ("the model's settings (max_new_tokens, temperature, stop, context_length) are llm.* in the "
                  "config file it is loaded with")


def as_document(source) -> Document:
    """A docqa ``Source`` as a LangChain ``Document``, with PyPDFLoader's ``source`` and 0-based ``page``."""
    return Document(
        id=str(source.chunk_id),
        page_content=source.text,
        metadata={
            "source": source.document,  # the name docqa indexes it by: its path under the data folder
            "page": source.page_index,
            "page_number": source.page_number,
            "score": source.score,
            "chunk_id": source.chunk_id,
        },
    )


def _validated(cls: type, model, fields: dict[str, Any]) -> None:
    """The pydantic ``__init__`` after ``cls``'s, with a value it refuses said in one line as an InputError."""
    try:
        super(cls, model).__init__(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"{cls.__name__} {where}: {first['msg']}, not {first['input']!r}") from None


class _Closable:
    """What ``from_config`` loaded (the index, the model) is this object's to release: ``close()`` or ``with``.
    One made over a ``DocQA`` of the caller's leaves that to the caller, and so does a copy."""

    @classmethod
    def _owning(cls, owned, **fields):
        """One made of ``fields`` that owns ``owned`` (closed at once where making it fails)."""
        try:
            made = cls(**fields)
        except BaseException:
            owned.close()
            raise
        made._owned = owned
        return made

    def model_copy(self, *args, **kwargs):
        copy = super().model_copy(*args, **kwargs)
        copy._owned = None  # closing a copy closed the original's index or model under it
        return copy

    def close(self) -> None:
        owned = self._owned
        if owned is not None:
            owned.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DocQARetriever(_Closable, BaseRetriever):
    """The passages docqa's retrieval finds (hybrid dense + BM25, named-document scoping) as ``Document``s.

    ``k`` and ``doc`` given to ``invoke`` override the ones given here.
    """

    # Unknown fields are refused: LangChain's vector-store retrievers take search_kwargs={"k": ...}, which a
    # retriever that ignored unknown fields dropped without a word.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    qa: Any = Field(exclude=True, description="A loaded docqa.DocQA (retrieval_only is enough).")
    k: Optional[int] = Field(None, gt=0, description="Passages returned; empty: retrieval.k of the configuration.")
    doc: Optional[str | list[str]] = Field(
        None, description="Only documents whose name or file name matches this glob (or one of these globs).")

    def __init__(self, **fields: Any) -> None:
        from docqa.qa import check_scope

        unknown = sorted(set(fields) - set(type(self).model_fields))
        if unknown:
            raise InputError(f"DocQARetriever has no field {', '.join(map(repr, unknown))}: give k= and doc= "
                             "themselves, e.g. as_retriever(k=2, doc='acme-*.pdf')")
        check_scope(fields.get("k"), fields.get("doc"))  # as invoke() would, but now: k=0 or doc="" never works
        _validated(DocQARetriever, self, fields)

    _owned: Any = PrivateAttr(None)

    @classmethod
    def from_config(cls, path: Path | str | None = None, **fields: Any) -> "DocQARetriever":
        """Open the index a config file names (the default config.yml without ``path``); no LLM is loaded.
        ``close()`` (or ``with``) closes the index."""
        from docqa.qa import DocQA

        qa = DocQA.from_config(path, retrieval_only=True)
        return cls._owning(qa, qa=qa, **fields)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        doc: Optional[str | list[str]] = None,
        **unknown: Any,
    ) -> list[Document]:
        if unknown:  # invoke(q, search_kwargs=...) as the constructor refuses it, not Python's TypeError
            raise InputError(f"DocQARetriever.invoke takes k= and doc=, not {', '.join(map(repr, sorted(unknown)))}")
        # None falls back to the retriever's own; anything else, 0 or "" too, is checked by DocQA.retrieve.
        sources = self.qa.retrieve(query, k=self.k if k is None else k, doc=self.doc if doc is None else doc)
        return [as_document(source) for source in sources]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        doc: Optional[str | list[str]] = None,
        **unknown: Any,
    ) -> list[Document]:
        # The search blocks (ONNX Runtime, FAISS, SQLite): a worker thread keeps the event loop free.
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), k=k, doc=doc, **unknown
        )


class DocQALLM(_Closable, LLM):
    """docqa's configured language model (llama-cpp, ctransformers or an OpenAI-compatible server) as a LangChain LLM.

    The prompt LangChain renders becomes the user's turn in ``prompt_format`` (docqa's ``prompt.format``):
    ``plain`` passes it unchanged, as the card's RetrievalQA did; ``gguf`` wraps it in the model file's own chat
    template, which instruction-tuned models need to answer rather than continue the text.
    """

    # Unknown fields are refused: LangChain's own LLMs take max_tokens= or temperature=, which this one, whose
    # model is loaded with config.yml's llm settings, ignored without a word.
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    backend: Any = Field(exclude=True, description="A loaded docqa.llm.LLM.")
    prompt_format: Literal["auto", "plain", "llama-2-chat", "gguf"] = Field(
        "auto", description="How the rendered prompt is given to the model; docqa's prompt.format."
    )
    system_prompt: str = Field(SYSTEM_PROMPT, description="The system message in the chat formats; docqa's prompt.system.")

    _owned: Any = PrivateAttr(None)

    def __init__(self, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(type(self).model_fields))
        if unknown:
            raise InputError(f"DocQALLM has no field {', '.join(map(repr, unknown))}: {MODEL_SETTINGS}")
        from docqa.llm.base import check_model

        if "backend" in fields:
            check_model(fields["backend"], "DocQALLM backend")
        _validated(DocQALLM, self, fields)

    @classmethod
    def from_config(cls, path: Path | str | None = None, *, model: Optional[str] = None, **fields: Any) -> "DocQALLM":
        """Load the model a config file names, with its prompt format; no index is opened. ``model``: "demo" (the
        tiny demo model, no download) or a model file's path, in place of the configured one. ``close()`` (or
        ``with``) frees the model."""
        from docqa.demo import use_model
        from docqa.llm import create_llm
        from docqa.settings import check_one_chat_template, load_settings

        settings = use_model(load_settings(path), model)
        check_one_chat_template(settings)
        fields.setdefault("prompt_format", settings.prompt.format)
        fields.setdefault("system_prompt", settings.prompt.system)
        with advising(settings):
            backend = create_llm(settings.llm, settings.root)
        return cls._owning(backend, backend=backend, **fields)

    @classmethod
    def from_docqa(cls, qa, **fields: Any) -> "DocQALLM":
        """The model a loaded ``DocQA`` already holds."""
        if qa.llm is None:
            raise ConfigError("this DocQA was loaded with retrieval_only=True and has no language model; load it "
                              "without retrieval_only to use it as a LangChain LLM")
        fields.setdefault("prompt_format", qa.settings.prompt.format)
        fields.setdefault("system_prompt", qa.settings.prompt.system)
        return cls(backend=qa.llm, **fields)

    @property
    def _llm_type(self) -> str:
        return "docqa"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        settings = self.backend.settings
        return {
            "backend": self.backend.name,
            "model": settings.model or str(settings.model_path),
            "prompt_format": self.prompt_format,
            "temperature": settings.temperature,
            "max_new_tokens": settings.max_new_tokens,
        }

    def get_num_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the model's own tokenizer."""
        return self.backend.count_tokens(text)

    def get_token_ids(self, text: str) -> list[int]:
        """``text``'s token ids in the model's own tokenizer (a server backend's: LangChain's GPT-2 estimate)."""
        try:
            return self.backend.encode(text, add_bos=False)
        except NotImplementedError:
            return super().get_token_ids(text)

    def _generate(
        self,
        prompts: list[str],
        stop: Optional[list[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Each prompt's chunks joined into one generation, keeping the last chunk's ``finish_reason``."""
        return LLMResult(generations=[[self._joined(self._stream(prompt, stop, run_manager, **kwargs))]
                                      for prompt in prompts])

    async def _agenerate(
        self,
        prompts: list[str],
        stop: Optional[list[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> LLMResult:
        # Through _astream, whose consumer leaving (a cancelled ainvoke) ends the generation; LangChain's default
        # runs the whole generation in a worker thread that nothing can stop.
        generations = []
        for prompt in prompts:
            chunks = [chunk async for chunk in self._astream(prompt, stop, run_manager, **kwargs)]
            generations.append([self._joined(chunks)])
        return LLMResult(generations=generations)

    @staticmethod
    def _joined(chunks) -> GenerationChunk:
        joined = GenerationChunk(text="")
        for chunk in chunks:
            joined += chunk
        return joined

    def _call(self, prompt: str, stop: Optional[list[str]] = None,
              run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> str:
        return self._joined(self._stream(prompt, stop, run_manager, **kwargs)).text

    def _stream(
        self,
        prompt: str,
        stop: Optional[list[str]] = None,
        run_manager: Optional[CallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        """The answer piece by piece, then an empty chunk whose ``generation_info`` says how it ended:
        ``finish_reason`` "length" (cut at llm.max_new_tokens or the context's room) or "stop"."""
        _refuse_model_kwargs(kwargs)
        return self._generation(prompt, stop, run_manager)

    def _generation(self, prompt: str, stop: Optional[list[str]], run_manager: Optional[CallbackManagerForLLMRun],
                    stop_signal: Optional[StopSignal] = None) -> Iterator[GenerationChunk]:
        """``_stream``'s chunks; ``stop_signal`` ends the generation at once, even while the prompt is read."""
        from docqa.llm.base import StopFilter
        from docqa.prompts import apply_format

        # The backend already ends at llm.stop; the caller's stop sequences are applied on top.
        stops = StopFilter([stop] if isinstance(stop, str) else stop or [])  # one sequence, not its characters
        # All of LangChain's prompt is content: special-token text in a passage or question stays text.
        text = apply_format(
            self.prompt_format, prompt, self.backend.chat_template, self.backend.template_tokens, self.system_prompt
        )
        cut_off = False
        try:
            signal = {"stop_signal": stop_signal} if stop_signal is not None else {}  # a backend passed in may not take it
            with closing(self.backend.stream(text, **signal)) as pieces:  # stopping early ends the generation too
                for piece in pieces:
                    kept = stops.feed(piece)
                    if kept:
                        yield self._chunk(kept, run_manager)
                    if stops.stopped:
                        break
                else:
                    cut_off = self.backend.cut_off_here()
        except ContextFullError as error:  # LangChain's prompt is the caller's: theirs to shorten
            raise InputError(str(error)) from None
        rest = stops.flush()
        if rest:
            yield self._chunk(rest, run_manager)
        yield GenerationChunk(text="", generation_info={"finish_reason": "length" if cut_off else "stop"})

    async def _astream(
        self,
        prompt: str,
        stop: Optional[list[str]] = None,
        run_manager: Optional[AsyncCallbackManagerForLLMRun] = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        """``_stream`` run whole in one worker thread. LangChain's default steps a sync stream on whichever
        thread is free; here the generation keeps one thread, the one whose second generation inside the first
        is refused, and a consumer that leaves early ends it at once."""
        _refuse_model_kwargs(kwargs)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()
        stopped = StopSignal()  # the consumer left: the generation ends at once, even while the prompt is read
        end = object()

        def produce() -> None:
            try:
                with closing(self._generation(prompt, stop, None, stopped)) as generated:
                    for chunk in generated:
                        if stopped.is_set():  # the consumer left: closing ends the generation
                            return
                        loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except BaseException as error:  # handed to the consumer, which raises it
                loop.call_soon_threadsafe(chunks.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, end)

        worker = loop.run_in_executor(None, produce)
        cancelled = False
        try:
            while (item := await chunks.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                if run_manager and item.text:  # not the closing chunk that says how the answer ended
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            stopped.set()
            # A consumer that leaves finds the model free again; a cancelled one does not wait: its worker may still
            # be waiting for the model behind another answer, and ends at its first token once it has it.
            if not cancelled:
                await worker

    @staticmethod
    def _chunk(text: str, run_manager: Optional[CallbackManagerForLLMRun]) -> GenerationChunk:
        chunk = GenerationChunk(text=text)
        if run_manager:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk


def _refuse_model_kwargs(kwargs: dict) -> None:
    """invoke(prompt, max_tokens=5): LangChain hands on whatever the caller gives; docqa's settings decide."""
    if kwargs:
        raise InputError(f"DocQALLM takes stop=, not {', '.join(map(repr, sorted(kwargs)))}: {MODEL_SETTINGS}")


def retrieval_qa_chain(retriever: BaseRetriever, llm: LLM, template: str, passage_order: str = "best-first") -> Runnable:
    """``{"query": ...}`` → ``{"query", "result", "source_documents"}``: RetrievalQA's "stuff" chain in LCEL.

    ``template`` needs ``{context}`` (the passages, separated by blank lines) and ``{question}``; ``passage_order``:
    ``best-first`` as RetrievalQA, or ``best-last`` (see ``docqa.prompts.passage_order``).
    """
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate

    from docqa.prompts import context as prompt_context

    def prompt_inputs(inputs: dict) -> dict:
        passages = [document.page_content for document in inputs["source_documents"]]
        return {"context": prompt_context(passages, passage_order), "question": inputs["query"]}

    answer = RunnableLambda(prompt_inputs) | PromptTemplate.from_template(template) | llm | StrOutputParser()
    searched = RunnablePassthrough.assign(source_documents=itemgetter("query") | retriever)
    return RunnableLambda(_query_input) | searched | RunnablePassthrough.assign(
        result=answer | RunnableGenerator(_stripped, _stripped_async))


def _query_input(inputs) -> dict:
    """The chain's input as RetrievalQA takes it, or an InputError that says so (a bare KeyError: 'query')."""
    if not isinstance(inputs, dict) or not isinstance(inputs.get("query"), str):
        given = f"keys {sorted(map(str, inputs))}" if isinstance(inputs, dict) else type(inputs).__name__
        raise InputError(f'the chain takes {{"query": "your question"}} (RetrievalQA\'s input), not {given}')
    return inputs


class _EndBlanks:
    """Lets an answer's text through as it comes, without the blanks at either end: str.strip held the whole
    answer back, so that a streamed chain gave its result in one piece at the end."""

    def __init__(self) -> None:
        self.held: Optional[str] = None  # None until the answer's first character that is not blank

    def feed(self, chunk: str) -> str:
        text = chunk.lstrip() if self.held is None else self.held + chunk
        if not text:
            return ""
        body = text.rstrip()
        self.held = text[len(body):]  # blanks that end the answer so far: let out only if more text follows
        return body


def _stripped(chunks: Iterator[str]) -> Iterator[str]:
    blanks = _EndBlanks()
    for chunk in chunks:
        if text := blanks.feed(chunk):
            yield text


async def _stripped_async(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    blanks = _EndBlanks()
    async for chunk in chunks:
        if text := blanks.feed(chunk):
            yield text
