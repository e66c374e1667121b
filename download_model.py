#!/usr/bin/env python
"""Download Llama-2-7B-Chat into the models folder.

    python download_model.py            # llama-2-7b-chat.Q8_0.gguf (llama-cpp-python or ctransformers)
    python download_model.py --ggml     # the model card's llama-2-7b-chat.ggmlv3.q8_0.bin (ctransformers)
    python download_model.py --config other.yml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from docqa.cli import download_main  # noqa: E402  (needs src/ on the path first)

if __name__ == "__main__":
    sys.exit(download_main())
