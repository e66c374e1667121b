"""Running a command in process, as the CLI tests do: its exit code and what it wrote."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How much is the minimum guarantee payable by adidas?"


def run(main, argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err
