"""Language-model backends behind one interface: ``create_llm(settings.llm, settings.root)``.

Every backend is an ``LLM``; each imports its library only when it loads a model, and this package imports its
modules only when one is asked for (``docqa.llm.catalog`` alone, for ``download --help``, loads no backend), so
importing docqa stays fast and works without any of them installed.
"""

__all__ = ["LLM", "create_llm", "create_tokenizer", "detect_format"]


def __getattr__(name: str):
    if name == "LLM":
        from docqa.llm.base import LLM

        return LLM
    if name in ("create_llm", "create_tokenizer", "detect_format"):
        from docqa.llm import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'docqa.llm' has no attribute {name!r}")
