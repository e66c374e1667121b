"""Ask a question about the indexed PDFs: python main.py "question" (see --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from docqa.cli import ask_main, exit_process  # noqa: E402

if __name__ == "__main__":
    exit_process(ask_main())
