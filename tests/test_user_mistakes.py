"""Mistakes a user makes, each a one-line message and the exit code of the README's table; nothing built is lost."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docqa.cli import ask_main, build_main
from docqa.testing.pdfs import write_pdf

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How much is the minimum guarantee payable by adidas?"


def run(main, argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unexpected" not in err and "Traceback" not in err, err
    return lines[0]


def read_only(folder: Path, command: list[str]) -> list[str]:
    """``command`` run with ``folder`` read-only: root ignores file modes, so there it is mounted read-only in a
    mount namespace of its own; anyone else gets the folder's write permission taken away."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & 0o555)
        return command
    if not shutil.which("unshare"):
        pytest.skip("needs unshare to make a read-only folder as root")
    return ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *command]


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


def test_a_read_only_vectorstore_at_build_is_named_and_can_still_be_queried(fact_project):
    assert build_main(fact_project.args()) == 0
    write_pdf(fact_project.data / "gamma.pdf", ["Gamma is new."])
    folder = fact_project.root / "vectorstore"
    try:
        built = run_script("db_build.py", *fact_project.args(), command=lambda c: read_only(folder, c))
        asked = run_script("main.py", *fact_project.args("--retrieval-only", "--k", "1", QUESTION),
                           command=lambda c: read_only(folder, c))
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    if built.returncode != 0 and "mount" in built.stderr and "error:" not in built.stderr:
        pytest.skip(f"cannot mount read-only here: {built.stderr.strip()}")
    assert built.returncode == 2, built.stderr
    assert f"cannot write to the index folder {folder}" in one_line_error(built.stderr)
    assert asked.returncode == 0, asked.stderr
    assert "[1] alpha-annual-report.pdf, page 2" in asked.stdout


# ---------------------------------------------------------------- asking


def test_a_huge_k_is_a_plain_error(built_fact_index, capsys):
    code, _, err = run(ask_main, built_fact_index.args("--retrieval-only", "--k", "99999999999999999999", QUESTION), capsys)
    assert code == 2
    assert "--k" in one_line_error(err)


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
