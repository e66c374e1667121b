"""Shared fixtures live in tests/fixtures_*.py, one module per component."""

pytest_plugins = [
    "tests.fixtures_models",
    "tests.fixtures_pdfs",
    "tests.fixtures_project",
    "tests.fixtures_server",
]
