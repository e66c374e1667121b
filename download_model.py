#!/usr/bin/env python
"""Download a chat model into the models folder (README, "Models": sizes and memory of each quantization).

    python download_model.py                    # llama-2-7b-chat.Q8_0.gguf (llama-cpp-python or ctransformers)
    python download_model.py --quant Q4_K_M     # another quantization of TheBloke/Llama-2-7B-Chat-GGUF, Q2_K to Q8_0
    python download_model.py --ggml             # the model card's llama-2-7b-chat.ggmlv3.q8_0.bin (ctransformers)
    python download_model.py --repo OWNER/NAME --file MODEL.gguf   # any GGUF chat model on the Hugging Face hub
    python download_model.py --config other.yml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from docqa.cli import download_main, exit_process  # noqa: E402  (needs src/ on the path first)

if __name__ == "__main__":
    exit_process(download_main())
