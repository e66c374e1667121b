"""The commands as a user runs them: exit codes and what lands on stdout and stderr."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from docqa.cli import ask_main, build_main, download_main
from docqa.cli import main as docqa_main
from tests.support.commands import QUESTION, ROOT, run
from tests.support.pdfs import write_pdf


def test_build_then_retrieval_only_shows_sources_with_pages(fact_project, capsys):
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert code == 0, err
    assert "2 files: 2 added" in out and "6 pages, 6 chunks" in out
    code, out, err = run(ask_main, fact_project.args("--retrieval-only", "--k", "1", QUESTION), capsys)
    assert code == 0, err
    assert "[1] alpha-annual-report.pdf, page 2 (page index 1)" in out
    assert "seven hundred and fifty million pounds" in out
    assert "Timings: load" in out and "retrieval" in out


def test_retrieval_only_json(built_fact_index, capsys):
    code, out, err = run(ask_main, built_fact_index.args("--retrieval-only", "--json", QUESTION), capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["question"] == QUESTION and result["answer"] is None
    top = result["sources"][0]
    assert (top["document"], top["page_index"], top["page_number"]) == ("alpha-annual-report.pdf", 1, 2)
    assert len(result["sources"]) == built_fact_index.settings.retrieval.k
    assert len({source["chunk_id"] for source in result["sources"]}) == len(result["sources"])  # each chunk named once
    assert {"load", "retrieval", "total"} <= set(result["timings"])


def test_build_list(built_fact_index, capsys):
    code, out, _ = run(build_main, built_fact_index.args("--list"), capsys)
    assert code == 0
    assert "alpha-annual-report.pdf\t3 pages\t3 chunks" in out
    assert out.strip().endswith("2 documents, 6 pages, 6 chunks")


def test_build_help_shows_list_and_list_does_not_go_with_rebuild(fact_project, capsys):
    code, out, _ = run(build_main, ["--help"], capsys)
    assert code == 0 and "--list" in out and "--rebuild" in out
    code, out, err = run(build_main, fact_project.args("--list", "--rebuild"), capsys)
    assert code == 2 and out == "" and err == "error: --list shows the index; it does not go with --rebuild\n"


def test_rerun_says_up_to_date(fact_project, capsys):
    run(build_main, fact_project.args(), capsys)
    code, out, _ = run(build_main, fact_project.args(), capsys)
    assert code == 0 and out.startswith("up to date: 2 files unchanged")


def test_skipped_files_give_exit_code_5_and_are_named(fact_project, bad_corpus, capsys):
    (fact_project.data / "scan.pdf").write_bytes(bad_corpus["scanned"].read_bytes())
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert code == 5
    assert "skipped scan.pdf: no text layer (scanned?): needs OCR" in err
    assert "2 added" in out


def test_a_build_that_reads_no_page_shows_no_empty_progress_bar(fact_project, bad_corpus, capsys):
    run(build_main, fact_project.args(), capsys)
    (fact_project.data / "broken.pdf").write_bytes(bad_corpus["truncated"].read_bytes())
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert code == 5 and "skipped broken.pdf: truncated PDF" in err
    assert "pages" not in err.replace("truncated PDF", ""), err  # no "0pages [00:00, ?pages/s]"


def test_a_build_names_the_files_it_changed(fact_project, capsys, monkeypatch):
    """The summary counted them ("1 removed") without saying which; only --json did."""
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert code == 0 and "added alpha-annual-report.pdf\nadded beta-10k.pdf\n" in err
    (fact_project.data / "beta-10k.pdf").rename(fact_project.data / "beta renamed.pdf")
    (fact_project.data / "alpha-annual-report.pdf").unlink()
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert code == 0 and err == "renamed beta-10k.pdf -> beta renamed.pdf\nremoved alpha-annual-report.pdf\n"
    assert out.startswith("1 file: 0 added, 0 updated, 1 renamed, 1 removed")
    monkeypatch.setattr("docqa.cli.NAMED_CHANGES", 1)
    for number in range(3):
        write_pdf(fact_project.data / f"gamma-{number}.pdf", [f"Gamma report {number}."])
    code, out, err = run(build_main, fact_project.args(), capsys)
    assert "added gamma-0.pdf\n... and 2 more added (--json lists them all)\n" in err


def test_no_index_yet(project, capsys):
    code, out, err = run(ask_main, project.args("--retrieval-only", QUESTION), capsys)
    assert code == 3 and out == ""
    # the advice carries the --config given, so that following it builds this index and not the checkout's
    assert err.startswith("error: no index in") and err.endswith(f"python db_build.py --config {project.config}\n")
    assert err.count("\n") == 1
    assert f"(the data folder {project.data} holds no PDF files: put yours there); build it first" in err


def test_no_index_after_a_build_that_could_read_nothing_says_what_the_data_folder_holds(project, bad_corpus, capsys):
    """Right after 'nothing indexed: 1 file skipped', ask said 'no index; build it first' as if no build had run."""
    (project.data / "broken.pdf").write_bytes(bad_corpus["truncated"].read_bytes())
    assert run(build_main, project.args(), capsys)[0] == 5
    code, out, err = run(ask_main, project.args("--retrieval-only", QUESTION), capsys)
    assert code == 3 and err == (
        f"error: no index in {project.root / 'vectorstore'} (the data folder {project.data} holds 1 PDF file, none "
        f"indexed yet; a build says why it cannot read one); build it first: python db_build.py --config "
        f"{project.config}\n")
    shutil.rmtree(project.data)
    assert f"(there is no data folder {project.data}: put your PDF files there)" in run(
        ask_main, project.args("--retrieval-only", QUESTION), capsys)[2]


def test_the_docqa_command_advises_its_own_subcommands(project, capsys):
    code, _, err = run(docqa_main, ["list", *project.args()], capsys)
    assert code == 3 and err.endswith(f"build it first: docqa build --config {project.config}\n")


def test_an_error_naming_a_line_break_stays_one_line(built_fact_index, capsys):
    code, _, err = run(ask_main, built_fact_index.args("--retrieval-only", "--doc", "zeta\n*", QUESTION), capsys)
    assert code == 2 and "no indexed document matches 'zeta\\n*'" in err and err.count("\n") == 1


def test_empty_data_folder(project, capsys):
    code, _, err = run(build_main, project.args(), capsys)
    assert code == 4 and "no PDF files in" in err and err.count("\n") == 1


def test_unknown_config_key_is_named(project, capsys):
    project.config.write_text("retrieval:\n  top_k: 3\n")
    code, _, err = run(ask_main, project.args("--retrieval-only", QUESTION), capsys)
    assert code == 2 and "unknown key 'retrieval.top_k'" in err


def test_missing_model_names_path_and_download_command(built_fact_index, capsys, tmp_path):
    missing = tmp_path / "models" / "llama-2-7b-chat.Q8_0.gguf"
    config = built_fact_index.write_config(tmp_path / "config.yml", llm={"model_path": str(missing)})
    code, out, err = run(ask_main, ["--config", str(config), QUESTION], capsys)
    assert code == 2 and out == ""
    assert str(missing) in err and "python download_model.py" in err


def test_empty_question(project, capsys):
    code, _, err = run(ask_main, project.args("  "), capsys)
    assert code == 2 and "no question given" in err


def test_unknown_doc_pattern_lists_documents(built_fact_index, capsys):
    code, _, err = run(ask_main, built_fact_index.args("--retrieval-only", "--doc", "zeta*", QUESTION), capsys)
    assert code == 2 and "no indexed document matches 'zeta*'" in err and "beta-10k.pdf" in err


def test_doc_filter_restricts_sources(built_fact_index, capsys):
    code, out, _ = run(ask_main, built_fact_index.args("--retrieval-only", "--json", "--doc", "beta*", QUESTION), capsys)
    assert code == 0
    assert {s["document"] for s in json.loads(out)["sources"]} == {"beta-10k.pdf"}


def test_a_doc_pattern_in_another_case_still_matches(built_fact_index, capsys):
    """Users' own file names are cased as they came: "*ulta*" found no "Ulta Beauty Q4.pdf"."""
    code, out, _ = run(ask_main, built_fact_index.args("--retrieval-only", "--json", "--doc", "BETA*", QUESTION), capsys)
    assert code == 0 and {s["document"] for s in json.loads(out)["sources"]} == {"beta-10k.pdf"}


def test_a_question_typed_in_lower_case_still_names_its_company(built_fact_index, capsys):
    """Only capitalised words could name a company: "how many people did alpha employ?" searched everything."""
    code, out, _ = run(ask_main, built_fact_index.args("--retrieval-only", "--json", "how many people did alpha employ?"),
                       capsys)
    searched = json.loads(out)["searched"]
    assert code == 0 and (searched["scope"], searched["documents"]) == ("named", ["alpha-annual-report.pdf"])


def test_doc_given_twice_searches_the_documents_of_both(built_fact_index, capsys):
    both = ["--doc", "beta*", "--doc", "alpha*"]
    code, out, err = run(ask_main, built_fact_index.args("--retrieval-only", "--json", "--k", "6", *both, QUESTION),
                         capsys)
    assert code == 0, err
    result = json.loads(out)
    assert {s["document"] for s in result["sources"]} == {"alpha-annual-report.pdf", "beta-10k.pdf"}
    assert sorted(result["searched"]["documents"]) == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    code, out, err = run(ask_main, built_fact_index.args("--each-doc", "--retrieval-only", "--doc", "beta*",
                                                         "--doc", "alpha*", QUESTION), capsys)
    assert code == 0, err
    assert [line.split(" | ")[0] for line in out.splitlines()[2:]] == ["| alpha-annual-report.pdf", "| beta-10k.pdf"]


def test_pickle_store_is_refused(project, capsys):
    vectorstore = project.root / "vectorstore"
    vectorstore.mkdir()
    (vectorstore / "index.pkl").write_bytes(b"\x80\x04K\x01.")
    code, _, err = run(ask_main, project.args("--retrieval-only", QUESTION), capsys)
    assert code == 3 and "pickle" in err


def test_main_py_runs_as_a_script(built_fact_index):
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *built_fact_index.args("--retrieval-only", QUESTION)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "alpha-annual-report.pdf, page 2" in result.stdout
    assert "Traceback" not in result.stderr


def test_unexpected_failure_is_one_line_without_traceback(project, capsys, monkeypatch):
    import docqa.settings

    def broken(path=None, **options):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(docqa.settings, "load_settings", broken)
    code, _, err = run(ask_main, project.args("--retrieval-only", QUESTION), capsys)
    assert code == 1
    assert err == "error: unexpected RuntimeError: disk on fire (set DOCQA_DEBUG=1 to see where)\n"


def test_version(capsys):
    from importlib.metadata import version

    for command, name in ((docqa_main, "docqa"), (ask_main, "main.py"), (build_main, "db_build.py"),
                          (download_main, "download_model.py")):
        for argv in (["--version"], ["--config", "config.yml", "--version"]):
            code, out, _ = run(command, argv, capsys)
            assert code == 0 and out == f"{name} {version('docqa')}\n"


def test_python_m_docqa_is_the_docqa_command():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "docqa", "list", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "list" in done.stdout and "--json" in done.stdout


def test_progress_written_to_a_log_is_a_few_lines_not_a_frame_per_step(capsys):
    """Under cron or into a log file, a build's bar filled it with thousands of frames."""
    import time

    from docqa.progress import counted_bar

    with counted_bar("pages") as (on_total, progress):
        on_total(200)
        for _ in range(200):
            progress(1)
            time.sleep(0.005)  # a second in all: twice a second would be two frames more
    err = capsys.readouterr().err
    assert 1 <= err.count("\r") <= 2 and "200/200" in err  # the first frame and the last


def test_a_streamed_answer_starts_at_its_first_word(capsys):
    """A server's completion often begins with a line break: the text output opened with a blank line."""
    from docqa.cli import _TokenWriter

    write = _TokenWriter()
    for piece in ["\n", " \n", "The answer", " is 42.\n", "\n"]:
        write(piece)
    assert capsys.readouterr().out == "The answer is 42.\n\n"


def test_a_stopped_command_ends_without_the_interpreter_s_teardown():
    """Its teardown met the embedding runtime's native threads mid-work and aborted the process: an interrupted build
    exited 134 ("terminate called without an active exception") in 4 of 30 tries. Stand-in for such a thread: one
    that would hold the teardown for ten minutes. The output written before is kept."""
    script = ("import threading, time\n"
              "from docqa.cli import exit_process\n"
              "threading.Thread(target=time.sleep, args=(600,)).start()\n"
              "print('kept')\n"
              "exit_process(130)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert (result.returncode, result.stdout) == (130, "kept\n")


def test_warnings_advise_commands_as_the_user_types_them(fact_project, tmp_path):
    """A damaged FAISS file's warning said "python db_build.py writes it again", and the server's log "run: docqa build
    --config config.yml --rebuild" (its clients' form): followed as written, either acted on another index than the
    one the user gave with --config."""
    import logging

    from docqa.cli import AdvisingFormatter
    from docqa.ingest import build_index

    settings = fact_project.configure()
    build_index(settings)
    (faiss_file,) = fact_project.root.glob("vectorstore/**/index-*.faiss")
    data = bytearray(faiss_file.read_bytes())
    data[-64:] = b"\x7f" * 64  # the size unchanged, the checksum not
    faiss_file.write_bytes(bytes(data))
    config = str(fact_project.config)
    done = subprocess.run([sys.executable, "main.py", "--config", config, "--retrieval-only", "--k", "1", "dividend"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "WARNING: " in done.stderr and f"(python db_build.py --config {config} writes it again)" in done.stderr
    record = logging.LogRecord("docqa.server.engine", logging.WARNING, __file__, 1, "%s", (
        "the index cannot be opened by this server (settings changed; run: docqa build --config config.yml "
        "--rebuild)",), None)
    said = AdvisingFormatter("python main.py", "proj/config.yml").format(record)
    assert said == ("WARNING: the index cannot be opened by this server (settings changed; run: python db_build.py "
                    "--config proj/config.yml --rebuild)")
