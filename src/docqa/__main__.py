"""``python -m docqa``: the ``docqa`` command, for where the console script is not on PATH."""

from docqa.cli import exit_process, main

exit_process(main(prog="python -m docqa"))
