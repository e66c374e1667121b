"""The whole question path with a real (tiny, random-weight) Llama through the real backends."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from docqa.cli import ask_main
from docqa.qa import DocQA
from docqa.settings import load_settings
from tests.test_llm import ScriptedLLM

QUESTION = "How much is the minimum guarantee payable by adidas?"


@pytest.fixture(params=["gguf-auto", "ggml-auto", "gguf-ctransformers"])
def model_config(request, built_fact_index, tiny_gguf, tiny_ggml, tmp_path):
    model, backend = request.param.split("-")
    path = tiny_gguf if model == "gguf" else tiny_ggml
    expected = {"gguf-auto": "llama-cpp", "ggml-auto": "ctransformers", "gguf-ctransformers": "ctransformers"}
    llm = {"model_path": str(path), "max_new_tokens": 12, "context_length": 1024}
    if backend != "auto":
        llm["backend"] = backend
    return built_fact_index.write_config(tmp_path / "config.yml", llm=llm), expected[request.param]


def test_ask_streams_answer_then_sources_and_timings(model_config, capsys):
    config, backend = model_config
    assert ask_main(["--config", str(config), QUESTION]) == 0
    out, err = capsys.readouterr()
    answer, rest = out.split("\n\nSources:\n", 1)
    assert answer.strip(), "the model's text is streamed before the sources"
    assert "[1] alpha-annual-report.pdf, page 2 (page index 1)" in rest
    timings = rest.strip().splitlines()[-1]
    assert timings.startswith("Timings: load") and "first token" in timings and "tokens/s" in timings
    assert timings.endswith(f"backend {backend}")
    assert "Traceback" not in err


def test_on_a_terminal_a_line_says_what_the_model_reads_until_its_first_token(built_fact_index, tiny_gguf, tmp_path,
                                                                            capsys, monkeypatch):
    """A 7B model on a CPU reads the prompt for tens of seconds, and the terminal stayed blank as if docqa hung."""
    import sys

    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(tiny_gguf),
                                                                         "max_new_tokens": 4}, retrieval={"k": 2})
    seen_at_first_token = []
    original = DocQA._stream

    def stream(self, prompt, timings, on_token, *rest):
        seen_at_first_token.append(capsys.readouterr().err)  # what the terminal showed while the model read
        return original(self, prompt, timings, on_token, *rest)

    monkeypatch.setattr(DocQA, "_stream", stream)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert ask_main(["--config", str(config), QUESTION]) == 0
    out, err = capsys.readouterr()
    assert seen_at_first_token[0].endswith("docqa: the model is reading 2 passages from 1 document…")
    assert err.startswith("\r\033[K")  # taken back before the answer
    assert out.split("\n\nSources:", 1)[0].strip()
    # not where stderr is a file or a pipe (a script's log), nor without a model
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert ask_main(["--config", str(config), QUESTION]) == 0
    assert "reading" not in capsys.readouterr().err and "reading" not in seen_at_first_token[1]


def test_ask_json_has_answer_sources_and_timings(model_config, capsys):
    config, backend = model_config
    assert ask_main(["--config", str(config), "--json", QUESTION]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] and result["question"] == QUESTION
    assert result["sources"][0]["page_number"] == 2
    timings = result["timings"]
    assert timings["backend"] == backend
    assert result["model"] == Path(yaml.safe_load(config.read_text())["llm"]["model_path"]).name  # batch resume checks it
    assert 0 < timings["tokens"] <= 12
    assert timings["first_token"] is not None and timings["generation"] >= timings["first_token"]
    assert timings["total"] >= timings["load"] + timings["retrieval"]


def test_python_api_loads_once_and_answers_many(built_fact_index, tiny_gguf, tmp_path):
    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(tiny_gguf), "max_new_tokens": 4})
    pieces = []
    with DocQA.from_config(config) as qa:
        llm = qa.llm
        first = qa.ask(QUESTION, on_token=pieces.append)
        second = qa.ask("How many people did Alpha employ?")
        assert qa.llm is llm
    assert "".join(pieces).strip() == first.answer
    assert first.timings.load > 0 and second.timings.load == 0
    assert second.sources[0].page_index == 2


class ServerSendingTwoTokensAPiece(ScriptedLLM):
    """A server backend that streams two tokens in each piece and says it stopped at the token limit."""

    def _generate(self, prompt: str):
        limit = self._new_token_limit(self.count_tokens(prompt))
        for _ in range(limit // 2):
            yield b" forty two"
        self._server_cut_off = True


def test_a_cut_answer_names_its_limit_not_the_pieces_counted(built_fact_index, tmp_path):
    """The note said "its limit of 3 tokens" and blamed the context for a six-token max_new_tokens."""
    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml", llm={"max_new_tokens": 6}))
    backend = ServerSendingTwoTokensAPiece([], max_new_tokens=6, context_length=settings.llm.context_length)
    with DocQA(settings, llm=backend) as qa:
        result = qa.ask(QUESTION)
    assert result.cut_off and result.timings.tokens == 3
    assert "stopped at its limit of 6 tokens and may be cut short; raise llm.max_new_tokens" in " ".join(result.notes)


def test_an_answer_s_own_stop_texts_end_it_beside_llm_stop(built_fact_index, tmp_path):
    """An OpenAI client's stop was taken and ignored: the answer ran on past it."""
    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml", llm={"stop": ["\nQuestion:"]}))
    backend = ScriptedLLM([b"Revenue ", b"was ", b"$5m", b".\nQuestion:", b" more"],
                          context_length=settings.llm.context_length, stop=settings.llm.stop)
    with DocQA(settings, llm=backend) as qa:
        assert qa.ask(QUESTION, stop=["$"]).answer == "Revenue was"
        assert qa.ask(QUESTION, stop="m.").answer == "Revenue was $5"  # one text, not its letters
        assert qa.ask(QUESTION).answer == "Revenue was $5m."  # llm.stop alone, for an answer that brought none


def test_passages_that_do_not_fit_the_context_are_dropped_and_said(built_fact_index, tiny_gguf, tmp_path, capsys):
    two = {"k": 2}
    plain = {"format": "plain"}  # the probe below counts the card's text as it is, not inside the model's chat turn
    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(tiny_gguf)}, retrieval=two))
    with DocQA(settings) as qa:
        full = qa.llm.count_tokens(qa.ask(QUESTION).sources[0].text)
    llm = {"model_path": str(tiny_gguf), "max_new_tokens": 8}
    # Room for the template, the question and one passage, not two.
    probe = load_settings(built_fact_index.write_config(tmp_path / "probe.yml", llm=llm, retrieval=two, prompt=plain))
    with DocQA(probe) as qa:
        from docqa.prompts import render

        one = qa.llm.count_tokens(render(probe.prompt, qa.retrieve(QUESTION)[0].text, QUESTION))
    llm["context_length"] = one + 8 + 8 + full // 2
    config = built_fact_index.write_config(tmp_path / "small.yml", llm=llm, retrieval=two, prompt=plain)
    assert ask_main(["--config", str(config), "--json", QUESTION]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert len(result["sources"]) == 1
    assert "1 of 2 passages left out" in result["notes"][0]


@pytest.mark.parametrize("context, answer_tokens, repeats, message", [
    # the question alone is longer than the context
    (400, 12, 40, r"the question is too long: its prompt alone takes \d+ tokens, and the model's context holds 400; "
                  r"ask a shorter question"),
    # the prompt's own text does not fit: the settings' fault, not the question's (it said 'ask a shorter question')
    (48, 12, 1, r"the prompt's own text takes \d+ tokens, and the model's context holds 48; raise llm.context_length"),
    # it fits, but with the answer's tokens kept no passage fits beside it; a one-word question would leave room
    (1024, 600, 10, r"no passage fits beside the question: of the model's 1024-token context, 600 are kept for the "
                    r"answer \(llm.max_new_tokens\) and the question's prompt takes \d+; ask a shorter question"),
    # no question leaves room: the settings' fault (a 500 the server's clients need not retry)
    (1024, 900, 1, r"no passage fits beside any question: of the model's 1024-token context, 900 are kept for the "
                    r"answer \(llm.max_new_tokens\), and the prompt's own text with the best passage needs more; "
                    r"lower llm.max_new_tokens or raise llm.context_length"),
])
def test_a_prompt_without_room_for_a_passage_is_refused_and_says_why(built_fact_index, tiny_gguf, tmp_path, capsys,
                                                                     context, answer_tokens, repeats, message):
    llm = {"model_path": str(tiny_gguf), "context_length": context, "max_new_tokens": answer_tokens}
    config = built_fact_index.write_config(tmp_path / "config.yml", llm=llm)
    long_question = "How much is the minimum guarantee payable by adidas over the whole term? " * repeats
    assert ask_main(["--config", str(config), long_question]) == 2
    assert re.fullmatch(f"error: {message}\n", capsys.readouterr().err)


@pytest.mark.parametrize(
    "text, answered",
    [
        ("I don't know.", False),
        ("I do not know the answer to that.", False),
        ("The minimum guarantee is not mentioned in the context.", False),
        ("The minimum guarantee payable by adidas is £750 million.", True),
        ("", False),
        # What chat models say (a review found these counted as answers), and answers that only mention such words
        ("The provided context does not contain information about Apple's revenue.", False),
        ("I apologize, but I cannot provide that.", False),
        ("There is no information about Apple in the given context.", False),
        ("The context doesn't provide that figure.", False),
        ("Based on the context, I cannot find the revenue for 2021.", False),
        ("I'm sorry, but the documents do not say.", False),
        ("Fans who cannot find tickets can buy them; revenue was £583.2 million.", True),
        ("Revenue was £583.2 million. The context does not give the 2021 figure.", True),
    ],
)
def test_answered_flags_a_no_answer_reply(text, answered):
    from docqa.qa import Answer, Timings

    assert Answer("q", text, [], Timings()).answered is answered
    assert Answer("q", None, [], Timings()).answered is None


def test_main_py_answers_with_the_cards_ggml_model_as_a_script(built_fact_index, tiny_ggml, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    llm = {"model_path": str(tiny_ggml), "max_new_tokens": 8, "threads": 1}
    config = built_fact_index.write_config(tmp_path / "config.yml", llm=llm)
    main = Path(__file__).resolve().parents[1] / "main.py"
    result = subprocess.run([sys.executable, str(main), "--config", str(config), QUESTION],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert "[1] alpha-annual-report.pdf, page 2 (page index 1)" in result.stdout
    assert result.stdout.rstrip().endswith("backend ctransformers")
    assert "Traceback" not in result.stderr


def test_many_threads_retrieve_while_others_ask(built_fact_index, tiny_gguf, tmp_path):
    """16 threads × 50 retrievals on one DocQA while two more threads ask the (random-weight) model."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.fixtures_project import FACTS

    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(tiny_gguf), "max_new_tokens": 6})
    retrieving = threading.Event()

    def retrieve(thread: int) -> list[bool]:
        retrieving.set()
        found = []
        for round in range(50):
            name, page_index, sentence = FACTS[(thread + round) % len(FACTS)]
            top = qa.retrieve(sentence, k=1)[0]
            found.append((top.document, top.page_index) == (name, page_index) and sentence in top.text.replace("\n", " "))
        return found

    def ask() -> list:
        retrieving.wait()
        return [qa.ask(QUESTION) for _ in range(3)]

    with DocQA.from_config(config) as qa, ThreadPoolExecutor(18) as pool:
        asking = [pool.submit(ask) for _ in range(2)]
        retrievals = [pool.submit(retrieve, thread) for thread in range(16)]
        found = [ok for future in retrievals for ok in future.result()]
        answers = [answer for future in asking for answer in future.result()]
    assert len(found) == 800 and all(found)
    assert len(answers) == 6
    for answer in answers:
        assert answer.answer is not None and 0 < answer.timings.tokens <= 6
        assert (answer.sources[0].document, answer.sources[0].page_index) == ("alpha-annual-report.pdf", 1)


def test_close_releases_the_index_also_when_loading_fails(built_fact_index, tmp_path, monkeypatch):
    import docqa.store
    from docqa.errors import ModelNotFoundError
    from docqa.storage import STORES, StoreBackend

    opened = []
    real_store = docqa.store.Store

    class TrackedStore(real_store):
        def close(self):
            opened.remove(self)
            super().close()

    def tracked(*args, **kwargs):
        store = TrackedStore(*args, **kwargs)
        opened.append(store)
        return store

    monkeypatch.setitem(STORES, "sqlite-faiss", lambda: StoreBackend(tracked, docqa.store.StoreWriter))
    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(tmp_path / "absent.gguf")})
    with pytest.raises(ModelNotFoundError):
        DocQA.from_config(config)
    assert opened == []
    with DocQA.from_config(config, retrieval_only=True) as qa:
        assert opened == [qa.store]
    assert opened == [] and qa.store is None


def test_questions_against_an_index_built_with_other_settings_are_refused(built_fact_index, tmp_path, capsys):
    from docqa.cli import ask_main

    config = built_fact_index.write_config(tmp_path / "config.yml", ingest={"chunk_size": 800})
    assert ask_main(["--config", str(config), "--retrieval-only", QUESTION]) == 3
    err = capsys.readouterr().err
    assert "ingest.chunk_size 500 → 800" in err and f"python db_build.py --config {config} --rebuild" in err


class OwnPassages(DocQA):
    """A DocQA that finds passages its own way, as bench/answers.py's tutorial pipeline does: no index opened."""

    def __init__(self, settings, llm):
        self._prepare(settings, llm)
        self._use_llm(llm)

    def search(self, question, *, k=None, doc=None):
        from docqa.qa import Searched, Source

        return [Source("own.pdf", 0, 1, "Context: the dividend was 42 cents.", 1.0, chunk_id=-1)], Searched("all", ("own.pdf",))


def test_a_subclass_with_its_own_search_answers_through_ask():
    """The tutorial pipeline of bench/answers.py copied DocQA's fields by hand and broke when DocQA gained more."""
    from docqa.settings import Settings

    with OwnPassages(Settings(), ScriptedLLM([b"42 cents."])) as qa:
        result = qa.ask("What dividend?")
        assert qa.documents() == []  # no index of its own
    assert result.answer == "42 cents." and result.sources[0].document == "own.pdf"



def test_the_package_builds_and_lists_what_is_indexed(fact_project):
    import docqa

    report = docqa.build_index(docqa.load_settings(fact_project.config))
    assert sorted(report.added) == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    with docqa.DocQA.from_config(fact_project.config, retrieval_only=True) as qa:
        assert sorted((record.name, record.pages) for record in qa.documents()) == [
            ("alpha-annual-report.pdf", 3), ("beta-10k.pdf", 3)]


def test_the_librarys_advice_names_the_users_settings_file(built_fact_index, project, tmp_path, monkeypatch):
    """DocQA.from_config("project/config.yml") advised "python db_build.py", which reads this checkout's
    config.yml: following it built or rebuilt another index. With --config, the docqa command: the checkout's
    scripts are not in a user's own project folder ("can't open file db_build.py")."""
    from docqa.errors import IndexNotFoundError, StoreError

    with pytest.raises(IndexNotFoundError, match=re.escape(f"build it first: docqa build --config {project.config}")):
        DocQA.from_config(project.config, retrieval_only=True)
    config = built_fact_index.write_config(tmp_path / "config.yml", ingest={"chunk_size": 800})
    with pytest.raises(StoreError, match=re.escape(f"run: docqa build --config {config} --rebuild")):
        DocQA.from_config(config, retrieval_only=True)
    monkeypatch.chdir(tmp_path)  # a script in its project folder: from_config() reads the config.yml there
    with pytest.raises(StoreError) as caught:
        DocQA.from_config(retrieval_only=True)
    assert f"docqa build --config {config} --rebuild" in str(caught.value)
    with pytest.raises(StoreError, match=re.escape(f"--config {config} --rebuild")):  # the settings, not the file
        DocQA(load_settings(config), retrieval_only=True)
    from docqa import build_index

    with pytest.raises(StoreError, match=re.escape(f"--config {config} --rebuild")):
        build_index(load_settings(config))


def test_the_librarys_advice_for_index_settings_made_in_code_is_build_index(built_fact_index, project, tmp_path):
    """Settings changed in code advised "docqa build --config FILE", which builds the index the file names,
    not the one the code does."""
    from docqa import build_index
    from docqa.errors import IndexNotFoundError, StoreError

    elsewhere = load_settings(project.config, paths={"vectorstore": str(tmp_path / "elsewhere")})
    with pytest.raises(IndexNotFoundError, match=re.escape("; build it first: docqa.build_index(settings)")):
        DocQA(elsewhere, retrieval_only=True)
    changed = load_settings(built_fact_index.config)
    changed.ingest.chunk_size = 800  # set after loading
    with pytest.raises(StoreError, match=re.escape("run: docqa.build_index(settings, rebuild=True)")):
        build_index(changed)
    assert not changed.index_as_in_file and load_settings(built_fact_index.config).index_as_in_file
    # the other commands advised keep the --config: a download into the file's models folder is still right
    missing_model = load_settings(built_fact_index.config, llm={"model_path": str(tmp_path / "none.gguf")})
    missing_model.paths.data = tmp_path  # an index section, set in code
    with pytest.raises(Exception, match=re.escape(f"docqa download --config {built_fact_index.config}")):
        DocQA(missing_model)
    # settings of other sections changed in code (the model, as --model does) leave the index the file's
    other_model = load_settings(project.config, llm={"max_new_tokens": 8})
    with pytest.raises(IndexNotFoundError, match=re.escape(f"build it first: docqa build --config {project.config}")):
        DocQA(other_model, retrieval_only=True)


def test_advice_given_twice_names_the_settings_file_once():
    """The library names the settings file, then the CLI the --config as typed: a quoted path survives."""
    from docqa.errors import advice_for

    config = "/data/it's mine/config.yml"
    once = advice_for("the index is damaged; run: python db_build.py --rebuild", "python", config)
    assert once == "the index is damaged; run: python db_build.py --config '/data/it'\"'\"'s mine/config.yml' --rebuild"
    assert advice_for(once, "python", config) == once
    assert advice_for(once, "docqa", "c.yml") == "the index is damaged; run: docqa build --config c.yml --rebuild"


def test_advice_names_the_command_as_it_was_run():
    """``python -m docqa`` was advised ``docqa download``, which is not on PATH where ``python -m`` is needed; a
    script run from another folder was advised ``python download_model.py``, which is not there."""
    from docqa.errors import advice_for

    message = "model file not found; download it with: python download_model.py"
    assert advice_for(message, "python -m docqa", None).endswith("python -m docqa download")
    assert advice_for(message, "/opt/my checkout/main.py", "c.yml").endswith(
        "python '/opt/my checkout/download_model.py' --config c.yml")
    assert advice_for(message, "main.py", None).endswith("python download_model.py")


def test_python_m_docqa_and_a_script_run_from_elsewhere_advise_what_runs_there(tmp_path):
    import subprocess
    import sys

    from docqa.checkout import CHECKOUT

    config = tmp_path / "config.yml"
    config.write_text("paths:\n  vectorstore: no-index-yet\n", encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(CHECKOUT / "src")}
    runs = {"python -m docqa build": [sys.executable, "-m", "docqa", "ask", "What?"],
            f"python {CHECKOUT / 'db_build.py'}": [sys.executable, str(CHECKOUT / "main.py"), "What?"]}
    for advised, command in runs.items():
        done = subprocess.run([*command, "--config", str(config), "--retrieval-only"], cwd=tmp_path,
                              capture_output=True, text=True, env=environment, timeout=120)
        assert f"build it first: {advised} --config {config}" in done.stderr, done.stderr


def test_close_waits_for_an_answer_in_another_thread_and_then_refuses_more(built_fact_index, tiny_gguf, tmp_path):
    """Freeing the model while llama.cpp decodes in another thread crashed the process (a segmentation fault)."""
    import threading

    from docqa.errors import ClosedError, InputError

    config = built_fact_index.write_config(tmp_path / "config.yml",
                                           llm={"model_path": str(tiny_gguf), "max_new_tokens": 48})
    qa = DocQA.from_config(config)
    llm = qa.as_llm()
    first_token, answers = threading.Event(), []
    asking = threading.Thread(target=lambda: answers.append(qa.ask(QUESTION, on_token=lambda piece: first_token.set())))
    asking.start()
    assert first_token.wait(60)
    qa.close()  # returns once the answer is complete
    assert not asking.is_alive() and answers[0].timings.tokens > 1
    with pytest.raises(ClosedError, match="this DocQA is closed"):
        qa.ask(QUESTION)
    with pytest.raises(ClosedError):
        qa.retrieve(QUESTION)
    with pytest.raises(ClosedError, match="model was closed"):
        llm.invoke("Say hi.")

    with pytest.raises(ClosedError):
        qa.as_llm()

    with DocQA.from_config(config) as qa:
        with pytest.raises(InputError, match="would wait for itself"):
            qa.ask(QUESTION, on_token=lambda piece: qa.close())
        with pytest.raises(InputError, match="would free the model under it"):
            qa.ask(QUESTION, on_token=lambda piece: qa.llm.close())  # llama.cpp crashed here
        with pytest.raises(InputError, match=r"ask\(\) from inside one of this DocQA's own answers"):
            qa.ask(QUESTION, on_token=lambda piece: qa.ask("How many people did Alpha employ?"))
        passages = []
        qa.ask(QUESTION, on_token=lambda piece: passages or passages.append(qa.retrieve("Alpha staff")))
        assert passages and passages[0]

    with DocQA.from_config(config) as qa:
        llm = qa.as_llm()
        stream = llm.stream("Write a long story about a cat.")
        next(stream)  # a LangChain stream paused in this thread holds the model
        with pytest.raises(InputError, match="would free the model under it"):
            qa.close()
        assert qa.retrieve(QUESTION)  # the refused close() changed nothing
        second = "a second generation of this model inside its first"
        with pytest.raises(InputError, match=second):
            qa.ask(QUESTION)  # it would write into the paused stream's context
        with pytest.raises(InputError, match=second):
            "".join(llm.stream("Count from one to ten."))
        assert "".join(stream) is not None  # the paused stream goes on, unharmed
        with pytest.raises(InputError, match=second):  # a token callback using the model through LangChain
            qa.ask(QUESTION, on_token=lambda piece: llm.invoke("Say hi."))
    assert qa.llm is None  # the with block's close() then released it


@pytest.mark.parametrize("arguments, message", [
    ({"question": None}, "the question must be text that is not blank, not None"),
    ({"question": "   "}, "the question must be text that is not blank"),
    ({"question": b"revenue"}, "the question must be text"),
    ({"question": "revenue \ud800"}, "a lone surrogate '\\ud800' at character 9"),
    ({"k": 0}, "k must be a whole number of 1 or more, not 0"),
    ({"k": True}, "not True"),
    ({"k": "4"}, "not '4'"),
    ({"k": 2.5}, "not 2.5"),
    ({"doc": ""}, "doc must be a file-name pattern or a list of them, not ''"),
    ({"doc": []}, "not []"),
    ({"doc": 5}, "not 5"),
])
def test_bad_arguments_are_input_errors(built_fact_index, arguments, message):
    from docqa.errors import InputError

    arguments = dict(arguments)
    question = arguments.pop("question", QUESTION)
    with DocQA.from_config(built_fact_index.config, retrieval_only=True) as qa:
        for method in (qa.ask, qa.retrieve):
            with pytest.raises(InputError, match=re.escape(message)):
                method(question, **arguments)


def test_doc_may_be_a_path_to_a_file_of_the_data_folder(built_fact_index, monkeypatch, tmp_path):
    """doc=Path("data/beta-10k.pdf") was refused as no file-name pattern."""
    from pathlib import Path

    from docqa.errors import InputError

    with DocQA.from_config(built_fact_index.config, retrieval_only=True) as qa:
        data = qa.settings.path(qa.settings.paths.data)
        monkeypatch.chdir(data.parent)
        for doc in (data / "beta-10k.pdf", Path(data.name) / "beta-10k.pdf", Path("beta-10k.pdf"),
                    [Path("beta-10k.pdf")]):
            assert qa.ask(QUESTION, doc=doc).searched.documents == ("beta-10k.pdf",), doc
        with pytest.raises(InputError, match=r"doc .*elsewhere.pdf: not in the data folder"):
            qa.retrieve(QUESTION, doc=tmp_path / "elsewhere.pdf")


# ---------------------------------------------------------------- found by a developer's review (session 35)


def test_a_small_max_new_tokens_leaves_room_for_more_passages(built_fact_index, tmp_path):
    """The prompt kept room for llm.max_new_tokens whatever the answer's own limit: 5 of 6 passages left out for
    a two-token answer; the cut-off note named max_tokens, the HTTP name, to a Python caller."""
    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml",
                                                           llm={"max_new_tokens": 256, "context_length": 330}))
    class Limited(ScriptedLLM):
        def _generate(self, prompt):
            yield from self.tokens[: self._new_token_limit(self.count_tokens(prompt))]

    backend = Limited([b"seven", b" hundred", b" and", b" fifty"], context_length=330, max_new_tokens=256)
    with DocQA(settings, llm=backend) as qa:
        assert len(qa.ask(QUESTION, k=6).sources) == 1
        short = qa.ask(QUESTION, k=6, max_new_tokens=2)
    assert len(short.sources) == 6 and short.answer == "seven hundred"
    assert "the limit the question was asked with (max_new_tokens; an OpenAI client's max_tokens)" in short.notes[0]


def test_on_sources_gets_the_passages_the_answer_will_have_before_its_first_token(built_fact_index, tmp_path):
    """The web page showed the passages only with the answer's end: on a CPU, after the whole generation."""
    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml",
                                                           llm={"max_new_tokens": 256, "context_length": 330}))
    seen = []

    class Limited(ScriptedLLM):
        def _generate(self, prompt):
            seen.append("first token")
            yield from self.tokens[: self._new_token_limit(self.count_tokens(prompt))]

    def sources(found):
        seen.append((found.answer, [source.chunk_id for source in found.sources], list(found.notes)))

    backend = Limited([b"seven", b" hundred"], context_length=330, max_new_tokens=256)
    with DocQA(settings, llm=backend) as qa:
        answer = qa.ask(QUESTION, k=6, on_sources=sources)  # 5 of the 6 passages do not fit
        assert len(seen) == 2 and seen[1] == "first token"
        early_answer, early_sources, early_notes = seen[0]
        assert early_answer is None and early_notes == answer.notes
        assert early_sources == [source.chunk_id for source in answer.sources] and len(early_sources) == 1
        assert "5 of 6 passages left out" in early_notes[0]
        seen.clear()  # without generation too, so that a caller has one place to show passages
        passages = qa.ask(QUESTION, retrieval_only=True, on_sources=sources)
        assert seen == [(None, [source.chunk_id for source in passages.sources], [])]


def test_a_stop_signal_set_while_waiting_for_the_model_stops_at_once(built_fact_index, tmp_path):
    """A question waiting behind another answer saw its signal only once that answer ended (minutes on a 7B)."""
    import threading
    import time

    from docqa import StopSignal
    from docqa.errors import AnswerStopped

    class Slow(ScriptedLLM):
        def _generate(self, prompt):
            for _ in range(100):
                time.sleep(0.05)
                yield b" word"

    settings = load_settings(built_fact_index.write_config(tmp_path / "config.yml"))
    backend = Slow([], context_length=settings.llm.context_length, max_new_tokens=100)
    with DocQA(settings, llm=backend) as qa:
        first = threading.Thread(target=qa.ask, args=(QUESTION,))
        first.start()
        while not backend.generated_tokens:
            time.sleep(0.01)
        signal, stopped = StopSignal(), []

        def second() -> None:
            try:
                qa.ask("How many people did Alpha employ?", stop_signal=signal)
            except AnswerStopped:
                stopped.append(time.monotonic())

        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.2)
        set_at = time.monotonic()
        signal.set()
        waiting.join(10)
        assert stopped and not waiting.is_alive()
        assert first.is_alive()  # the first answer (5 s) still runs: the second did not wait for its end
        first.join(30)
    assert stopped[0] - set_at < 2.5


def test_arguments_ask_cannot_use_are_refused_before_anything_runs(built_fact_index, tmp_path):
    """Each failed as a raw AttributeError or TypeError, an on_token only after the prompt was evaluated."""
    import threading
    import typing

    from docqa.errors import InputError
    from docqa.ingest import build_index

    config = built_fact_index.write_config(tmp_path / "config.yml")
    settings = load_settings(config)
    with pytest.raises(InputError, match=r"DocQA\(\.\.\.\) takes a Settings \(docqa.load_settings\(path\)\), not str"):
        DocQA(str(config), retrieval_only=True)
    with pytest.raises(InputError, match=r"build_index\(\.\.\.\) takes a Settings"):
        build_index(str(config))
    with pytest.raises(InputError, match="llm must be a docqa model"):
        DocQA(settings, llm="demo")

    class LooksLikeAModel:  # the parts DocQA once looked for, without the rest of a model (its lock, its limit)
        context_length, chat_template, template_tokens = 2048, None, {}

        def count_tokens(self, text):
            return len(text.split())

        def stream(self, prompt):
            yield "an answer"

    with pytest.raises(InputError, match=r"^llm must be a docqa model \(docqa.llm.create_llm\(settings.llm, "
                                         r"settings.root\)\), not LooksLikeAModel$"):
        DocQA(settings, llm=LooksLikeAModel())
    backend = ScriptedLLM([b"ok"], context_length=settings.llm.context_length)
    with DocQA(settings, llm=backend) as qa:
        for arguments, message in [({"stop_signal": threading.Event()}, "stop_signal must be a docqa.StopSignal"),
                                   ({"stop": 5}, "stop must be a text or a list of texts, not 5"),
                                   ({"stop": ["\n", 3]}, "stop must be a text or a list of texts"),
                                   ({"on_token": "x"}, "on_token must be a function"),
                                   ({"on_sources": 3}, "on_sources must be a function")]:
            with pytest.raises(InputError, match=re.escape(message)):
                qa.ask(QUESTION, **arguments)
        assert qa.ask(QUESTION, stop="k").answer == "o"
        # StopSignal's name resolves: a LangChain tool or pydantic.validate_call reads ask's type hints
        assert typing.get_type_hints(DocQA.ask)["stop_signal"] is not None


def test_settings_take_overrides_and_say_a_bad_value_in_one_line(built_fact_index, tmp_path):
    """No way to change a setting in code: load_settings took none, an assignment gave pydantic's four-line
    report."""
    from docqa.errors import ConfigError

    config = built_fact_index.write_config(tmp_path / "config.yml", retrieval={"k": 3})
    settings = load_settings(config, retrieval={"mode": "dense"}, llm={"max_new_tokens": 64})
    assert (settings.retrieval.k, settings.retrieval.mode, settings.llm.max_new_tokens) == (3, "dense", 64)
    with pytest.raises(ConfigError, match=r"with the sections given: bad value for 'retrieval.k'"):
        load_settings(config, retrieval={"k": 0})
    with pytest.raises(ConfigError, match="unknown key 'retrival'"):
        load_settings(config, retrival={"k": 2})
    with pytest.raises(ConfigError, match=r"^bad value for 'retrieval.k': Input should be greater than 0$"):
        settings.retrieval.k = 0
    with pytest.raises(ConfigError, match=r"^unknown key 'store.format'$"):
        settings.store.format = "x"
    settings.retrieval.k = 5
    assert settings.retrieval.k == 5
