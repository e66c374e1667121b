"""Financial statement pages, read from their content, and the questions whose metrics they answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from docqa.ingest import build_index
from docqa.qa import DocQA
from docqa.statements import BALANCE_SHEET, CASH_FLOWS, INCOME_STATEMENT, page_statement, statements_asked
from tests.test_batch import fake_embedder, make_settings  # noqa: F401 - fixture
from tests.test_retrieval import index_of

FIGURES = "\n".join(f"Line item {n} {1000 + 37 * n:,} {900 + 29 * n:,}" for n in range(12))


@pytest.mark.parametrize(
    "opening, expected",
    [
        ("Amcor plc and Subsidiaries\nConsolidated Balance Sheets\n($ in millions)\nAs of June 30, 2023 2022\n", BALANCE_SHEET),
        ("Table of Contents\nCONSOLIDATED STATEMENTS OF INCOME\nYear Ended December 31 (Millions) 2022 2021 2020\n",
         INCOME_STATEMENT),
        ("JOHNSON & JOHNSON AND SUBSIDIARIES\nCONSOLIDATED STATEMENTS OF EARNINGS\n(Dollars in Millions)\n", INCOME_STATEMENT),
        ("Consolidated statement of profit or loss\nYear ended 30 June\nNote 2022 £'000 2021 £'000\n", INCOME_STATEMENT),
        ("Consolidated statement of cash flows\nYear ended 30 June\n", CASH_FLOWS),
        ("Condensed Consolidated Statements of Cash Flows (Unaudited)\n(in millions)\n", CASH_FLOWS),
        ("Consolidated Statement of Financial Position\nAt 31 December\n", BALANCE_SHEET),
    ],
)
def test_a_statement_page_is_known_by_its_title_and_its_figures(opening, expected):
    assert page_statement(opening + FIGURES) == expected


@pytest.mark.parametrize(
    "opening",
    [
        # an index of the financial statements names several
        "Index to Consolidated Financial Statements\nConsolidated Statements of Income 45\n"
        "Consolidated Balance Sheets 47\nConsolidated Statements of Cash Flows 48\n",
        # a note or a discussion that names a statement is words, not figures
        "Liquidity. The balance sheet remained strong: cash and short-term investments covered our debt, and we "
        "expect to fund capital expenditures from operations in the coming year, as in the past.",
        # a segment's or a five-year summary of the statement is not the company's statement
        "TABLE 9: USCS SELECTED INCOME STATEMENT DATA\nYears Ended December 31 (Millions) 2022 2021\n",
        "Year ended 30 June\nStatement of profit or loss data: (£'000)\n",
        # the statement of comprehensive income and of changes in equity answer no metric question
        "Consolidated statement of comprehensive income/(loss)\nYear ended 30 June\n",
        "Consolidated statement of changes in equity\nShare capital Share premium\n",
    ],
)
def test_other_pages_are_no_statement(opening):
    text = opening + (FIGURES if not opening.startswith(("Index", "Liquidity")) else "")
    assert page_statement(text) is None


def test_a_title_far_down_the_page_is_no_statement_s_title():
    assert page_statement("Notes to the financial statements. " * 12 + "Consolidated Balance Sheets\n" + FIGURES) is None


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What is the FY2018 capital expenditure amount (in USD millions) for 3M?", {CASH_FLOWS}),
        ("Has the quick ratio improved between FY2022 and FY2023?", {BALANCE_SHEET}),
        ("What was the gross margin in 2022?", {INCOME_STATEMENT}),
        ("Roughly how many times did the company sell its inventory? Calculate the inventory turnover ratio.",
         {INCOME_STATEMENT, BALANCE_SHEET}),
        ("What was EBITDA in fiscal 2021?", {INCOME_STATEMENT, CASH_FLOWS}),
        ("How much did 3M spend on purchases of property, plant and equipment in 2018?", {CASH_FLOWS}),
        ("What was the net property, plant and equipment at year end?", {BALANCE_SHEET}),
        ("How much is the minimum guarantee payable by adidas?", set()),
        ("How much matchday revenue did the club bring in during fiscal 2022?", set()),  # revenue alone: see statements.py
        ("Which product category performed best in the domestic market?", set()),
    ],
)
def test_the_statements_a_question_s_metrics_are_read_from(question, expected):
    assert statements_asked(question) == expected


def balance_sheet(company: str, current: int) -> str:
    return (f"{company}\nConsolidated Balance Sheets\n(in millions) 2022 2021\nCash 1,204 1,100\nReceivables 845 790\n"
            f"Inventories 611 580\nTotal current assets {current:,} 2,470\nProperty 3,100 2,950\nGoodwill 1,410 1,410\n"
            "Total assets 7,170 6,830\nAccounts payable 702 640\nLong-term notes 2,300 2,350\nTotal equity 4,168 3,840")


FILINGS = {
    "acme-2022.pdf": [
        "FORM 10-K\nFor the fiscal year ended December 31, 2022\nACME CORP\n(Exact name of registrant as specified in its charter)",
        "Liquidity. Acme's current assets grew in 2022. We manage total current assets, and current assets at Acme "
        "stay above current liabilities; the balance sheet of Acme shows total current assets for 2022.",
        "Working capital at Acme: total current assets less current liabilities. Acme's current assets in 2022 "
        "funded growth, and Acme expects total current assets to grow again.",
        "Risk factors. Acme's total current assets in 2022 depend on customers paying on time.",
        balance_sheet("ACME CORP", 2660),
    ],
    "beta-2022.pdf": [
        "FORM 10-K\nFor the fiscal year ended December 31, 2022\nBETA FOODS INC\n(Exact name of registrant as specified in its charter)",
        balance_sheet("BETA FOODS INC", 9990),
    ],
}


def asked_with_and_without_statements(tmp_path, question: str, k: int):
    settings = index_of(tmp_path, FILINGS)
    with DocQA(settings, retrieval_only=True) as qa:
        on = qa.ask(question, k=k)
        qa.retriever.settings.statements = False
        return on, qa.ask(question, k=k)


def test_a_metric_question_brings_its_statement_page_from_the_searched_documents_only(tmp_path, fake_embedder):
    with_statements, without = asked_with_and_without_statements(tmp_path, "What were Acme's total current assets in 2022?", 2)
    assert with_statements.searched.documents == ("acme-2022.pdf",)
    assert [(s.document, s.page_index) for s in without.sources] != [] and all(
        s.page_index != 4 for s in without.sources)  # the narrative pages share more of the question's words
    pages = [(s.document, s.page_index) for s in with_statements.sources]
    assert ("acme-2022.pdf", 4) in pages and "2,660" in " ".join(s.text for s in with_statements.sources)
    assert all(s.document == "acme-2022.pdf" for s in with_statements.sources)  # Beta's balance sheet stays out


def test_a_question_about_anything_else_is_ranked_as_before(tmp_path, fake_embedder):
    on, off = asked_with_and_without_statements(tmp_path, "What risk factors did Acme describe for 2022?", 3)
    assert [(s.page_index, s.text) for s in on.sources] == [(s.page_index, s.text) for s in off.sources]
    assert on.sources[0].page_index == 3


MU_REPORT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "manu-20f-2022-09-24.pdf"


@pytest.mark.skipif(not MU_REPORT.is_file(), reason="needs ../shared/corpus (the Manchester United 20-F)")
def test_the_statements_of_a_real_annual_report(tmp_path, fake_embedder):
    settings = make_settings(tmp_path)
    settings.paths.data.mkdir()
    (settings.paths.data / MU_REPORT.name).symlink_to(MU_REPORT)
    build_index(settings)
    with DocQA(settings, retrieval_only=True) as qa:
        openings = qa.store.page_openings([record.id for record in qa.store.documents()])
    assert len(openings) == 177 and all(page.text for page in openings)
    found = {page.page_index: page_statement(page.text) for page in openings}
    found = {index: kind for index, kind in found.items() if kind}
    # the group's statements (IFRS titles), and no more than a few other pages (the parent company's statements)
    assert {119: INCOME_STATEMENT, 121: BALANCE_SHEET, 122: BALANCE_SHEET, 124: CASH_FLOWS}.items() <= found.items()
    assert len(found) <= 10, found
