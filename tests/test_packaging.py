"""What ships: the product never imports test tooling, and the sample document is a file in the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from docqa.documents import read_pages
from tests.support.sample import PAGES, SAMPLE_NAME

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = {"tests", "gguf", "pytest"}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_no_product_module_imports_test_tooling():
    sources = sorted((ROOT / "src" / "docqa").rglob("*.py"))
    assert len(sources) > 20
    offenders = {str(path.relative_to(ROOT)): imported_modules(path) & TEST_ONLY for path in sources}
    assert {path: found for path, found in offenders.items() if found} == {}
    assert not (ROOT / "src" / "docqa" / "testing").exists()


def test_the_shipped_sample_holds_the_sample_text():
    pages = read_pages(ROOT / "data" / "sample" / SAMPLE_NAME)
    def words(text):
        return re.sub(r"\s+", " ", text).strip()
    assert [words(page.text) for page in pages] == [words(text) for text in PAGES]
