"""``python -m docqa``: the ``docqa`` command, for where the console script is not on PATH."""

import sys

from docqa.cli import main

sys.exit(main(prog="python -m docqa"))
