"""Language-model backends behind one interface: ``create_llm(settings.llm, settings.root)``.

Every backend is an ``LLM``; each imports its library only when it loads a model, so importing
docqa stays fast and works without any of them installed.
"""

from docqa.llm.base import LLM
from docqa.llm.factory import create_llm, create_tokenizer, detect_format

__all__ = ["LLM", "create_llm", "create_tokenizer", "detect_format"]
