"""docqa.langchain: the retriever passes LangChain's standard suite; the card's RetrievalQA and LCEL answer with SmolLM2."""

from __future__ import annotations

import re
import sys

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.outputs import GenerationChunk  # noqa: E402
from langchain_core.prompts import PromptTemplate  # noqa: E402
from langchain_core.runnables import RunnablePassthrough  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from docqa.errors import ConfigError, InputError, MissingDependencyError  # noqa: E402
from docqa.langchain import DocQALLM, DocQARetriever  # noqa: E402
from docqa.qa import DocQA  # noqa: E402
from docqa.settings import CARD_TEMPLATE  # noqa: E402
from tests.test_llm import ScriptedLLM  # noqa: E402

SAMPLE = "northwind-annual-report-2023.pdf"
QUESTION = "How much is the minimum guarantee payable by Apex Sportswear?"
FACT = re.compile(r"£\s?120\s?(?:million|m)\b")  # the sample report, page 3 (page index 2)


def assert_states_the_fact_once(answer: str) -> None:
    """The amount, said once: the model's end of turn ended the answer (no repeats, no chat markup)."""
    assert len(FACT.findall(answer)) == 1, answer
    assert "<|im_" not in answer, answer


@pytest.fixture(scope="module")
def fact_qa(built_fact_index):
    with DocQA.from_config(built_fact_index.config, retrieval_only=True) as qa:
        yield qa


@pytest.fixture(scope="module")
def smol_qa(built_sample_index, smollm2_gguf):
    """DocQA over the sample report with the real SmolLM2-135M-Instruct, greedy, in its own chat template."""
    pytest.importorskip("llama_cpp")
    config = built_sample_index.write_config(
        built_sample_index.root / "smollm2.yml",
        llm={"model_path": str(smollm2_gguf), "temperature": 0.0, "max_new_tokens": 64, "threads": 1},
        prompt={"format": "gguf"},
    )
    with DocQA.from_config(config) as qa:
        yield qa


def card_prompt() -> PromptTemplate:
    return PromptTemplate(template=CARD_TEMPLATE, input_variables=["context", "question"])


def assert_cites_the_guarantee_page(documents: list[Document]) -> None:
    assert documents and all(isinstance(document, Document) for document in documents)
    top = documents[0]
    assert (top.metadata["source"], top.metadata["page"], top.metadata["page_number"]) == (SAMPLE, 2, 3)
    assert "Apex Sportswear" in top.page_content


# LangChain's standard retriever suite


class TestDocQARetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, fact_qa):
        self.qa = fact_qa

    @property
    def retriever_constructor(self) -> type[DocQARetriever]:
        return DocQARetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"qa": self.qa}

    @property
    def retriever_query_example(self) -> str:
        return "Which company sells cloud accounting software?"


# The retriever's documents


def test_documents_carry_source_pages_score_and_chunk_id(fact_qa):
    documents = fact_qa.as_retriever(k=2).invoke("How many people did Alpha employ?")
    sources = fact_qa.retrieve("How many people did Alpha employ?", k=2)
    assert len(documents) == 2
    top = documents[0]
    assert top.page_content == sources[0].text
    assert "3,400 people" in top.page_content
    assert top.metadata == {
        "source": "alpha-annual-report.pdf",
        "page": 2,  # 0-based, as PyPDFLoader
        "page_number": 3,
        "score": sources[0].score,
        "chunk_id": sources[0].chunk_id,
    }
    assert top.id == str(sources[0].chunk_id)
    assert len({document.metadata["chunk_id"] for document in documents}) == 2


def test_document_filter_and_k_from_constructor_or_invoke(fact_qa):
    retriever = fact_qa.as_retriever(doc="beta*", k=3)
    documents = retriever.invoke("What did the board declare?")
    assert len(documents) == 3
    assert {document.metadata["source"] for document in documents} == {"beta-10k.pdf"}
    assert documents[0].metadata["page"] == 2
    alpha = retriever.invoke("What did the board declare?", k=1, doc="alpha*")
    assert len(alpha) == 1 and alpha[0].metadata["source"] == "alpha-annual-report.pdf"


async def test_async_retrieval_finds_what_sync_finds(fact_qa):
    retriever = fact_qa.as_retriever(k=3)
    question = "What was capital expenditure in fiscal 2022?"
    assert await retriever.ainvoke(question) == retriever.invoke(question)
    assert (await retriever.ainvoke(question))[0].metadata["page_number"] == 2


def test_retriever_from_config_opens_the_index_without_an_llm(built_fact_index):
    retriever = DocQARetriever.from_config(built_fact_index.config, k=1)
    try:
        documents = retriever.invoke("Which company designs industrial pumps?")
        assert retriever.qa.llm is None
        assert [document.metadata["source"] for document in documents] == ["alpha-annual-report.pdf"]
    finally:
        retriever.qa.close()


def test_fields_the_retriever_does_not_have_are_refused(fact_qa, built_fact_index):
    """LangChain's vector-store retrievers take search_kwargs={"k": 1}: ignored, it gave the default 4 passages."""
    for fields in ({"search_kwargs": {"k": 1}}, {"kk": 1}, {"search_type": "mmr"}):
        with pytest.raises(InputError, match="DocQARetriever has no field .*: give k= and doc= themselves"):
            fact_qa.as_retriever(**fields)
    with pytest.raises(InputError, match="has no field 'kk'"):
        DocQARetriever.from_config(built_fact_index.config, kk=1)
    # given to invoke, as the README says, it is the same InputError (it was Python's TypeError)
    with pytest.raises(InputError, match="DocQARetriever.invoke takes k= and doc=, not 'search_kwargs'"):
        fact_qa.as_retriever().invoke("How many people did Alpha employ?", search_kwargs={"k": 1})


def test_an_empty_k_or_doc_given_to_invoke_is_refused_not_replaced(fact_qa):
    retriever = fact_qa.as_retriever(k=3, doc=["beta*"])  # a list of globs, as invoke takes them
    assert {document.metadata["source"] for document in retriever.invoke("How many people did Alpha employ?")} == {
        "beta-10k.pdf"}
    for given in ({"k": 0}, {"doc": ""}, {"doc": []}):
        with pytest.raises(InputError):
            retriever.invoke("What did the board declare?", **given)
        with pytest.raises(InputError):  # given when it is made: refused then, not at every invoke
            fact_qa.as_retriever(**given)



def test_a_retriever_from_config_closes_its_index_and_one_over_a_docqa_leaves_it_open(fact_qa, built_fact_index):
    """from_config opened an index that nothing but the internals (retriever.qa.close()) could close."""
    from docqa.errors import ClosedError

    with DocQARetriever.from_config(built_fact_index.config, k=1) as retriever:
        assert retriever.invoke("Which company designs industrial pumps?")
    with pytest.raises(ClosedError):
        retriever.invoke("Which company designs industrial pumps?")
    over_mine = fact_qa.as_retriever(k=1)
    over_mine.close()  # the DocQA is the caller's: still open
    assert over_mine.invoke("Which company designs industrial pumps?")
    with DocQARetriever.from_config(built_fact_index.config, k=1) as original:
        original.model_copy(update={"k": 2}).close()  # a copy owns nothing: it closed the original's index
        assert original.invoke("Which company designs industrial pumps?")


def test_a_k_beyond_the_limit_is_refused_in_python_as_on_the_command_line(fact_qa):
    with pytest.raises(InputError, match="k must be at most 10,000, not 10,001"):
        fact_qa.retrieve("Which company designs industrial pumps?", k=10_001)
    with pytest.raises(InputError, match="k must be at most 10,000"):
        fact_qa.as_retriever(k=100_000)

def test_retrieval_only_docqa_has_no_llm_to_offer(fact_qa):
    with pytest.raises(ConfigError, match="retrieval_only"):
        fact_qa.as_llm()


def test_missing_langchain_core_says_how_to_install(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "langchain_core"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if never installed: every import of it fails
    monkeypatch.delitem(sys.modules, "docqa.langchain")
    with pytest.raises(MissingDependencyError, match=r"langchain_core is not installed: pip install 'docqa\[langchain\]'$"):
        import docqa.langchain  # noqa: F401


# DocQALLM's streaming, stop sequences and token counts (a scripted backend: exact tokens)


class Limited(ScriptedLLM):
    """A scripted backend that keeps to its token limit and the context's room, as the real ones do."""

    def _generate(self, prompt):
        yield from self.tokens[: self._new_token_limit(self.count_tokens(prompt))]


class Echo(ScriptedLLM):
    """Answers with the prompt's words, up to its token limit: a long prompt is cut, a short one is not."""

    def _generate(self, prompt):
        words = prompt.split()
        yield from (f" {word}".encode() for word in words[: self._new_token_limit(len(words))])


def test_llm_streams_chunks_and_applies_the_callers_stop_sequences():
    backend = ScriptedLLM([b"The answer", b" is 42.", b"\nSou", b"rces: none"], stop=["</s>"])
    llm = DocQALLM(backend=backend)
    chunks = list(llm._stream("prompt", stop=["\nSources:"]))
    assert all(isinstance(chunk, GenerationChunk) for chunk in chunks)
    assert [chunk.text for chunk in chunks] == ["The answer", " is 42.", ""]
    assert chunks[-1].generation_info == {"finish_reason": "stop"}  # the closing chunk says how it ended
    assert backend.closed  # stopping ends the generation
    assert llm.invoke("prompt", stop=["42"]) == "The answer is "
    assert "".join(llm.stream("prompt")) == "The answer is 42.\nSources: none"



def test_a_stop_sequence_given_as_a_string_is_one_sequence():
    """stop=", 4" was read as the characters ",", " " and "4": the answer ended at the first comma."""
    llm = DocQALLM(backend=ScriptedLLM([b"1, 2, 3", b", 4, 5"]))
    assert llm.invoke("Count.", stop=", 4") == "1, 2, 3"
    assert llm.invoke("Count.", stop=[", 4"]) == "1, 2, 3"


def test_settings_the_llm_does_not_take_are_refused_not_ignored():
    """max_new_tokens=5 or invoke(max_tokens=5) were accepted and the answer ran to config.yml's limit."""
    llm = DocQALLM(backend=ScriptedLLM([b"The answer"]))
    for fields in ({"max_new_tokens": 5}, {"temperature": 0.9}, {"n_ctx": 512}):
        with pytest.raises(InputError, match=f"DocQALLM has no field '{next(iter(fields))}': the model's settings"):
            DocQALLM(backend=ScriptedLLM([b"x"]), **fields)
    for given in ({"max_tokens": 5}, {"temperature": 1.5}):
        with pytest.raises(InputError, match=f"DocQALLM takes stop=, not '{next(iter(given))}'"):
            llm.invoke("prompt", **given)
    with pytest.raises(InputError, match="DocQALLM takes stop=, not 'max_tokens'"):
        list(llm.stream("prompt", max_tokens=5))
    # a value pydantic refuses is one line too (a 4-line ValidationError with a link)
    with pytest.raises(InputError, match=r"^DocQALLM prompt_format: Input should be 'auto', .*, not 'chatml'$"):
        DocQALLM(backend=ScriptedLLM([b"x"]), prompt_format="chatml")
    # the model itself: a model's name, or a LangChain LLM, failed only when asked, as an AttributeError
    for backend in ("models/llama-2-7b-chat.Q8_0.gguf", llm):
        with pytest.raises(InputError, match=rf"^DocQALLM backend must be a docqa model \(docqa.llm.create_llm\("
                                             rf"settings.llm, settings.root\)\), not {type(backend).__name__}$"):
            DocQALLM(backend=backend)

def test_llm_says_whether_the_answer_was_cut_at_the_token_limit():
    whole = DocQALLM(backend=Limited([b"The answer", b" is 42."])).generate(["prompt"]).generations[0][0]
    cut = DocQALLM(backend=Limited([b"The", b" answer", b" is"], max_new_tokens=2)).generate(["prompt"])
    assert (whole.text, whole.generation_info) == ("The answer is 42.", {"finish_reason": "stop"})
    generation = cut.generations[0][0]
    assert (generation.text, generation.generation_info) == ("The answer", {"finish_reason": "length"})


def test_how_an_answer_ended_is_its_own_thread_s_generation():
    """reached_limit was read after the model's lock was let go: another thread's answer could reset it first."""
    import threading

    backend = Echo([], max_new_tokens=2)
    first_done, second_done, seen = threading.Event(), threading.Event(), {}

    def cut():
        list(backend.stream("one two three"))
        first_done.set()
        second_done.wait(10)
        seen["cut"] = backend.cut_off_here()

    thread = threading.Thread(target=cut)
    thread.start()
    first_done.wait(10)
    list(backend.stream("one"))  # ends by itself
    second_done.set()
    thread.join(10)
    assert seen["cut"] and not backend.cut_off_here() and not backend.reached_limit


def test_a_prompt_beyond_the_models_context_is_the_callers_to_shorten():
    llm = DocQALLM(backend=Limited([b"never"], context_length=8))
    with pytest.raises(InputError, match="the prompt takes 9 tokens but llm.context_length is 8"):
        llm.invoke("one two three four five six seven eight nine")
    assert llm.invoke("one two three four five six seven") == "never"  # 7 of 8: room for one token


async def test_a_cancelled_ainvoke_ends_the_generation():
    """LangChain's default ainvoke runs the generation in a worker thread nothing stops: the model stayed busy with
    an answer nobody would read (a web client that left)."""
    import asyncio
    import time

    class Slow(ScriptedLLM):
        def _generate(self, prompt):
            for _ in range(100):
                time.sleep(0.05)
                self.produced = getattr(self, "produced", 0) + 1
                yield b" word"

    backend = Slow([], max_new_tokens=100)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(DocQALLM(backend=backend).ainvoke("prompt"), timeout=0.5)
    assert backend.lock.acquire(timeout=1)  # already free: the generation ended at its next token
    backend.lock.release()
    assert backend.produced < 30
    # Cancelled while it waits for the model behind another answer: it does not wait for that answer to end.
    answering = asyncio.create_task(DocQALLM(backend=backend).ainvoke("the other question"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(DocQALLM(backend=backend).ainvoke("prompt"), timeout=0.3)
    assert time.monotonic() - started < 2.5  # the other answer takes 5 s
    answering.cancel()


def test_llm_counts_tokens_with_the_backend_tokenizer():
    llm = DocQALLM(backend=ScriptedLLM([]))
    assert llm.get_num_tokens("one two three four") == 4
    assert llm.get_num_tokens("antidisestablishmentarianism") == 1  # one word to ScriptedLLM; GPT-2 splits it


def test_llm_applies_the_configured_prompt_format():
    class Recording(ScriptedLLM):
        def _generate(self, prompt):
            self.prompt = prompt
            yield b"ok"

    backend = Recording([])
    assert DocQALLM(backend=backend, prompt_format="llama-2-chat").invoke("Question: why?") == "ok"
    assert backend.prompt.startswith("[INST] <<SYS>>") and backend.prompt.endswith("Question: why? [/INST]")
    DocQALLM(backend=backend).invoke("Question: why?")
    assert backend.prompt == "Question: why?"
    DocQALLM(backend=backend, prompt_format="llama-2-chat", system_prompt="Be brief.").invoke("Question: why?")
    assert backend.prompt.startswith("[INST] <<SYS>>\nBe brief.\n<</SYS>>")


# The real SmolLM2 model on the sample report


def test_card_retrieval_qa_answers_with_sources_and_pages(smol_qa):
    from langchain_classic.chains import RetrievalQA

    chain = RetrievalQA.from_chain_type(
        llm=smol_qa.as_llm(),
        chain_type="stuff",
        retriever=smol_qa.as_retriever(),
        return_source_documents=True,
        chain_type_kwargs={"prompt": card_prompt()},
    )
    result = chain.invoke({"query": QUESTION})
    assert_states_the_fact_once(result["result"])
    assert len(result["source_documents"]) == smol_qa.settings.retrieval.k
    assert_cites_the_guarantee_page(result["source_documents"])


def test_lcel_retriever_prompt_llm_streams_the_answer(smol_qa):
    retriever, llm = smol_qa.as_retriever(), smol_qa.as_llm()

    def join(documents: list[Document]) -> str:
        return "\n\n".join(document.page_content for document in documents)

    chain = {"context": retriever | join, "question": RunnablePassthrough()} | card_prompt() | llm
    pieces = list(chain.stream(QUESTION))
    assert len(pieces) > 1  # streamed, not returned whole
    assert_states_the_fact_once("".join(pieces))
    assert llm.get_num_tokens("Apex Sportswear") < len("Apex Sportswear")



def test_an_llm_from_config_frees_its_model_and_refuses_settings_it_does_not_take(built_sample_index, smollm2_gguf):
    from docqa.errors import ClosedError

    config = built_sample_index.write_config(built_sample_index.root / "close.yml",
                                             llm={"model_path": str(smollm2_gguf), "max_new_tokens": 8, "threads": 1})
    with DocQALLM.from_config(config) as llm:
        assert llm.invoke("Say hi.")
    with pytest.raises(ClosedError):
        llm.invoke("Say hi.")
    with pytest.raises(InputError, match="DocQALLM prompt_format: Input should be"):
        DocQALLM.from_config(config, prompt_format="chatml")

def test_as_chain_returns_retrieval_qa_keys(smol_qa):
    result = smol_qa.as_chain().invoke({"query": QUESTION})
    assert set(result) == {"query", "result", "source_documents"}
    assert result["query"] == QUESTION
    assert_states_the_fact_once(result["result"])
    assert_cites_the_guarantee_page(result["source_documents"])


def test_as_chain_streams_its_result_and_names_its_input(smol_qa):
    """The result came in one piece at the end of a stream (str.strip held it back), and a "question" key was a
    bare KeyError: 'query'."""
    chain = smol_qa.as_chain()
    pieces = [chunk["result"] for chunk in chain.stream({"query": QUESTION}) if "result" in chunk]
    assert len(pieces) > 3
    answer = "".join(pieces)
    assert answer == answer.strip() and answer == chain.invoke({"query": QUESTION})["result"]
    with pytest.raises(InputError, match=r'the chain takes \{"query": "your question"\} .*, not keys \[\'question\'\]'):
        chain.invoke({"question": QUESTION})


def test_end_blanks_are_dropped_as_the_text_streams():
    from docqa.langchain import _stripped

    assert list(_stripped(iter(["", "  \n", " The", " answer ", " ", "is 4.", " \n "]))) == [
        "The", " answer", "  is 4."]


# Async streaming and closing


async def test_astream_runs_the_generation_on_one_thread_and_frees_the_model(smol_qa):
    """LangChain's default async stream steps the sync one on whichever worker thread is free; the model's lock,
    held for the whole generation, must be released by the thread that took it, or every later answer waits."""
    llm = smol_qa.as_llm()
    prompt = card_prompt().format(context="Apex Sportswear pays a minimum guarantee of £120 million.", question=QUESTION)
    pieces = [chunk async for chunk in llm.astream(prompt)]
    assert len(pieces) > 1 and FACT.search("".join(pieces))
    assert llm.backend.lock.acquire(timeout=5)  # free again
    llm.backend.lock.release()
    async for _ in llm.astream("Write a long story about a cat."):  # a consumer that leaves after one piece
        break
    assert llm.backend.lock.acquire(timeout=30)
    llm.backend.lock.release()
    assert FACT.search(llm.invoke(prompt))


def test_get_token_ids_use_the_models_tokenizer(smol_qa):
    llm = smol_qa.as_llm()
    assert llm.get_token_ids("Apex Sportswear") == llm.backend.encode("Apex Sportswear", add_bos=False)
    assert len(llm.get_token_ids("Apex Sportswear")) == llm.get_num_tokens("Apex Sportswear")
