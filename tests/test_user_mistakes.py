"""Mistakes a user makes, each a one-line message and the exit code of the README's table; nothing built is lost."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docqa.cli import ask_main, build_main
from docqa.cli import main as docqa_main
from tests.support.commands import QUESTION, ROOT, run
from tests.support.pdfs import write_pdf
from tests.support.read_only import read_only, skip_if_not_mounted, writable_again


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unexpected" not in err and "Traceback" not in err, err
    return lines[0]


def run_script(script: str, *argv: str, env: dict | None = None, command=None) -> subprocess.CompletedProcess:
    full = [sys.executable, str(ROOT / script), *argv]
    return subprocess.run(command(full) if command else full, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})


# ---------------------------------------------------------------- building


def test_identical_files_are_a_note_and_every_build_exits_0(fact_project, capsys):
    shutil.copy(fact_project.data / "beta-10k.pdf", fact_project.data / "beta-copy.pdf")
    for _ in range(2):  # the first build and an "up to date" one
        code, out, err = run(build_main, fact_project.args(), capsys)
        assert code == 0, err
        assert "note: beta-copy.pdf has the same content as beta-10k.pdf; indexed once" in err
    assert out.startswith("up to date")


def test_a_vectorstore_that_is_a_file_is_named(fact_project, capsys):
    target = fact_project.root / "index-file"
    target.write_text("not a folder")
    config = fact_project.write_config(fact_project.root / "file.yml")
    config.write_text(config.read_text().replace(str(fact_project.root / "vectorstore"), str(target)))
    for main, argv in ((build_main, ["--config", str(config)]), (ask_main, ["--config", str(config), "--retrieval-only", QUESTION])):
        code, _, err = run(main, argv, capsys)
        assert code == 2
        assert "paths.vectorstore" in one_line_error(err) and "is a file, not a folder" in err
    assert target.read_text() == "not a folder"


def test_a_models_folder_that_cannot_take_the_embedding_export_is_named(fact_project, capsys):
    """It was 'unexpected NotADirectoryError' (PermissionError for a read-only folder), exit 1."""
    target = fact_project.root / "models-file"
    target.write_text("not a folder")
    config = fact_project.write_config(fact_project.root / "file.yml", paths={"models": str(target)})
    code, _, err = run(build_main, ["--config", str(config)], capsys)
    assert code == 2
    assert one_line_error(err) == (
        f"error: cannot write the embedding model's export into {target / 'onnx'} (a folder on its path is a file); "
        "point paths.models in config.yml at a folder you can write to")
    assert target.read_text() == "not a folder"


def test_a_read_only_vectorstore_at_build_is_named_and_can_still_be_queried(fact_project):
    assert build_main(fact_project.args()) == 0
    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])
    folder = fact_project.root / "vectorstore"
    try:
        built = run_script("db_build.py", *fact_project.args(), command=lambda c: read_only(folder, c))
        asked = run_script("main.py", *fact_project.args("--retrieval-only", "--k", "1", QUESTION),
                           command=lambda c: read_only(folder, c))
    finally:
        writable_again(folder)
    skip_if_not_mounted(built.returncode, built.stderr)
    assert built.returncode == 2, built.stderr
    assert f"cannot write to the index folder {folder}" in one_line_error(built.stderr)
    assert asked.returncode == 0, asked.stderr
    assert "[1] alpha-annual-report.pdf, page 2" in asked.stdout



def test_a_full_disk_is_said_in_one_line_and_the_index_stays_as_it_was(fact_project, monkeypatch, capsys):
    """A full disk was 'unexpected OperationalError: database or disk is full' (SQLite) or 'unexpected
    RuntimeError: Error in void faiss::write_index ...' (FAISS), exit 1, with a partial FAISS copy left behind."""
    import docqa.store
    from docqa.store import Store

    folder = fact_project.root / "vectorstore"
    assert build_main(fact_project.args()) == 0
    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])

    def no_space(index, path):
        Path(path).write_bytes(b"\0" * 100)  # what fitted before the disk was full
        raise RuntimeError("Error in void faiss::write_index(const Index*, const char*, int) at index_write.cpp:499: "
                           "Error: 'f' failed: could not open %s for writing: No space left on device" % path)

    monkeypatch.setattr("faiss.write_index", no_space)
    code, _, err = run(build_main, fact_project.args(), capsys)
    assert code == 2
    assert f"the disk of the index folder {folder} ran out of space; the index is as its last commit left it" in (
        one_line_error(err))
    assert "free some space and build again" in err
    assert not list(folder.rglob("*.tmp"))
    monkeypatch.undo()
    with Store(folder) as store:
        assert sorted(document.name for document in store.documents()) == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    assert build_main(fact_project.args()) == 0  # with space again, the build goes on



def test_a_full_disk_elsewhere_is_not_blamed_on_the_index_folder(fact_project, monkeypatch, capsys):
    """Any 'no space left' was 'the disk of the index folder is full', with that folder's disk 73 GB free: the models
    folder, where a build writes an int8 copy of the embedding model, had filled up."""
    import errno

    import docqa.ingest

    elsewhere = "/mnt/small/models/all-MiniLM-L6-v2/onnx/model_int8.onnx"

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", elsewhere)

    monkeypatch.setattr(docqa.ingest, "_read_and_add", no_space)
    code, _, err = run(build_main, fact_project.args(), capsys)
    assert code == 2
    assert one_line_error(err) == (f"error: a disk ran out of space during the build at {elsewhere}; the index is as "
                                   "its last commit left it: free some space there and build again")

def test_a_first_build_on_a_disk_too_small_is_said_in_one_line(fact_project):
    """On a real file system that fills up (a 64 KB tmpfs over the index folder, in a mount namespace of its own)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small file system")
    folder = fact_project.root / "vectorstore"
    folder.mkdir()
    small = lambda command: ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"',
                             str(folder), *command]
    built = run_script("db_build.py", *fact_project.args(), command=small)
    if built.returncode != 0 and "mount" in built.stderr and "error:" not in built.stderr:
        pytest.skip(f"cannot mount here: {built.stderr.strip()}")
    assert built.returncode == 2, built.stderr
    assert f"the disk of the index folder {folder} ran out of space" in one_line_error(built.stderr)
    assert list(folder.iterdir()) == []  # the tmpfs went with its namespace; nothing was written here

# ---------------------------------------------------------------- asking



@pytest.mark.parametrize("redirect, why", [(">/dev/full", " (No space left on device)"), (">&-", ": it is closed")])
def test_results_that_cannot_be_written_to_stdout_are_said(built_fact_index, redirect, why):
    """A full disk was 'unexpected OSError: [Errno 28]'; a closed stdout (>&-) exited 0 with the results lost."""
    asked = run_script("main.py", *built_fact_index.args("--retrieval-only", "--json", QUESTION),
                       command=lambda c: ["sh", "-c", f'exec "$@" {redirect}', "sh", *c])
    assert asked.returncode == 2, asked.stderr
    assert one_line_error(asked.stderr) == f"error: the results cannot be written to standard output{why}"
    assert "Exception ignored" not in asked.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list", "--help"]])
def test_help_and_version_that_cannot_be_written_are_said(argv):
    """Their text is the results: into a full disk they exited 0, the text lost."""
    shown = run_script("main.py", *argv, command=lambda c: ["sh", "-c", 'exec "$@" >/dev/full', "sh", *c])
    assert shown.returncode == 2, shown.stderr
    assert one_line_error(shown.stderr) == "error: the results cannot be written to standard output (No space left on device)"
    assert run_script("main.py", *argv).returncode == 0


def test_a_closed_stdout_is_no_matter_to_a_command_that_writes_its_results_elsewhere(built_fact_index, tmp_path):
    """The progress bar flushes stdout: a batch with stdout closed failed before its first question."""
    questions = tmp_path / "questions.txt"
    questions.write_text(f"{QUESTION}\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    batch = run_script("main.py", *built_fact_index.args("--retrieval-only", "--batch", str(questions), "--out", str(out)),
                       command=lambda c: ["sh", "-c", 'exec "$@" >&-', "sh", *c])
    assert batch.returncode == 0, batch.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1


def test_a_closed_stderr_leaves_the_results_alone(built_fact_index, tmp_path):
    """With stderr closed (2>&-, as some launchers start jobs), the progress bar failed ('NoneType' object has no
    attribute 'write') and notes and errors were printed into the results on stdout."""
    asked = run_script("main.py", *built_fact_index.args("--retrieval-only", "--json", QUESTION),
                       command=lambda c: ["sh", "-c", 'exec "$@" 2>&-', "sh", *c])
    assert asked.returncode == 0
    assert json.loads(asked.stdout)["sources"]
    questions = tmp_path / "questions.txt"
    questions.write_text(f"{QUESTION}\nHow many people did Alpha employ?\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    batch = run_script("main.py", *built_fact_index.args("--retrieval-only", "--batch", str(questions), "--out", str(out)),
                       command=lambda c: ["sh", "-c", 'exec "$@" 2>&-', "sh", *c])
    assert batch.returncode == 0 and batch.stdout == ""
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2

def test_a_huge_k_is_a_plain_error(built_fact_index, capsys):
    code, _, err = run(ask_main, built_fact_index.args("--retrieval-only", "--k", "99999999999999999999", QUESTION), capsys)
    assert code == 2
    assert "argument --k: must be at most 10,000" in err  # argparse's usage line, then its error line
    assert "unexpected" not in err and "Traceback" not in err


def test_a_question_that_is_not_utf8_is_a_plain_error(built_fact_index):
    # The shell hands Python the raw bytes; Python keeps what is not UTF-8 as lone surrogates.
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *built_fact_index.args("--retrieval-only"),
                             b"revenue \xff\xfe in 2022?"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2, result.stderr
    assert "not valid UTF-8" in one_line_error(result.stderr)


def test_a_newline_in_a_file_name_does_not_split_lines(fact_project, capsys):
    write_pdf(fact_project.data / "two\nlines.pdf", ["The minimum guarantee payable by adidas is sixty ducks."])
    assert build_main(fact_project.args()) == 0
    capsys.readouterr()
    code, out, _ = run(build_main, fact_project.args("--list"), capsys)
    assert code == 0
    assert "two\\nlines.pdf\t1 pages\t1 chunks\t" in out and len(out.splitlines()) == 4
    code, out, _ = run(ask_main, fact_project.args("--retrieval-only", "--k", "1", "sixty ducks"), capsys)
    assert code == 0
    assert out.startswith("Sources:\n[1] two\\nlines.pdf, page 1 (page index 0)")
    code, out, _ = run(ask_main, fact_project.args("--retrieval-only", "--json", "--k", "1", "sixty ducks"), capsys)
    assert json.loads(out)["sources"][0]["document"] == "two\nlines.pdf"  # JSON keeps the real name


def test_a_config_that_is_a_folder_or_not_utf8(project, capsys):
    folder = project.root / "config-folder.yml"
    folder.mkdir()
    latin = project.root / "latin.yml"
    latin.write_bytes("prompt:\n  template: 'Caf\xe9 {context} {question}'\n".encode("latin-1"))
    for config in (folder, latin):
        code, _, err = run(ask_main, ["--config", str(config), "--retrieval-only", QUESTION], capsys)
        assert code == 2
        assert str(config) in one_line_error(err)


# ---------------------------------------------------------------- batches


def write_jsonl(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{n}", "question": q}) + "\n" for n, q in enumerate(questions, 1)),
                    encoding="utf-8")
    return path


def test_a_question_that_is_not_unicode_fails_alone_and_reruns_work(built_fact_index, tmp_path, capsys):
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION, "\ud800 revenue?", "How many people did Alpha employ?"])
    assert "\\ud800" in questions.read_text()  # valid JSON: the escape of a lone surrogate
    out = tmp_path / "answers.jsonl"
    for _ in range(2):  # the run, and a rerun that retries the failed question
        code, _, err = run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"), capsys)
        assert code == 1, err  # one question failed; the batch went on
        assert "unexpected" not in err and "Traceback" not in err
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert sorted(record["id"] for record in records) == ["q1", "q2", "q3"]
        failed = {record["id"]: record["error"] for record in records if record["error"]}
        assert list(failed) == ["q2"] and "not valid Unicode text" in failed["q2"]
        assert next(record for record in records if record["id"] == "q2")["question"] == "\ud800 revenue?"


@pytest.mark.parametrize("where", ["a folder", "under a file", "not writable"])
def test_an_output_that_cannot_be_written_is_named(built_fact_index, tmp_path, capsys, monkeypatch, where):
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION])
    out = tmp_path / "answers.jsonl"
    if where == "a folder":
        out.mkdir()
    elif where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "answers.jsonl"
    else:  # root writes anywhere: the refusal is simulated where the output is opened
        import builtins

        import docqa.batch.writers

        def refuse(path, *args, **kwargs):
            if str(path) == str(out):
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(docqa.batch.writers, "open", refuse, raising=False)
    code, _, err = run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"), capsys)
    assert code == 2
    assert f"cannot write to {out}" in one_line_error(err)


def test_resuming_into_a_read_only_results_file_leaves_it_alone(built_fact_index, tmp_path, capsys):
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION, "\ud800"])
    out = tmp_path / "answers.jsonl"
    assert run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"), capsys)[0] == 1
    before = out.read_bytes()
    out.chmod(0o444)
    try:
        code, _, err = run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"), capsys)
    finally:
        out.chmod(0o644)
    assert code == 2
    assert "is read-only" in one_line_error(err)
    assert out.read_bytes() == before


def test_each_doc_refuses_questions_with_a_doc_of_their_own(built_fact_index, tmp_path, capsys, monkeypatch):
    """It asked them of every document, passing over their "doc" without a word."""
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION])
    questions.write_text(json.dumps({"id": "g1", "question": QUESTION, "doc": "alpha*"}) + "\n", encoding="utf-8")
    code, _, err = run(ask_main, built_fact_index.args("--each-doc", "--batch", str(questions), "--retrieval-only"), capsys)
    assert code == 2
    assert one_line_error(err) == (f'error: each-doc asks each document in turn, so the "doc" of question g1 in '
                                   f"{questions} would not be used; choose the documents with --doc, or ask with "
                                   f"python main.py --config {built_fact_index.config} --batch {questions} --out FILE")
    # as this user runs docqa: it said "docqa batch" to main.py's users too
    code, _, err = run(docqa_main, ["each-doc", *built_fact_index.args("--batch", str(questions), "--retrieval-only")],
                       capsys)
    assert code == 2 and one_line_error(err).endswith(
        f"or ask with docqa batch --config {built_fact_index.config} {questions} --out FILE")
    monkeypatch.chdir(tmp_path)  # main.py run from another folder: by its path, with the --config given
    code, _, err = run(ask_main, built_fact_index.args("--each-doc", "--batch", str(questions), "--retrieval-only"),
                       capsys)
    assert one_line_error(err).endswith(f"or ask with python {ROOT / 'main.py'} --config {built_fact_index.config} "
                                        f"--batch {questions} --out FILE")


def test_a_batch_doc_that_matches_nothing_is_refused_once(built_fact_index, tmp_path, capsys):
    """ask refused it; a batch failed every question with it, one error record each (exit 1)."""
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION, "How many people did Alpha employ?"])
    out = tmp_path / "answers.jsonl"
    code, _, err = run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only",
                                                       "--doc", "gamma*"), capsys)
    assert code == 2
    assert one_line_error(err).startswith("error: no indexed document matches 'gamma*'; indexed: ")
    assert not out.exists() or out.read_text(encoding="utf-8") == ""


def test_a_results_file_on_a_read_only_file_system_is_said_as_such(built_fact_index, tmp_path, capsys):
    """It said 'is read-only: make it writable', which no chmod can do on a read-only mount."""
    questions = write_jsonl(tmp_path / "questions.jsonl", [QUESTION])
    results = tmp_path / "results"
    out = results / "answers.jsonl"
    assert run(ask_main, built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"), capsys)[0] == 0
    before = out.read_bytes()
    try:
        result = run_script("main.py", *built_fact_index.args("--batch", str(questions), "--out", str(out), "--retrieval-only"),
                            command=lambda full: read_only(results, full))
    finally:
        writable_again(results)
    skip_if_not_mounted(result.returncode, result.stderr)
    assert result.returncode == 2, result.stderr
    # root ignores file modes, so read_only mounts the folder read-only there; anyone else gets its modes taken away
    said = "is on a read-only file system" if os.geteuid() == 0 else "is read-only: make it writable"
    assert f"{out} {said}" in one_line_error(result.stderr)
    assert out.read_bytes() == before


# ---------------------------------------------------------------- the embedding model


def test_an_embedding_model_to_download_while_offline_fails_at_once_in_one_line(fact_project, tmp_path):
    config = fact_project.write_config(tmp_path / "config.yml",
                                       embeddings={"model": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
    # A hub that cannot be reached (nothing listens on port 9) and an empty model cache.
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    result = run_script("db_build.py", "--config", str(config), env=offline)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)
    assert "paraphrase-MiniLM-L3-v2" in line and "cannot be reached" in line
    others = [text for text in result.stderr.splitlines() if text.strip() and "pages/s" not in text and text != line]
    assert others == [], result.stderr  # no retries warned about, nothing else: the progress bar and the error


def test_loading_a_model_leaves_the_environment_alone(project, monkeypatch):
    from docqa.embeddings.models import resolve_model
    from docqa.embeddings.torch_runtime import TorchEmbedder

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    embedder = TorchEmbedder(resolve_model(project.settings))
    assert embedder.embed_query("revenue").shape == (384,)
    assert dict(os.environ) == before


def test_two_exports_at_once_make_one(project, monkeypatch):
    """Two callers (threads here; processes take the same file lock) asking for the first export at once."""
    import threading

    from docqa.embeddings import export

    settings = project.configure(paths={"models": str(project.root / "fresh-models")})  # no export there yet
    source = export.resolve_model(settings)
    folder = export.onnx_export_folder(settings)
    writes = []
    started = threading.Barrier(2)

    def slow_write(source, staging, target):
        writes.append(staging)
        for name in export.EXPORT_FILES:
            (staging / name).write_text("x")
        meta = {"format": export.EXPORT_FORMAT, "model": source.name, "source": source.location}
        (staging / "meta.json").write_text(json.dumps(meta))
        threading.Event().wait(0.5)  # the other caller arrives while this one writes

    monkeypatch.setattr(export, "_write_export", slow_write)

    def ensure():
        started.wait()
        return export.ensure_onnx_export(settings)

    threads = [threading.Thread(target=ensure) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(writes) == 1, "the second caller waited, then found the export made"
    assert json.loads((folder / "meta.json").read_text())["source"] == source.location


def test_an_export_says_where_it_goes(project, monkeypatch, caplog):
    from docqa.embeddings import export

    class Stop(Exception):
        pass

    def stop(*args):  # the model's files are read; the export stops right after saying where it goes
        raise Stop

    monkeypatch.setattr(export, "write_bert_onnx", stop)
    settings = project.configure(paths={"models": str(project.root / "elsewhere")})
    with pytest.raises(Stop):
        export.ensure_onnx_export(settings)
    folder = project.root / "elsewhere" / "onnx" / "all-MiniLM-L6-v2"
    assert f"exporting the embedding model sentence-transformers/all-MiniLM-L6-v2 to {folder}" in caplog.text
    assert not folder.exists()
