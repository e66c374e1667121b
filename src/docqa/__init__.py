"""docqa: private question answering over local PDF documents."""

__version__ = "0.1.0"
__all__ = ["DocQA", "StopSignal", "build_index", "load_settings"]


def __getattr__(name: str):
    # Lazy, so that `import docqa` stays cheap for scripts that only need a part.
    if name == "DocQA":
        from docqa.qa import DocQA

        return DocQA
    if name == "StopSignal":
        from docqa.stopping import StopSignal

        return StopSignal
    if name == "build_index":
        from docqa.ingest import build_index

        return build_index
    if name == "load_settings":
        from docqa.settings import load_settings

        return load_settings
    raise AttributeError(name)
