"""A project folder in tmp_path with its own data/, vectorstore/ and config.yml, sharing one models/ folder.

The models folder is shared by the whole session so that the ONNX export of the embedding model
is made once, as it is once per real installation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import yaml

from docqa.settings import Settings, load_settings
from tests.support.pdfs import write_pdf

# Known sentences on known pages: (file, page index, sentence).
FACTS = [
    ("alpha-annual-report.pdf", 0, "Alpha Industries designs industrial pumps for water utilities."),
    ("alpha-annual-report.pdf", 1, "The minimum guarantee payable by adidas is seven hundred and fifty million pounds."),
    ("alpha-annual-report.pdf", 2, "Alpha employed 3,400 people across nine countries at the end of the year."),
    ("beta-10k.pdf", 0, "Beta Corporation sells cloud accounting software to small businesses."),
    ("beta-10k.pdf", 1, "Capital expenditure for fiscal 2022 was 1,577 million dollars, mostly data centres."),
    ("beta-10k.pdf", 2, "The board declared a quarterly dividend of 42 cents per share."),
]


def write_fact_pdfs(folder: Path) -> None:
    pages: dict[str, list[str]] = {}
    for name, page_index, sentence in FACTS:
        pages.setdefault(name, []).append(sentence)
        assert len(pages[name]) == page_index + 1
    for name, texts in pages.items():
        write_pdf(folder / name, texts)


@dataclass
class Project:
    root: Path
    models: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    def configure(self, **sections: dict) -> Settings:
        return load_settings(self.write_config(self.config, **sections))

    def write_config(self, path: Path, **sections: dict) -> Path:
        """A config file at ``path`` for this project's folders, with ``sections`` merged in."""
        raw = {"paths": {"models": str(self.models), "data": str(self.data), "vectorstore": str(self.root / "vectorstore")}}
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return path

    @property
    def settings(self) -> Settings:
        return load_settings(self.config)

    def args(self, *argv: str, config: Optional[Path] = None) -> list[str]:
        return ["--config", str(config or self.config), *argv]


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def project(tmp_path, shared_models) -> Project:
    """An empty project: data/ exists, no PDFs, no index."""
    project = Project(tmp_path / "project", shared_models)
    project.data.mkdir(parents=True)
    project.configure()
    return project


@pytest.fixture
def fact_project(project) -> Project:
    """A project whose data/ holds the FACTS PDFs (not yet indexed)."""
    write_fact_pdfs(project.data)
    return project


@pytest.fixture(scope="session")
def built_fact_index(tmp_path_factory, shared_models) -> Project:
    """A project with the FACTS PDFs indexed once for the session; tests must not change it."""
    from docqa.ingest import build_index

    project = Project(tmp_path_factory.mktemp("built") / "project", shared_models)
    project.data.mkdir(parents=True)
    write_fact_pdfs(project.data)
    build_index(project.configure())
    return project


SAMPLE_REPORT = Path(__file__).resolve().parents[1] / "data" / "sample" / "northwind-annual-report-2023.pdf"


@pytest.fixture(scope="session")
def built_sample_index(tmp_path_factory, shared_models) -> Project:
    """A project with the repository's sample annual report (data/sample) indexed once; tests must not change it."""
    import shutil

    from docqa.ingest import build_index

    project = Project(tmp_path_factory.mktemp("sample") / "project", shared_models)
    project.data.mkdir(parents=True)
    shutil.copy(SAMPLE_REPORT, project.data)
    build_index(project.configure())
    return project
