"""Ask a question about the indexed PDFs: python main.py "question" (see --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from docqa.cli import ask_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(ask_main())
