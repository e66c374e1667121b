"""Build or update the index of every PDF under data/: python db_build.py (see --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from docqa.cli import build_main, exit_process  # noqa: E402

if __name__ == "__main__":
    exit_process(build_main())
