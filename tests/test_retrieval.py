"""Retrieval mechanisms: which filings a question names, chunk headers, the queries, diversity, reranking.

Fast and self-contained: no model files and no ../shared corpus; the end-to-end cases use the hashing
embedder and generated PDFs of tests/test_batch.py.
"""

from __future__ import annotations

import pytest

from docqa.chunking import Chunk, Chunker, document_label, is_heading, page_title
from docqa.documents import Page
from docqa.errors import ModelNotFoundError
from docqa.profiles import named_documents, profile, question_years, registrant_name, same_company_names
from docqa.qa import DocQA
from docqa.retrieval import Hit, diverse, fts_query, load_reranker, with_line_items
from docqa.settings import Retrieval, Settings
from docqa.store import StoredChunk
from tests.test_batch import fake_embedder, indexed  # noqa: F401 - fixtures: an index of REPORTS

COVER = """UNITED STATES
SECURITIES AND EXCHANGE COMMISSION
FORM 10-K
For the fiscal year ended January 28, 2023
Commission File Number 1-9595 ______________ BEST BUY CO., INC.
(Exact name of registrant as specified in its charter)
"""


# ---------------------------------------------------------------- document profiles


def test_profile_reads_company_period_and_form_from_the_file_name():
    item = profile("filings/BESTBUY_2024Q2_10Q.pdf")
    assert (item.names, item.form, item.years, item.quarter) == ({"bestbuy"}, "10-Q", {2024}, 2)
    dated = profile("FOOTLOCKER_2022_8K_dated-2022-05-20.pdf")
    assert (dated.names, dated.form, dated.years) == ({"footlocker"}, "8-K", {2022})
    assert profile("acme-annual-report-2021.pdf").names == {"acme"}  # words naming a kind of document are not a name


def test_profile_adds_the_registrant_of_the_cover_page_and_its_period():
    assert registrant_name(COVER) == "BEST BUY"
    item = profile("annual-report.pdf", COVER)
    assert item.names == {"bestbuy"} and item.initials == {"bb"}
    assert item.years == {2023}  # no year in the file name: the cover page's period


def test_filings_sharing_a_name_share_all_names():
    merged = same_company_names([profile("BLOCK_2016_10K.pdf"), profile("BLOCK_2020_10K.pdf", COVER.replace("BEST BUY", "SQUARE"))])
    assert all(item.names == {"block", "square"} for item in merged)


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What is the FY2018 capital expenditure for 3M?", {2018}),
        ("Did Pfizer grow its PPNE between FY20 and FY21?", {2020, 2021}),
        ("Which region had the biggest drop in Q22023 revenues?", {2023}),
        ("As of Q2'2023, is Pfizer spinning off anything?", {2023}),
        ("What is the revenue of 12345 stores?", set()),
    ],
)
def test_question_years(question, expected):
    assert question_years(question) == expected


FILINGS = same_company_names([
    profile("3M_2018_10K.pdf"), profile("3M_2022_10K.pdf"),
    profile("BESTBUY_2023_10K.pdf"), profile("BESTBUY_2024Q2_10Q.pdf"),
    profile("JOHNSON_JOHNSON_2022_10K.pdf"), profile("MGMRESORTS_2022Q4_EARNINGS.pdf"),
    profile("PEPSICO_2023Q1_EARNINGS.pdf"), profile("PEPSICO_2023_8K_dated-2023-05-30.pdf"),
])


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What is the FY2018 capital expenditure amount for 3M?", ["3M_2018_10K.pdf"]),
        ("Is 3M a capital-intensive business?", ["3M_2018_10K.pdf", "3M_2022_10K.pdf"]),  # no year: every 3M filing
        ("What were 3M's sales in 2020?", ["3M_2018_10K.pdf", "3M_2022_10K.pdf"]),  # no filing of that year
        ("Did Best Buy's store count change between FY2023 and Q2 of FY2024?", ["BESTBUY_2024Q2_10Q.pdf"]),
        ("Roughly how many times has JnJ sold its inventory in FY2022?", ["JOHNSON_JOHNSON_2022_10K.pdf"]),
        ("Which region had the highest EBITDAR for MGM during FY2022?", ["MGMRESORTS_2022Q4_EARNINGS.pdf"]),
        ("As of FY2023Q1, why did Pepsico raise guidance?", ["PEPSICO_2023Q1_EARNINGS.pdf"]),
        ("What did PepsiCo's 8-K of 2023 announce?", ["PEPSICO_2023_8K_dated-2023-05-30.pdf"]),
        ("What drove the reduction in SG&A expense in FY2023?", []),  # names no company: search everything
        ("How big is a block of 3 shares?", []),  # lower case: an ordinary word, not a name
    ],
)
def test_named_documents(question, expected):
    assert named_documents(question, FILINGS) == expected


# ---------------------------------------------------------------- chunk headers


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Consolidated Statement of Cash Flows", True),
        ("CONSOLIDATED BALANCE SHEETS", True),
        ("Item 7. Management's Discussion and Analysis", True),
        ("Table of Contents", False),
        ("Net cash provided by operating activities 6,439 6,240 6,662", False),
        ("The Company is continuing the ongoing deployment of an ERP system.", False),
    ],
)
def test_is_heading(line, expected):
    assert is_heading(line) is expected


def test_chunks_carry_the_document_label_and_their_headings_in_what_is_indexed():
    text = ("Table of Contents\n3M Company and Subsidiaries\nConsolidated Statement of Cash Flows\n"
            "Cash Flows from Investing Activities\n" + "Purchases of property, plant and equipment (1,577)\n" * 12)
    assert page_title(text) == ["3M Company and Subsidiaries", "Consolidated Statement of Cash Flows",
                                "Cash Flows from Investing Activities"]
    chunks = list(Chunker(200, 20).split([Page("reports/3M_2018_10K.pdf", 59, text)]))
    assert len(chunks) > 2
    last = chunks[-1]
    assert last.header == ("3M 2018 10K | 3M Company and Subsidiaries | Consolidated Statement of Cash Flows | "
                           "Cash Flows from Investing Activities")
    assert last.indexed_text == f"{last.header}\n{last.text}" and "Consolidated" not in last.text
    assert document_label("manu-20f-2022-09-24.pdf") == "manu 20f 2022 09 24"


# ---------------------------------------------------------------- lexical query and diversity


def test_fts_query_quotes_content_words():
    # A year inside a word (FY2018) is searched on its own too.
    assert fts_query('What was "3M" capex in FY2018 (USD)?') == '"3m" OR "capex" OR "fy2018" OR "2018" OR "usd"'


def test_a_metric_brings_the_line_items_it_is_computed_from():
    assert with_line_items("Is 3M capital-intensive? Use its PP&E and capex.") == (
        "Is 3M capital-intensive? Use its PP&E and capex. (property, plant and equipment capital expenditures total "
        "assets; property, plant and equipment; capital expenditures purchases of property and equipment)")
    assert with_line_items("Did gross margins improve?") == "Did gross margins improve? (gross profit cost of sales revenue)"
    assert with_line_items("Who is the CEO?") == "Who is the CEO?"
    assert with_line_items("What is the capex-to-sales trend?") == "What is the capex-to-sales trend?"  # part of a word


def hit(document: str, page: int, text: str, chunk_id: int) -> Hit:
    return Hit(StoredChunk(document, page, text, id=chunk_id), 1.0 / chunk_id)


def test_diverse_takes_at_most_max_per_page_chunks_of_a_page():
    hits = [
        hit("a.pdf", 1, "revenue grew to 120 million in 2022", 1),
        hit("a.pdf", 1, "the dividend was 5 pence per share", 2),
        hit("b.pdf", 1, "revenue grew to 120 million in 2022", 3),  # same page index, another document
        hit("a.pdf", 1, "staff in Leeds", 4),
        hit("a.pdf", 2, "the board proposed a dividend", 5),
    ]
    assert [h.chunk.id for h in diverse(hits, 3, max_per_page=1)] == [1, 3, 5]
    assert [h.chunk.id for h in diverse(hits, 3, max_per_page=2)] == [1, 2, 3]
    assert [h.chunk.id for h in diverse(hits, 9, max_per_page=1)] == [1, 3, 5]


# ---------------------------------------------------------------- end to end over generated PDFs


@pytest.fixture
def defaults(indexed) -> Settings:
    """The index of REPORTS, searched with the default retrieval settings."""
    indexed.retrieval = Retrieval()
    return indexed


def test_a_question_naming_a_company_and_year_searches_that_filing(defaults):
    with DocQA(defaults, retrieval_only=True) as qa:
        named = qa.retrieve("How many people did Acme employ in 2022?", k=3)
        unnamed = qa.retrieve("How many people were employed?", k=8)
    assert {source.document for source in named} == {"acme-2022.pdf"}
    assert len({source.document for source in unnamed}) > 1


def test_named_documents_can_be_switched_off(defaults):
    defaults.retrieval.named_documents = False
    with DocQA(defaults, retrieval_only=True) as qa:
        sources = qa.retrieve("How many people did Acme employ in 2022?", k=8)
    assert len({source.document for source in sources}) > 1


class ReverseReranker:
    def rerank(self, question, hits):
        return list(reversed(hits))


def test_a_reranker_reorders_the_candidates(defaults):
    with DocQA(defaults, retrieval_only=True) as qa:
        plain = qa.retrieve("How many people did Acme employ in 2022?", k=3)
        qa.retriever.reranker = ReverseReranker()
        reranked = qa.retrieve("How many people did Acme employ in 2022?", k=3)
    assert [s.page_index for s in reranked] == [s.page_index for s in reversed(plain)]


def test_a_missing_reranker_folder_is_a_clear_error(tmp_path):
    settings = Settings()
    settings.retrieval.reranker = tmp_path / "cross-encoder"
    with pytest.raises(ModelNotFoundError, match="no cross-encoder model in .*nothing is downloaded"):
        load_reranker(settings)
    settings.retrieval.reranker = None
    assert load_reranker(settings) is None


def test_stored_chunks_keep_no_header():
    assert Chunk("a.pdf", 0, "text").indexed_text == "text"
