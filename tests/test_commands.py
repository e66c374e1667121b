"""The docqa subcommands, in process: the project folder's config.yml, the registry, help, and main.py's old flags."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from docqa import cli
from docqa.cli import COMMANDS, Command, ask_main, build_main, main

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How much is the minimum guarantee payable by adidas?"
SUBCOMMANDS = ["ask", "build", "list", "batch", "each-doc", "evaluate", "download", "serve"]


def test_the_console_script_is_docqa_main_ended_as_the_scripts_end(monkeypatch):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, function = scripts["docqa"].split(":")
    assert (module, getattr(cli, function)) == ("docqa.cli", cli.console_main)
    ended = []
    monkeypatch.setattr(cli, "main", lambda: 7)
    monkeypatch.setattr(cli, "exit_process", ended.append)
    cli.console_main()
    assert ended == [7]  # main's code, through exit_process as main.py and db_build.py end


def test_inside_a_project_folder_its_config_yml_is_used(fact_project, monkeypatch, capsys):
    monkeypatch.chdir(fact_project.root)
    assert main(["build"]) == 0
    assert "2 files: 2 added" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    assert [record["name"] for record in json.loads(capsys.readouterr().out)] == ["alpha-annual-report.pdf",
                                                                                  "beta-10k.pdf"]
    assert main(["ask", "--retrieval-only", "--json", "--k", "1", QUESTION]) == 0
    top = json.loads(capsys.readouterr().out)["sources"][0]
    assert (top["document"], top["page_number"]) == ("alpha-annual-report.pdf", 2)


def test_a_folder_without_config_yml_is_a_project_with_default_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 3
    assert f"no index in {tmp_path / 'vectorstore'}" in capsys.readouterr().err


def test_config_elsewhere(built_fact_index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["list", "--config", str(built_fact_index.config)]) == 0
    assert capsys.readouterr().out.strip().endswith("2 documents, 6 pages, 6 chunks")


@pytest.mark.parametrize("entry", [main, ask_main, build_main])
def test_config_before_the_command_is_the_command_s(built_fact_index, tmp_path, monkeypatch, capsys, entry):
    """`main.py --config X list` asked "list" as a question; `docqa --config X list` said "invalid choice"."""
    monkeypatch.chdir(tmp_path)
    config = str(built_fact_index.config)
    for argv in (["--config", config, "list"], [f"--config={config}", "list"]):
        assert entry(argv) == 0
        assert capsys.readouterr().out.strip().endswith("2 documents, 6 pages, 6 chunks")


def test_batch_each_doc_and_evaluate_subcommands(built_fact_index, tmp_path, capsys):
    questions = tmp_path / "questions.txt"
    questions.write_text(f"{QUESTION}\nHow many people did Alpha employ?\n", encoding="utf-8")
    answers = tmp_path / "answers.csv"
    config = ["--config", str(built_fact_index.config)]
    assert main(["batch", str(questions), "--out", str(answers), "--retrieval-only", "--k", "1", *config]) == 0
    assert "2 retrieved (no model: passages only), 0 failed" in capsys.readouterr().err
    assert answers.read_text(encoding="utf-8").splitlines()[0].startswith("id,question,doc,answer")

    assert main(["each-doc", "--batch", str(questions), "--retrieval-only", "--k", "1", *config]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| document | q1: How much") and [row.split(" | ")[0] for row in table[2:]] == [
        "| alpha-annual-report.pdf", "| beta-10k.pdf"]

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "g1", "doc": "alpha-annual-report.pdf", "question": QUESTION, "pages": [1]}),
                    encoding="utf-8")
    assert main(["evaluate", str(gold), "--k", "1", "2", *config]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["recall@1"], result["recall@2"]) == (1.0, 1.0)


def test_a_copy_of_an_indexed_file_is_listed_and_found_by_its_name(fact_project, capsys):
    """A copy is indexed once, under the other name: `list` did not show it, and --doc with its name said "no
    indexed document matches", though the build had said it was indexed."""
    import shutil

    assert main(["build", *fact_project.args()]) == 0
    shutil.copy(fact_project.data / "beta-10k.pdf", fact_project.data / "Beta annual report (1).pdf")
    assert main(["build", *fact_project.args()]) == 0  # nothing else changed: the copy is kept all the same
    capsys.readouterr()
    assert main(["list", *fact_project.args()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == ["alpha-annual-report.pdf", "beta-10k.pdf"]
    assert lines[1].endswith("\talso as: Beta annual report (1).pdf (the same file, indexed once)")
    assert main(["list", "--json", *fact_project.args()]) == 0
    assert {record["name"]: record["copies"] for record in json.loads(capsys.readouterr().out)} == {
        "alpha-annual-report.pdf": [], "beta-10k.pdf": ["Beta annual report (1).pdf"]}
    for pattern in ("Beta annual report (1).pdf", "*annual report (1)*"):
        assert main(["ask", "--retrieval-only", "--json", "--doc", pattern, QUESTION, *fact_project.args()]) == 0
        assert json.loads(capsys.readouterr().out)["searched"]["documents"] == ["beta-10k.pdf"]
    (fact_project.data / "Beta annual report (1).pdf").unlink()  # a build with nothing else changed forgets it
    assert main(["build", *fact_project.args()]) == 0
    capsys.readouterr()
    assert main(["list", *fact_project.args()]) == 0
    assert "the same file" not in capsys.readouterr().out
    assert main(["ask", "--retrieval-only", "--doc", "Beta annual report (1).pdf", QUESTION, *fact_project.args()]) == 2
    assert "no indexed document matches" in capsys.readouterr().err


def test_list_says_what_each_document_is_read_as(fact_project, capsys):
    """A question narrowed oddly, and nothing showed what company, form and period docqa had read each file as."""
    from tests.support.pdfs import write_pdf

    write_pdf(fact_project.data / "q2.pdf", ["FORM 10-Q\nFor the quarterly period ended July 29, 2023\nBEST BUY CO., "
                                            "INC.\n(Exact name of registrant as specified in its charter)"])
    assert main(["build", *fact_project.args()]) == 0
    capsys.readouterr()
    assert main(["list", "--json", *fact_project.args()]) == 0
    labels = {record["name"]: record["label"] for record in json.loads(capsys.readouterr().out)}
    assert labels == {"alpha-annual-report.pdf": "", "beta-10k.pdf": "", "q2.pdf": "BEST BUY 10-Q 2023"}
    assert main(["list", *fact_project.args()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("q2.pdf\t1 pages") and lines[2].endswith("\tBEST BUY 10-Q 2023")
    assert lines[0].endswith("\t-")  # nothing read from its first page


def test_main_py_and_db_build_py_take_subcommands_too(built_fact_index, capsys):
    assert ask_main(["list", *built_fact_index.args()]) == 0
    assert build_main(["list", *built_fact_index.args()]) == 0
    listings = capsys.readouterr().out.split("2 documents, 6 pages, 6 chunks\n")
    assert listings[2] == "" and listings[0] == listings[1] and "alpha-annual-report.pdf\t3 pages" in listings[0]


def test_help_is_short_and_names_every_subcommand(capsys):
    assert main(["--help"]) == 0
    overview = capsys.readouterr().out
    assert all(name in overview for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: docqa {name}") and "--config" in text and len(text.splitlines()) < 30
    assert ask_main(["--help"]) == 0
    epilog = capsys.readouterr().out.replace("\n", " ")
    assert 'python main.py "question" is python main.py ask "question"' in epilog
    assert "python main.py ask --help gives the options a question takes (--json, --doc, --k" in epilog


def test_a_registered_command_is_offered_and_run(monkeypatch, capsys):
    def arguments(parser):
        parser.add_argument("--port", type=int, default=8000)

    def hello(args):
        print(f"hello on {args.port}")
        return 0

    monkeypatch.setitem(COMMANDS, "hello", Command("hello", "Say hello.", arguments, hello))
    assert main(["hello", "--port", "9000"]) == 0
    assert capsys.readouterr().out == "hello on 9000\n"
    assert ask_main(["hello"]) == 0  # python main.py hello
    assert capsys.readouterr().out == "hello on 8000\n"
    assert main(["--help"]) == 0 and "hello     Say hello." in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["ask", "--frobnicate", "q"], ["nonsense-command-name"], ["evaluate"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["ask", "--frobnicate", "q"], ["evaluate", "gold.jsonl", "--k", "0"],
                                  ["list", "--json", "extra"]])
def test_usage_errors_are_one_line_not_the_usage_block(argv, capsys):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"docqa {argv[0]}: error: ") and "--help" in lines[0], lines


def test_the_gold_file_may_follow_the_cut_offs(built_fact_index, tmp_path, capsys):
    """--k takes every word after it: `evaluate --k 1 2 gold.jsonl` read the gold file as a cut-off."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "g1", "doc": "alpha-annual-report.pdf", "question": QUESTION, "pages": [1]}),
                    encoding="utf-8")
    config = ["--config", str(built_fact_index.config)]
    assert main(["evaluate", "--k", "1", "2", str(gold), *config]) == 0
    assert sorted(key for key in json.loads(capsys.readouterr().out) if key.startswith("recall@")) == [
        "recall@1", "recall@2"]
    assert ask_main(["--evaluate", "--k", "1", str(gold), *config]) == 0  # main.py's old flag, the same
    assert "recall@1" in json.loads(capsys.readouterr().out)
    assert ask_main([*config, "--evaluate", "--k", "1", str(gold)]) == 0  # an option right after --evaluate
    assert "recall@1" in json.loads(capsys.readouterr().out)
    details = tmp_path / "details.jsonl"
    assert ask_main([*config, "--evaluate", "--details", str(details), str(gold)]) == 0
    capsys.readouterr()
    assert details.is_file()
    assert main(["evaluate", "--k", "1", str(gold), str(gold), *config]) == 2  # two gold files
    assert capsys.readouterr().err == f"error: evaluate scores one gold file, not 2 ({gold}, {gold}); run it once " \
                                      "for each\n"
    assert main(["evaluate", "--k", "1", "x", str(gold), *config]) == 2
    assert capsys.readouterr().err == "error: --k: invalid whole number: 'x' (one gold file is scored, before or " \
                                      "after the cut-offs)\n"


@pytest.mark.parametrize("entry, argv", [(ask_main, ["--evaluate"]), (main, ["evaluate"]), (ask_main, ["--batch"])])
def test_a_command_flag_without_its_file_says_the_file_is_needed(entry, argv, capsys):
    """`main.py --evaluate` said "unrecognized arguments: --evaluate", as though it were no option."""
    assert entry(argv) == 2
    err = capsys.readouterr().err
    assert "unrecognized" not in err and ("gold file" in err or "FILE" in err), err


def test_domain_errors_end_as_one_line(tmp_path, capsys):
    assert main(["ask", "--config", str(tmp_path / "absent.yml"), QUESTION]) == 2
    assert capsys.readouterr().err == f"error: config file not found: {tmp_path / 'absent.yml'}\n"


def test_the_old_db_build_flags(fact_project, capsys):
    assert build_main(fact_project.args("--rebuild", "--json")) == 0
    assert len(json.loads(capsys.readouterr().out)["added"]) == 2
    assert build_main(fact_project.args("--list", "--json")) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
