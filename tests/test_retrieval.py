"""Retrieval mechanisms: which filings a question names, chunk headers, the queries, diversity, reranking.

Fast and self-contained: no model files and no ../shared corpus; the end-to-end cases use the hashing
embedder and generated PDFs of tests/test_batch.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from docqa.chunking import Chunk, Chunker, is_heading, page_title
from docqa.documents import Page, read_pages
from docqa.errors import ModelNotFoundError
from datetime import date

from docqa.profiles import (
    contracts,
    dated_documents,
    describe,
    full_dates,
    mentions,
    named_documents,
    naming,
    profile,
    question_years,
    registrant_name,
    same_company_names,
    possessive_names,
    with_fiscal_quarters,
)
from docqa.cli import ask_main
from docqa.ingest import build_index
from docqa.qa import DocQA
from docqa.reranking import Reranker, load_reranker
from docqa.retrieval import (
    Hit,
    diverse,
    each_company,
    fts_query,
    join_overlapping,
    with_continuation,
    with_line_items,
    with_runner_ups,
)
from docqa.settings import Retrieval, Settings
from docqa.store import StoredChunk
from tests.test_batch import config, fake_embedder, indexed, make_settings, write_reports  # noqa: F401 - fixtures

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
    # "Best" alone is a guess: a hint, which narrows only where it tells documents apart
    assert item.names == {"bestbuy", "best"} and item.initials == {"bb"} and item.hinted == {"best"}
    # A year to late January: some companies call it fiscal 2023, others fiscal 2022.
    assert item.years == {2022, 2023} and item.form == "10-K"
    assert profile("BESTBUY_2023_10K.pdf").hinted == {"bestbuy"}  # from the file name alone: a hint


@pytest.mark.parametrize(
    "first_page, label",
    [
        (COVER, "BEST BUY 10-K 2023"),
        # No "exact name" caption: the name stands under the commission file number.
        ("UNITED STATES\nSECURITIES AND EXCHANGE COMMISSION\nFORM 10-K\nFor the fiscal year ended December 31, 2018\n"
         "Commission file number 1-3285\n3M COMPANY\nState of Incorporation: Delaware", "3M 10-K 2018"),
        # One word per line, as some PDFs extract; non-breaking spaces.
        ("FORM\n10-K\nFor\nthe\nfiscal\nyear\nended\nDecember\n31,\n2016\nCommission\nFile\nNumber\n001-37622\n"
         "SQUARE,\nINC.\n(Exact\nname\nof\nregistrant\nas\nspecified)", "SQUARE 10-K 2016"),
        ("FORM 20-F\nFor\xa0the\xa0fiscal\xa0year\xa0ended\xa030 June 2022\nCommission file number 001-35627\n"
         "MANCHESTER UNITED plc\n(Exact name of Registrant as specified in its charter)", "MANCHESTER UNITED 20-F 2022"),
        ("FORM 8-K\nCURRENT REPORT\nDate of Report (Date of earliest event reported): July 1, 2022 (June 30, 2022)\n"
         "AMCOR PLC\n(Exact name of registrant as specified in its charter)", "AMCOR 8-K 2022"),
        # Press releases: the issuer before its ticker, the headline's period; a form named further down is not its own.
        ("March 9, 2023\nUlta Beauty Announces Fourth Quarter\nFiscal 2022 Results\nBOLINGBROOK, Ill.--(BUSINESS WIRE)-- "
         "Ulta Beauty, Inc. (NASDAQ: ULTA) today announced results" + " filler" * 80 + " see our Form 10-Q",
         "Ulta Beauty 2022Q4"),
        ("Amcor reports fiscal 2023 results and provides outlook for fiscal 2024\nJune 2023 quarter", "Amcor 2023"),
        ("Minutes of the meeting of the garden club", ""),
    ],
)
def test_describe_reads_company_form_and_period_from_the_first_page(first_page, label):
    assert describe(first_page).label == label


def test_describe_gives_every_year_a_period_may_be_called_by():
    quarter = describe("FORM 10-Q\nFor the quarterly period ended July 29, 2023\nCommission File Number 1-9595\n"
                       "BEST BUY CO., INC.\n(Exact name of registrant as specified in its charter)")
    assert (quarter.year, quarter.years) == (2023, {2023, 2024})  # Best Buy's Q2 of fiscal 2024
    assert describe("FORM 10-K\nFor the fiscal year ended June 30, 2023").years == {2023}


def test_describe_reads_the_day_the_period_ends():
    assert describe(COVER).period_end == date(2023, 1, 28)
    assert describe("FORM 20-F\nFor the fiscal year ended 30 June 2022\nMANCHESTER UNITED plc").period_end == date(2022, 6, 30)
    assert describe("FORM 10-Q\nFor the quarterly period ended July 2, 2023").period_end == date(2023, 7, 2)
    assert describe("PepsiCo Reports First-Quarter 2023 Results").period_end is None  # a headline names no day


def test_full_dates_are_whole_dates_only():
    text = "at 30 June 2022, June 30, 2021 and Jun. 30 2020; not 31 June 2022, June 2022, 2022 or 30 Junes 2022"
    assert full_dates(text) == [date(2022, 6, 30), date(2021, 6, 30), date(2020, 6, 30)]


def test_a_question_naming_a_period_end_names_the_filings_for_that_period():
    filings = [profile("manu.pdf", "FORM 20-F\nFor the fiscal year ended 30 June 2022\nMANCHESTER UNITED plc"),
               profile("msft.pdf", "FORM 10-K\nFor the Fiscal Year Ended June 30, 2023\nMICROSOFT CORPORATION"),
               profile("bby.pdf", COVER)]
    assert dated_documents("What were total lease liabilities at 30 June 2022?", filings) == ["manu.pdf"]
    assert dated_documents("Lease liabilities at June 30, 2023 and 28 January 2023?", filings) == ["msft.pdf", "bby.pdf"]
    assert dated_documents("What were total lease liabilities in June 2022?", filings) == []  # no day: not a period end
    assert dated_documents("What were total lease liabilities at 31 March 2022?", filings) == []  # no such period


def test_a_contraction_takes_a_beginning_of_every_word_of_the_name_in_order():
    assert contracts("amex", ("american", "express")) and contracts("fedex", ("federal", "express"))
    assert not contracts("amex", ("american", "airlines", "express"))  # a word left out
    assert not contracts("exam", ("american", "express"))  # out of order
    assert not contracts("amex", ("amex",))  # one word: a plain name, matched as one


def cover(company: str, ended: str = "December 31, 2022") -> str:
    return f"FORM 10-K\nFor the fiscal year ended {ended}\n{company}\n(Exact name of registrant as specified in its charter)"


def test_a_file_name_shared_by_two_companies_does_not_merge_them():
    merged = same_company_names([
        profile("exhibit99-1.pdf", cover("AMCOR PLC")), profile("exhibit99-1 (1).pdf", cover("JOHNSON & JOHNSON")),
        profile("amcr-20230630.pdf", cover("AMCOR PLC")), profile("notes.pdf"), profile("notes (2).pdf"),
    ])
    assert [sorted(item.names) for item in merged] == [
        ["amcor", "amcr"], ["johnson", "johnsonjohnson"], ["amcor", "amcr"], ["notes"], ["notes"]]
    assert merged[1].hinted == {"johnson"}  # no "exhibit99": a kind of document and its number, not a name


def test_a_question_names_a_company_by_the_first_words_of_its_name(tmp_path):
    filings = same_company_names([
        profile("Annual Report 2022.pdf", cover("VERIZON COMMUNICATIONS INC.")),
        profile("cost-20210829.pdf", cover("COSTCO WHOLESALE CORPORATION", "August 29, 2021")),
        profile("axp-20221231.pdf", cover("AMERICAN EXPRESS COMPANY")),
    ])
    assert named_documents("Is Verizon a capital intensive business based on FY 2022 data?", filings) == [
        "Annual Report 2022.pdf"]
    assert named_documents("What were Costco's total assets in FY2021?", filings) == ["cost-20210829.pdf"]

    def common(phrase, item):  # as if every other filing contained the phrase
        return False

    assert named_documents("Which American companies grew?", filings, common) == []  # a hint that tells nothing apart
    assert named_documents("What did Verizon Communications earn?", filings, common) == ["Annual Report 2022.pdf"]


def test_a_quarterly_report_is_numbered_by_its_company_s_fiscal_year():
    def quarterly(name, company, ended):
        return profile(name, f"FORM 10-Q\nFor the quarterly period ended {ended}\n{company}\n"
                             "(Exact name of registrant as specified in its charter)")

    filings = with_fiscal_quarters(same_company_names([
        profile("amcr-20230630.pdf", cover("AMCOR PLC", "June 30, 2023")),
        quarterly("amcr-20221231.pdf", "AMCOR PLC", "December 31, 2022"),  # Q2 of fiscal 2023
        profile("bby-20230128.pdf", COVER),
        quarterly("bby-20230729.pdf", "BEST BUY CO., INC.", "July 29, 2023"),  # Q2 of fiscal 2024
        profile("pfe-20211231.pdf", cover("PFIZER INC.", "December 31, 2021")),
        quarterly("pfe-20230702.pdf", "PFIZER INC.", "July 2, 2023"),  # a 52-week quarter: Q2
        quarterly("acme-20230930.pdf", "ACME CORP", "September 30, 2023"),  # no annual report: unknown
    ]))
    assert [item.quarter for item in filings] == [None, 2, None, 2, None, 2, None]
    assert named_documents("What was Amcor's restructuring liability as of Q2 of FY2023?", filings) == ["amcr-20221231.pdf"]


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
        ("What was capex in FY99?", {1999}),
        ("What was capex in FY'22?", {2022}),
    ],
)
def test_question_years(question, expected):
    assert question_years(question) == expected


FILINGS = same_company_names([
    profile("3M_2018_10K.pdf"), profile("3M_2022_10K.pdf"),
    profile("BESTBUY_2023_10K.pdf"), profile("BESTBUY_2024Q2_10Q.pdf"),
    profile("JOHNSON_JOHNSON_2022_10K.pdf", "FORM 10-K\nFor the fiscal year ended January 1, 2023\nJOHNSON & JOHNSON\n"
            "(Exact name of registrant as specified in its charter)"),  # initials come from the content's name
    profile("MGMRESORTS_2022Q4_EARNINGS.pdf"),
    profile("axp-20221231.pdf", "FORM 10-K\nFor the fiscal year ended December 31, 2022\nAMERICAN EXPRESS COMPANY\n"
            "(Exact name of registrant as specified in its charter)"),
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
        ("Does AMEX have an improving operating margin as of 2022?", ["axp-20221231.pdf"]),  # AM(erican) EX(press)
        ("Did AmEx retain its card members?", ["axp-20221231.pdf"]),
        ("What is AMEXX?", []),  # "exx" begins no word of the name
        # A name in lower case in a question with capitals: the name the content gives counts (where it tells the
        # documents apart: always, here), a file name's never ("pepsico" is only in PEPSICO_2023Q1_EARNINGS.pdf's)
        ("Did american express retain its card members in FY2022?", ["axp-20221231.pdf"]),
        ("Why did pepsico raise guidance in FY2023Q1?", []),
        ("Did american retain its card members in FY2022?", ["axp-20221231.pdf"]),  # its first words, as "Amazon"
    ],
)
def test_named_documents(question, expected):
    assert named_documents(question, FILINGS) == expected


def sec_cover(company: str, form: str, period: str) -> str:
    return f"FORM {form}\nFor the {period}\n{company}\n(Exact name of registrant as specified in its charter)"


WEEK = same_company_names([
    profile("AMZN 10-K 2019.pdf", sec_cover("AMAZON.COM, INC.", "10-K", "fiscal year ended December 31, 2019")),
    profile("amzn-20171231.pdf", sec_cover("AMAZON.COM, INC.", "10-K", "fiscal year ended December 31, 2017")),
    profile("Annual Report 2023 (1).pdf", sec_cover("BEST BUY CO., INC.", "10-K", "fiscal year ended January 28, 2023")),
    profile("q2.pdf", sec_cover("BEST BUY CO., INC.", "10-Q", "quarterly period ended July 29, 2023")),
    profile("Nike 10-K.pdf", sec_cover("NIKE, Inc.", "10-K", "fiscal year ended May 31, 2018")),
    profile("nke-20190531.pdf", sec_cover("NIKE, Inc.", "10-K", "fiscal year ended May 31, 2019")),
    profile("Nike 10-K (new).pdf", sec_cover("NIKE, Inc.", "10-K", "fiscal year ended May 31, 2021")),
])


@pytest.mark.parametrize(
    "question, documents, unmet",
    [
        # Each company's filings are narrowed on their own: Best Buy, with no filing of 2019, was dropped unsaid
        ("Compare Amazon's and Best Buy's total revenue in 2019",
         ["AMZN 10-K 2019.pdf", "Annual Report 2023 (1).pdf", "q2.pdf"], ["no Best Buy filing reports 2019"]),
        # An older year than the latest filing reports as comparatives brings its own filing: only FY2021's was kept
        ("Compare Nike's revenues in fiscal 2018 and fiscal 2021", ["Nike 10-K (new).pdf", "Nike 10-K.pdf"], []),
        ("Compare Nike's revenues in fiscal 2019 and fiscal 2021", ["Nike 10-K (new).pdf"], []),  # a comparative
        ("What did Amazon's latest 10-Q say about AWS?", ["AMZN 10-K 2019.pdf", "amzn-20171231.pdf"],
         ["no Amazon 10-Q is indexed"]),
        ("How much did Amazon owe on its notes due 2027?", ["AMZN 10-K 2019.pdf", "amzn-20171231.pdf"], []),
        # a 10-Q of another year is indexed: no claim that none is
        ("What did Best Buy's 10-Q for fiscal 2022 say?", ["Annual Report 2023 (1).pdf"], []),
        ("What was Amazon's revenue in 2017?", ["amzn-20171231.pdf"], []),
    ],
)
def test_each_named_company_is_narrowed_on_its_own(question, documents, unmet):
    named = naming(question, WEEK)
    assert (sorted(named.documents), named.unmet) == (sorted(documents), unmet)


def test_each_company_named_gets_a_passage():
    """"Amazon's and Nike's net income" gave four passages of Nike's filing, whose pages matched best."""
    def hit(document: str, page: int, score: float) -> Hit:
        return Hit(StoredChunk(document, page, f"{document} {page}", id=page), score)

    hits = [hit("nke.pdf", 52, 0.9), hit("nke.pdf", 28, 0.8), hit("nke.pdf", 31, 0.7), hit("amzn.pdf", 38, 0.6),
            hit("nke.pdf", 53, 0.5)]
    company_of = {"nke.pdf": "nike", "amzn.pdf": "amazon"}
    taken = each_company(diverse(hits, 3, 1), hits, company_of)
    assert [(h.chunk.document, h.chunk.page_index) for h in taken] == [("nke.pdf", 52), ("nke.pdf", 28),
                                                                        ("amzn.pdf", 38)]
    # A company without a candidate, or passages of one company only, change nothing
    assert each_company(hits[:3], hits[:3], company_of) == hits[:3]


COVERED = [
    profile("manu-20f-2022-09-24.pdf", "FORM 20-F\nFor the fiscal year ended 30 June 2022\nMANCHESTER UNITED plc\n"
            "(Exact name of Registrant as specified in its charter)"),
    profile("10-K (2).pdf", "FORM 10-K\nNIKE, Inc.\n(Exact name of registrant as specified in its charter)"),
    profile("report.pdf", "FORM 10-K\nBank of America Corporation\n(Exact name of registrant as specified in its charter)"),
]


@pytest.mark.parametrize(
    "question, expected",
    [
        ("What was Adidas's revenue in 2022?", ["Adidas"]),
        ("Did Foot Locker’s sales grow?", ["Foot Locker"]),  # a typographic apostrophe
        ("How much is the Premier League's broadcasting deal worth?", ["Premier League"]),
        ("Compare Nike's and Adidas's margins", ["Adidas"]),
        ("What was JPMorgan Chase's CET1 ratio?", ["JPMorgan Chase"]),
        ("Under Adidas's agreement, what is paid?", ["Adidas"]),  # a question's first words are no part of a name
        ("Discuss Adidas's agreement", ["Adidas"]),
        ("What was Nike's revenue?", []),
        ("What was NIKE Inc's revenue?", []),
        ("Was Bank of America's CET1 ratio above 10%?", []),
        ("Did Manchester United's revenue grow?", []),
        ("Did United's revenue grow?", ["United"]),  # a candidate: the report's text holds it, so no note is said
        ("What was NKE's margin?", []),  # a ticker may be an indexed company's
        ("What was the Company's revenue?", []),  # a report's own word for its company
        ("How did the Group's and the Board's views differ?", []),
        ("what was adidas's revenue?", []),  # all in lower case: names cannot be told from words
        # after "of", "for" or "by" too: a question not in the possessive said nothing of a company not indexed
        ("What was the revenue of Apple in 2019?", ["Apple"]),
        ("What guidance did Nike give for Foot Locker?", ["Foot Locker"]),
        ("What was the gain by August 2023, for Q2 of FY2022?", []),  # a month, a quarter, a year
        ("What was the revenue of Nike in 2019?", []),  # indexed
    ],
)
def test_possessive_names(question, expected):
    """Candidates only: the retriever keeps those no indexed document mentions."""
    assert possessive_names(question, COVERED) == expected


DECOYS = [profile(name) for name in ("ADIDAS_2022_10K.pdf", "SEC_filing_2021.pdf", "TOTAL_2022_20F.pdf")] + [
    profile("manu-20f-2022-09-24.pdf", "FORM 20-F\nFor the fiscal year ended 30 June 2022\nMANCHESTER UNITED plc\n"
            "(Exact name of Registrant as specified in its charter)")]


@pytest.mark.parametrize(
    "question, common, expected",
    [
        # File-name words are hints: they narrow only where they tell documents apart.
        ("How much is the minimum guarantee payable by Adidas?", {"Adidas"}, []),
        ("How much is the minimum guarantee payable by Adidas?", set(), ["ADIDAS_2022_10K.pdf"]),
        ("What was the revenue according to the SEC filing?", {"SEC"}, []),
        # A capitalised word that starts a sentence is checked the same way, even where the content names it.
        ("Total revenue in 2022?", {"Total"}, []),
        ("What was the Total revenue in 2022?", {"Total"}, []),
        # A name from the content, written as a name, narrows at once.
        ("What did Manchester United earn in 2022?", {"Manchester United"}, ["manu-20f-2022-09-24.pdf"]),
        # A question typed all in lower case names its company in lower case (it searched everything): a name of
        # several words narrows at once, a single word only where it tells the documents apart.
        ("what did manchester united earn in 2022?", {"manchester united"}, ["manu-20f-2022-09-24.pdf"]),
        ("how much is the minimum guarantee payable by adidas?", set(), ["ADIDAS_2022_10K.pdf"]),
        ("how much is the minimum guarantee payable by adidas?", {"adidas"}, []),
        ("total revenue in 2022?", {"total"}, []),
        # In a question with capitals, a name in lower case is as uncertain, and a file name's words never count.
        ("What did manchester united earn in FY2022?", set(), ["manu-20f-2022-09-24.pdf"]),
        ("What did manchester united earn in FY2022?", {"manchester united", "manchester"}, []),
        ("What was Manchester United's total revenue?", set(), ["manu-20f-2022-09-24.pdf"]),
        ("How much is the minimum guarantee payable by adidas in FY2022?", set(), []),
    ],
)
def test_file_name_hints_and_sentence_starts_narrow_only_where_they_tell_documents_apart(question, common, expected):
    assert named_documents(question, DECOYS, lambda phrase, item: phrase not in common) == expected


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
    chunks = list(Chunker(200, 20).split([Page("reports/mmm-20181231.pdf", 59, text)], "3M 10-K 2018"))
    assert len(chunks) > 2
    last = chunks[-1]
    assert last.header == ("3M 10-K 2018 | 3M Company and Subsidiaries | Consolidated Statement of Cash Flows | "
                           "Cash Flows from Investing Activities")
    assert last.indexed_text == f"{last.header}\n{last.text}" and "Consolidated" not in last.text
    unlabelled = list(Chunker(200, 20).split([Page("reports/TOTAL_2022_20F.pdf", 59, text)]))
    assert "TOTAL" not in unlabelled[-1].header  # never the file name's words



def test_each_chunk_s_heading_is_the_last_heading_line_above_it_and_each_line_is_judged_once(monkeypatch):
    """Every line above each chunk was judged again for every chunk: a page of 1.4 MB took 65 s to chunk."""
    import random

    import docqa.chunking as chunking

    rng = random.Random(3)
    # a long table under few headings: the old lookup judged every row above each chunk up to the heading
    lines = [rng.choice(["Segment Results", "Revenue by Region"]) if n % 700 == 5 else f"Net income {n:,} {n * 7:,}"
             for n in range(3000)]
    text = "\n".join(lines)
    judged = []
    real = chunking.is_heading
    monkeypatch.setattr(chunking, "is_heading", lambda line: judged.append(line) or real(line))
    chunks = list(Chunker(200, 20).split([Page("a.pdf", 0, text)]))
    assert len(chunks) > 100 and len(judged) <= len(lines) + chunking.PAGE_TITLE_LINES  # the title's lines twice
    title = page_title(text)
    for chunk, piece in zip(chunks, Chunker(200, 20)._splitter.create_documents([text])):
        above = [line.strip() for line in text[:piece.metadata["start_index"]].split("\n")[:-1] if real(line)]
        assert chunk.header == " | ".join(dict.fromkeys(title + above[-1:])), piece.metadata["start_index"]

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
    for spelling in ("Free cashflow", "free cash-flow", "free cash flow"):  # as people write it
        assert with_line_items(f"{spelling}?") == f"{spelling}? (net cash provided by operating activities capital expenditures)"


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


def scored(document: str, page: int, text: str, chunk_id: int, score: float) -> Hit:
    return Hit(StoredChunk(document, page, text, id=chunk_id), score)


def test_a_passage_takes_in_the_adjacent_chunk_of_its_page_that_scores_nearly_as_high():
    caption = scored("a.pdf", 94, "The average monthly number of employees was as follows:\n2022 2021", 7, 0.0325)
    figures = scored("a.pdf", 94, "2022 2021\nCommercial 151 131\nAverage monthly number of employees 1,035 983", 8, 0.0320)
    far = scored("a.pdf", 94, "Share ownership of the directors", 12, 0.0319)  # same page, not adjacent
    weak = scored("a.pdf", 95, "Voting power", 21, 0.0300)
    neighbour = scored("a.pdf", 95, "of the Class B shares", 22, 0.0100)  # adjacent, but far lower
    candidates = [caption, figures, far, weak, neighbour]
    taken = diverse(candidates, 2, max_per_page=1)
    joined = with_runner_ups(taken, candidates, budget=1000, first=2)
    assert joined[0].chunk.text == ("The average monthly number of employees was as follows:\n2022 2021\n"
                                    "Commercial 151 131\nAverage monthly number of employees 1,035 983")
    assert (joined[0].chunk.id, joined[0].score) == (7, 0.0325)
    assert joined[1] == weak
    assert with_runner_ups(taken, candidates, budget=100, first=2) == taken  # no room left in the prompt
    assert with_runner_ups(taken, candidates, budget=1000, first=0) == taken  # beyond the prompt's passages
    assert join_overlapping("abc def", "xyz") == "abc def\nxyz"



def test_joined_chunks_read_as_the_page_does():
    """Consecutive chunks joined into one passage give the page's text between them, each word and figure once and
    whole: an end and a start that only looked alike were merged ("We offset" + "the value" read "We offsethe
    value", "3,642" + "239,066" read "3,64239,066")."""
    import random

    from docqa.chunking import Chunker

    rng = random.Random(7)
    words = ("the value offset revenue of group total net income million operating lease liabilities cash flow "
             "matchday broadcasting commercial sponsorship employees average were as follows").split()

    def word() -> str:  # words and figures, so that chunks end and start with the same letters and digits
        return rng.choice(words) if rng.random() < 0.7 else rng.choice(["{:,}", "({:,})", "{}.5"]).format(rng.randint(1, 999_999))

    # lines of a table or of prose, and every seventh longer than a chunk, which is cut between words (two such lines
    # in a row, the first ending with the words that start the second, would be merged: a rare coincidence)
    page = "\n".join(" ".join(word() for _ in range(120 if n % 7 == 3 else rng.randint(1, 16))) for n in range(400))
    # the index's chunk_overlap bounds the overlap: above 80 characters it was never merged, and with 0 the chunks
    # share nothing, so a line repeated at the cut is two lines
    for size, overlap in ((500, 50), (200, 30), (1000, 150), (300, 0)):
        chunks = [piece.page_content for piece in Chunker(size, overlap)._splitter.create_documents([page])]
        assert len(chunks) > 20
        # each pair joined as a passage is joined; what the second chunk adds follows the first
        text = chunks[0] + "".join(join_overlapping(a, b, overlap)[len(a):] for a, b in zip(chunks, chunks[1:]))
        assert text.split() == page.split(), (size, overlap)
    assert join_overlapping("net income was 12", "25 million") == "net income was 12\n25 million"
    assert join_overlapping("Revenue\nTotal 2022", "2022 239,066\nNet") == "Revenue\nTotal 2022\n2022 239,066\nNet"
    assert join_overlapping("grew in the year", "the year ended 30 June") == "grew in the year ended 30 June"
    # a line indented with no-break spaces (as some filings' tables are) is still a whole line
    assert join_overlapping("Revenue 10\n\xa0\xa0Restructuring (2) 39", "Restructuring (2) 39\nNet income") == (
        "Revenue 10\n\xa0\xa0Restructuring (2) 39\nNet income")
    assert join_overlapping("Listed on\nNew York Stock Exchange", "New York Stock Exchange\nShares", 0) == (
        "Listed on\nNew York Stock Exchange\nNew York Stock Exchange\nShares")


MANU_REPORT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "manu-20f-2022-09-24.pdf"


@pytest.mark.skipif(not MANU_REPORT.is_file(), reason="needs ../shared/corpus/manu-20f-2022-09-24.pdf")
def test_every_pair_of_chunks_of_a_real_report_joins_as_its_page_reads():
    """On the Manchester United report, 26 of the 1,343 pairs of consecutive chunks of a page were merged on a
    coincidence ("3,642" + "239,066" read "3,64239,066")."""
    from docqa.chunking import Chunker
    from docqa.documents import read_pages

    splitter, pairs = Chunker()._splitter, 0
    for page in read_pages(MANU_REPORT):
        chunks = [piece.page_content for piece in splitter.create_documents([page.text]) if piece.page_content.strip()]
        text = chunks[0] + "".join(join_overlapping(a, b, 50)[len(a):] for a, b in zip(chunks, chunks[1:]))
        assert text.split() == page.text.split(), page.page_index
        pairs += len(chunks) - 1
    assert pairs > 1000


def test_the_best_passage_continues_into_the_next_chunk_of_its_page():
    caption = scored("a.pdf", 94, "The average monthly number of employees, including directors:\nUnited Kingdom 983", 7, 0.0325)
    other = scored("b.pdf", 3, "Headcount grew", 40, 0.0300)
    stored = {
        8: StoredChunk("a.pdf", 94, "United Kingdom 983\nTotal 1,035", id=8),  # overlaps the caption's end
        41: StoredChunk("b.pdf", 4, "next page", id=41),
    }

    def next_chunk(chunk):
        return stored.get(chunk.id + 1)

    taken = [caption, other]
    continued = with_continuation(taken, taken, next_chunk, budget=1000, first=2)
    assert continued[0].chunk.text == ("The average monthly number of employees, including directors:\n"
                                       "United Kingdom 983\nTotal 1,035")
    assert (continued[0].chunk.id, continued[0].score, continued[1]) == (7, 0.0325, other)
    assert with_continuation(taken, taken, next_chunk, budget=100, first=2) == taken  # no room left in the prompt
    assert with_continuation(taken, taken, next_chunk, budget=1000, first=0) == taken  # beyond the prompt's passages
    # a passage a runner-up already joined stays as it is
    joined = [scored("a.pdf", 94, caption.chunk.text + " and more", 7, 0.0325), other]
    assert with_continuation(joined, taken, next_chunk, budget=1000, first=2) == joined
    # the next chunk is on the next page: another page's text is not this passage's
    assert with_continuation([other, caption], [other, caption], next_chunk, budget=1000, first=2) == [other, caption]
    # the next chunk is already a passage of its own (max_per_page above 1): it is not shown twice
    neighbour = Hit(stored[8], 0.0310)
    assert with_continuation([caption, neighbour], [caption, neighbour], next_chunk, 1000, 2) == [caption, neighbour]


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


class ReverseReranker(Reranker):
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


# ---------------------------------------------------------------- scoping: said in every output, never fooled by a name

MU_COVER = ("FORM 20-F\nFor the fiscal year ended 30 June 2022\nCommission file number 001-35627\nMANCHESTER UNITED plc\n"
            "(Exact name of Registrant as specified in its charter)")
MU_LIKE = {
    "manu-20f-2022-09-24.pdf": [
        MU_COVER,
        "Any increase or decrease in a particular year would have the effect of increasing or decreasing the minimum "
        "guarantee amount of £750 million payable over the 10-year term of the agreement with adidas.",
        "Total revenue for the year ended 30 June 2022 was £583.2 million, an increase of 18.0%.",
        "This annual report is filed with the SEC on Form 20-F by the club.",
    ],
}
# Unrelated files whose names hold a capitalised word of the questions below (issue 12, finding 3).
NAME_DECOYS = {
    "ADIDAS_2022_10K.pdf": ["The bakery sold bread and cakes in Leeds.", "Ovens were replaced in the spring."],
    "SEC_filing_2021.pdf": ["The garden centre sold plants and seeds.", "A new greenhouse opened in March."],
    "TOTAL_2022_20F.pdf": ["The shipping line carried containers to Rotterdam.", "Two vessels were refitted."],
}
# A filing whose content names the company, but which holds nothing about the question.
CONTENT_DECOY = {
    "adidas-ag-2022.pdf": [
        "FORM 20-F\nFor the fiscal year ended 31 December 2022\nCommission file number 001-00001\nADIDAS AG\n"
        "(Exact name of Registrant as specified in its charter)",
        "Footwear sales in Germany rose as new stores opened in Munich.",
    ],
    "beta-2022.pdf": ["Beta Foods sold soups in Bristol.", "Beta employed 90 bakers."],
    "gamma-2022.pdf": ["Gamma Tools made hammers in Sheffield.", "Gamma opened a depot."],
}
ADIDAS = "How much is the minimum guarantee payable by Adidas?"


def index_of(tmp_path, reports: dict[str, list[str]]) -> Settings:
    settings = make_settings(tmp_path)
    settings.retrieval = Retrieval()
    write_reports(settings.paths.data, reports)
    build_index(settings)
    return settings


def test_a_named_company_narrows_the_search_and_the_answer_says_so(defaults):
    with DocQA(defaults, retrieval_only=True) as qa:
        named = qa.ask("How many people did Acme employ in 2022?", k=3)
        unnamed = qa.ask("How many people were employed?", k=3)
    assert (named.searched.scope, named.searched.documents) == ("named", ("acme-2022.pdf",))
    assert named.searched.summary() == "1 document named in the question: acme-2022.pdf"
    assert (unnamed.searched.scope, unnamed.searched.named) == ("all", ())
    assert set(unnamed.searched.documents) == {"acme-2022.pdf", "acme-2023.pdf", "beta-2023.pdf"}
    assert unnamed.searched.summary() == "all 3 documents"


def test_searched_documents_are_in_the_text_and_json_outputs(config, capsys):
    assert ask_main(["--config", str(config), "--retrieval-only", "How many people did Acme employ in 2022?"]) == 0
    out = capsys.readouterr().out
    assert "\nSearched: 1 document named in the question: acme-2022.pdf\nTimings:" in out
    assert ask_main(["--config", str(config), "--retrieval-only", "--json", "How many bakers?"]) == 0
    searched = json.loads(capsys.readouterr().out)["searched"]
    assert searched["scope"] == "all" and len(searched["documents"]) == 3
    assert ask_main(["--config", str(config), "--retrieval-only", "--json", "--doc", "beta*", "Revenue?"]) == 0
    assert json.loads(capsys.readouterr().out)["searched"] == {
        "scope": "doc", "documents": ["beta-2023.pdf"], "named": [], "unmentioned": [], "unmet": [], "companies": 0}


@pytest.mark.parametrize(
    "question, answer",
    [
        (ADIDAS, "£750 million"),
        ("What did the club say according to the SEC filing?", "filed with the SEC"),
        ("Total revenue in 2022?", "£583.2 million"),
    ],
)
def test_a_capitalised_word_matching_a_file_name_does_not_narrow_the_search(tmp_path, fake_embedder, question, answer):
    settings = index_of(tmp_path, {**MU_LIKE, **NAME_DECOYS})
    with DocQA(settings, retrieval_only=True) as qa:
        result = qa.ask(question, k=2)
    assert result.searched.scope == "all" and len(result.searched.documents) == 4
    assert result.sources[0].document == "manu-20f-2022-09-24.pdf" and answer in result.sources[0].text


def test_a_doc_pattern_matches_a_name_whose_accents_are_written_apart(tmp_path, fake_embedder):
    """A file copied from a Mac keeps its name decomposed (a, then a combining diaeresis): "Geschäft*" as typed matched
    nothing, and the error listed that very name as indexed."""
    decomposed = "Gescha\u0308ftsbericht 2022.pdf"
    settings = index_of(tmp_path, {decomposed: ["Umsatz stieg auf 120 Millionen."], "other.pdf": ["Other text."]})
    with DocQA(settings, retrieval_only=True) as qa:
        for pattern in ("Geschäft*", "Geschäftsbericht 2022.pdf", "*GESCHÄFT*"):
            assert qa.ask("Umsatz?", doc=pattern).searched.documents == (decomposed,), pattern


def test_what_the_question_names_that_no_passage_mentions_is_said_in_the_answer(tmp_path, fake_embedder, capsys):
    """An analyst asking about Puma over other companies' reports got their passages (and an answer from them) with
    nothing said. Only a name none of the passages found holds is said: "Adidas's" asked of passages on the Adidas
    agreement, or "Old Trafford's" of the club's own report, got a false note when any possessive counted; and a
    rival mentioned somewhere in the index (Walmart in Costco's filing) silenced it where the passages were not."""
    settings = index_of(tmp_path, {**MU_LIKE, "10-K (2).pdf": [
        "FORM 10-K\nFor the fiscal year ended May 31, 2022\nNIKE, Inc.\n(Exact name of registrant as specified in its "
        "charter)", "Revenues rose to 46.7 billion dollars.", "Puma and other brands compete in every market."]})
    with DocQA(settings, retrieval_only=True) as qa:
        missing = qa.ask("What was Puma's total revenue in 2022?", k=1)
        dated = qa.ask("What was Puma's total revenue at 30 June 2022?", k=2)
        mentioned = qa.ask("Calculate what Adidas's minimum guarantee is over the agreement's term", k=2)
        named = qa.ask("What was Nike's total revenue in 2022?", k=2)
        generic = qa.ask("What was the Group's total revenue in 2022?", k=2)
        # not in the possessive: said too; a name of several words is mentioned by one of them ("Puma", later on)
        after_of = qa.ask("What was the total revenue of Puma in 2022?", k=1)
        in_full = qa.ask("How did the revenue of Nike compare with that of Puma Group AG?", k=3)
    assert after_of.searched.unmentioned == ("Puma",)
    assert in_full.searched.unmentioned == () and any("Puma" in source.text for source in in_full.sources)
    assert "Puma" not in missing.sources[0].text  # mentioned in the index, not in the passage found
    assert (missing.searched.scope, missing.searched.unmentioned) == ("all", ("Puma",))
    assert missing.searched.summary() == "all 2 documents (no passage found mentions Puma, which the question names)"
    assert missing.notes == ["no passage found mentions Puma, which the question names: they, and any answer from "
                             "them, may be about something else"]
    assert dated.searched.summary() == ("1 document whose period ends on the date in the question: "
                                        "manu-20f-2022-09-24.pdf (no passage found mentions Puma, which the question "
                                        "names)")
    for result in (mentioned, named):
        assert (result.searched.unmentioned, result.notes) == ((), []), result.question
    # "the Group's" names no company: its passages, from both reports, are said to be two companies'
    assert generic.searched.unmentioned == () and generic.searched.companies == 2 and len(generic.notes) == 1
    assert named.searched.scope == "named"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"paths": {key: str(value) for key, value in settings.paths.model_dump().items()}}))
    assert ask_main(["--config", str(config), "--retrieval-only", "--k", "1", "What was Puma's total revenue in 2022?"]) == 0
    out, err = capsys.readouterr()
    assert "\nSearched: all 2 documents (no passage found mentions Puma, which the question names)\n" in out
    assert "no passage found mentions Puma" in out + err


def test_a_company_named_only_in_a_product_s_name_is_not_mentioned(tmp_path, fake_embedder):
    """In a folder with no Apple filing, "What was Apple's total net sales?" found another company's passages, one of
    them on "Apple TV+ and Amazon Prime Video": they "mentioned Apple", so nothing was said, and the analyst read that
    company's net sales as Apple's. A name that only starts a product's is no mention; each way a report writes the
    company itself is."""
    streaming = {"streamco-2022.pdf": [
        "Total net sales were 31.6 billion dollars in fiscal 2022.",
        "Members watch on Apple TV+ and Amazon Prime Video devices, and buy through the Apple App Store."]}
    real = ["Apple Inc. is our largest customer.", "We supply Apple, Inc and others.", "Apple's orders grew.",
            "Apple reported lower orders.", "Net sales to Apple were 20% of the total."]
    settings = index_of(tmp_path, {**streaming, **{f"supplier-{i}.pdf": ["Total net sales were 4.2 billion dollars.",
                                                                           text] for i, text in enumerate(real)}})
    with DocQA(settings, retrieval_only=True) as qa:
        apple = qa.ask("What was Apple's total net sales in fiscal 2022?", k=5, doc="streamco*")
        amazon = qa.ask("What were the net sales of Amazon in fiscal 2022?", k=5, doc="streamco*")
        suppliers = [qa.ask("What was Apple's total net sales in fiscal 2022?", k=5, doc=f"supplier-{i}.pdf")
                     for i in range(len(real))]
    assert any("Apple TV+" in source.text for source in apple.sources)
    assert apple.searched.unmentioned == ("Apple",) and amazon.searched.unmentioned == ("Amazon",)
    assert apple.notes == ["no passage found mentions Apple, which the question names: they, and any answer from "
                           "them, may be about something else"]
    for text, result in zip(real, suppliers):
        assert any(text in source.text for source in result.sources), text
        assert (result.searched.unmentioned, result.notes) == ((), []), text


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("Google", "sold through Google Play", False),
        ("Meta", "apps for Meta Quest 3 headsets", False),
        ("Apple", "the Apple\xa0App\xa0Store", False),  # a PDF's spaces may be non-breaking
        ("Meta", "metadata and metals", False),  # a word of its own, not a part of one
        ("Meta", "Meta Platforms,\nInc. and others", True),  # a longer name that is a company's, across a line
        ("Apple", "Apple\nTV+ 12", True),  # a line break ends a name in a table or a heading
        ("Class", "Class A ordinary shares", True),  # a letter is a class or a series, no longer name
        ("PricewaterhouseCoopers", "/s/ PricewaterhouseCoopers LLP", True),
        # corporate suffixes, written in any of their forms
        *[("Acme", f"Acme {suffix} reported", True) for suffix in (
            "Inc.", "Corp.", "Corporation", "Co.", "Company", "Ltd", "Limited", "plc", "LLC", "N.V.", "S.A.", "Group",
            "Holdings")],
        ("Target", "TARGET CORP", True),
        ("Target", "Target Date Funds", False),
        ("Block", "Block, Inc. (formerly Square)", True),
        ("adidas", "the agreement with adidas.", True),  # a brand that writes itself in lower case
        # names of several words: in full, or by a word of theirs that is itself no part of another name
        ("Best Buy", "sold at Best Buy Co., Inc. stores", True),
        ("Best Buy", "Best Buy reported", True),
        ("Best Buy", "our best estimate of what to buy", False),  # ordinary words in lower case are no name
        ("Johnson & Johnson", "Johnson & Johnson reported", True),
        ("Johnson & Johnson", "Johnson Controls International", False),
        ("Google Cloud", "Intelligent Cloud 87,907", False),
        ("Target Corporation", "each corporation met its targets", False),  # a corporate suffix alone is no name
        ("Mary Dillon", "Ms. Dillon joined in 2019", True),
        ("Trillium Therapeutics", "The Trillium acquisition closed", True),
        ("Football Association", "The FA is the governing body", True),  # initials, after the first time
        ("Football Association", "English football clubs", False),
    ],
)
def test_a_company_is_mentioned_by_its_name_not_by_another_name_it_starts(name, text, expected):
    assert mentions(text, name) is expected

def test_passages_from_several_companies_for_a_question_that_names_none_are_said(tmp_path, fake_embedder, capsys):
    """"Who chairs the audit committee?" over many companies' reports got one company's chair, the next passage
    another's, with nothing said: an analyst read the answer as the company she had in mind."""
    nike = {"nke-20220531.pdf": [
        "FORM 10-K\nFor the fiscal year ended May 31, 2022\nNIKE, Inc.\n(Exact name of registrant as specified in its "
        "charter)", "Revenues rose to 46.7 billion dollars in fiscal 2022.", "Total revenue grew in every region."],
        "nke-20210531.pdf": [
        "FORM 10-K\nFor the fiscal year ended May 31, 2021\nNIKE, Inc.\n(Exact name of registrant as specified in its "
        "charter)", "Total revenue was 44.5 billion dollars in fiscal 2021."]}
    settings = index_of(tmp_path, {**MU_LIKE, **nike})
    with DocQA(settings, retrieval_only=True) as qa:
        mixed = qa.ask("What was total revenue?", k=3)
        named = qa.ask("What was Nike's total revenue?", k=3)
        chosen = qa.ask("What was total revenue?", k=3, doc=["manu*", "nke*"])
        one_company = qa.ask("What was total revenue?", k=2, doc="nke*")
        unknown = qa.ask("What was Puma's total revenue?", k=3)
    assert {source.document for source in mixed.sources} >= {"manu-20f-2022-09-24.pdf", "nke-20220531.pdf"}
    assert (mixed.searched.scope, mixed.searched.companies) == ("all", 2)
    note = ("the passages come from 2 companies' documents, and an answer from them may mix their figures: name the "
            "company in the question, or choose its documents, for one company's answer")
    assert mixed.notes == [note]
    # named, or chosen by the analyst (who knows whose they are), or two filings of one company: nothing to say
    assert named.searched.scope == "named" and len({source.document for source in one_company.sources}) == 2
    for result in (named, chosen, one_company):
        assert (result.searched.companies, result.notes) == (0, []), result.searched
    # a company not indexed is said by the note on what no passage mentions, not by this one as well
    assert unknown.searched.unmentioned == ("Puma",) and unknown.searched.companies == 0 and len(unknown.notes) == 1
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"paths": {key: str(value) for key, value in settings.paths.model_dump().items()}}))
    assert ask_main(["--config", str(config), "--retrieval-only", "--json", "--k", "3", "What was total revenue?"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["searched"]["companies"] == 2 and result["notes"] == [note]


def test_a_named_company_whose_passages_match_weakly_falls_back_to_every_document(tmp_path, fake_embedder):
    settings = index_of(tmp_path, {**MU_LIKE, **CONTENT_DECOY})
    with DocQA(settings, retrieval_only=True) as qa:
        weak = qa.ask(ADIDAS, k=2)
        strong = qa.ask("How did Adidas footwear sales in Germany change?", k=2)
    assert (weak.searched.scope, weak.searched.named) == ("all", ("adidas-ag-2022.pdf",))
    assert "but no passage there matched it nearly as well" in weak.searched.summary()
    assert "£750 million" in weak.sources[0].text
    assert (strong.searched.scope, strong.searched.documents) == ("named", ("adidas-ag-2022.pdf",))


def test_a_question_naming_no_company_but_a_period_end_searches_the_filings_for_that_period(tmp_path, fake_embedder):
    december = {"acme-2022.pdf": ["FORM 10-K\nFor the fiscal year ended December 31, 2022\nACME CORP\n"
                                  "(Exact name of registrant as specified in its charter)",
                                  "Total lease liabilities were $912 million at December 31, 2022 and 30 June 2022."]}
    settings = index_of(tmp_path, {**MU_LIKE, **december})
    with DocQA(settings, retrieval_only=True) as qa:
        dated = qa.ask("What were total lease liabilities at 30 June 2022?", k=2)
        named = qa.ask("What were Acme's total lease liabilities at 30 June 2022?", k=2)
        undated = qa.ask("What were total lease liabilities in June 2022?", k=2)
        other_period = qa.ask("What were total lease liabilities at 31 December 2020?", k=2)
        event = qa.ask("What did the club announce on 3 March 2021?", k=2)  # a month's first days: no period end
        qa.retriever.settings.named_documents = False
        switched_off = qa.ask("What were total lease liabilities at 30 June 2022?", k=2)
    assert (dated.searched.scope, dated.searched.documents) == ("period", ("manu-20f-2022-09-24.pdf",))
    assert dated.searched.summary() == "1 document whose period ends on the date in the question: manu-20f-2022-09-24.pdf"
    assert {source.document for source in dated.sources} == {"manu-20f-2022-09-24.pdf"}
    # Acme's passage matches best, yet the search stays with the filing for the period the question names
    assert undated.searched.scope == "all" and undated.sources[0].document == "acme-2022.pdf"
    assert (named.searched.scope, named.searched.documents) == ("named", ("acme-2022.pdf",))  # a company comes first
    assert switched_off.searched.scope == "all"
    # A period end that no filing has was searched everywhere unsaid: the passages are of other periods
    assert (other_period.searched.scope, other_period.searched.unmet) == (
        "all", ("no filing's period ends on 31 December 2020",))
    assert other_period.searched.summary() == "all 2 documents (no filing's period ends on 31 December 2020)"
    assert other_period.notes[0].startswith("no filing's period ends on 31 December 2020: the passages, and any answer")
    assert (event.searched.unmet, event.notes) == ((), [])


def test_what_no_filing_has_is_said_also_where_the_search_falls_back_to_every_document(tmp_path, fake_embedder,
                                                                                        monkeypatch):
    acme = {"acme-2022.pdf": ["FORM 10-K\nFor the fiscal year ended December 31, 2022\nACME CORP\n"
                              "(Exact name of registrant as specified in its charter)", "Acme sold 9 anvils."]}
    settings = index_of(tmp_path, {**MU_LIKE, **acme})
    with DocQA(settings, retrieval_only=True) as qa:
        monkeypatch.setattr(qa.retriever, "_weak", lambda *args: True)  # Acme's passages match weakly
        found = qa.ask("What was Acme's revenue in 2012?", k=2)
    assert (found.searched.scope, found.searched.unmet) == ("all", ("no Acme filing reports 2012",))


def test_a_named_company_without_a_candidate_still_gets_its_best_passage(tmp_path, fake_embedder):
    """The other company's pages could fill both searches' candidates, so "each named company gets a passage" gave
    none of the club's ("Nike's revenue in fiscal 2019 compared with Manchester United's in 2022")."""
    nike = {"nke-20190531.pdf": ["FORM 10-K\nFor the fiscal year ended May 31, 2019\nNIKE, Inc.\n(Exact name of "
                                 "registrant as specified in its charter)", "Nike revenue rose in fiscal 2019."]}
    settings = index_of(tmp_path, {**MU_LIKE, **nike})
    company_of = {"nke-20190531.pdf": "nike", "manu-20f-2022-09-24.pdf": "club"}
    with DocQA(settings, retrieval_only=True) as qa:
        retriever = qa.retriever
        vector = retriever.embedder.embed_query("Total revenue for the year ended 30 June 2022")
        ranked = [chunk_id for chunk_id, _ in qa.store.dense_search(vector, 50)]
        nike_only = [Hit(chunk, 1.0) for chunk in qa.store.chunks(ranked) if chunk.document == "nke-20190531.pdf"]
        added = retriever._best_of_missing_companies(nike_only, vector, company_of)
        assert retriever._best_of_missing_companies(nike_only + added, vector, company_of) == []
    assert [(hit.chunk.document, "£583.2 million" in hit.chunk.text) for hit in added] == [
        ("manu-20f-2022-09-24.pdf", True)]
    taken = each_company(nike_only[:2], nike_only + added, company_of)
    assert {hit.chunk.document for hit in taken} == set(company_of)


def test_documents_chosen_that_are_none_of_the_named_company_s_are_said(tmp_path, fake_embedder):
    """Best Buy's filings ticked on the page, "What was Nike's revenue?" asked: an answer from Best Buy's pages,
    with nothing said."""
    nike = {"nke-20190531.pdf": ["FORM 10-K\nFor the fiscal year ended May 31, 2019\nNIKE, Inc.\n(Exact name of "
                                 "registrant as specified in its charter)", "Revenues rose to 39.1 billion dollars."]}
    settings = index_of(tmp_path, {**MU_LIKE, **nike})
    with DocQA(settings, retrieval_only=True) as qa:
        other = qa.ask("What was Nike's revenue in 2019?", k=1, doc="manu-*")
        own = qa.ask("What was Nike's revenue in 2019?", k=1, doc="nke-*")
    assert other.searched.unmet == ("none of the documents chosen is Nike's",)
    assert other.searched.summary().endswith("(none of the documents chosen is Nike's)")
    assert other.notes[0].startswith("none of the documents chosen is Nike's: the passages, and any answer")
    assert (own.searched.unmet, own.notes) == ((), [])


def test_a_caption_that_matches_best_brings_the_figures_that_follow_it_on_its_page(tmp_path, fake_embedder):
    caption = ("Employees. The table below sets out the average monthly number of employees during the years ended "
               "30 June 2022 and 2021, including directors, by function. ") + "Staff are employed in Manchester. " * 9
    figures = "\n".join(f"Function {n} {100 + n} {90 + n}" for n in range(14)) + "\nTotal 1,035 983"
    settings = index_of(tmp_path, {"club-2022.pdf": ["Cover page", caption + "\n" + figures, "Other matters"],
                                   "bakery-2022.pdf": ["The bakery employed 40 bakers in Leeds.", "Ovens."]})
    question = "What was the average monthly number of employees in 2022, including directors?"
    with DocQA(settings, retrieval_only=True) as qa:
        continued = qa.retrieve(question, k=2)
        qa.retriever.settings.context_chars = 0
        alone = qa.retrieve(question, k=2)
    assert (alone[0].document, alone[0].page_index) == ("club-2022.pdf", 1) and "1,035" not in alone[0].text
    assert continued[0].text.startswith(alone[0].text) and "Total 1,035 983" in continued[0].text


SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.mark.skipif(not (SHARED / "corpus" / "financebench").is_dir(), reason="needs ../shared (corpus and eval)")
def test_renaming_the_real_filings_as_users_do_leaves_the_filings_each_question_names(monkeypatch):
    """The 47 real filings under FinanceBench's names and under EDGAR-style and everyday ones (bench/renamed_corpus.py):
    every dev question and every question of ours must name the same filings under both."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from renamed_corpus import RENAMED

    first_pages = {pdf.name: read_pages(pdf, max_pages=1)[0].text for pdf in sorted((SHARED / "corpus").rglob("*.pdf"))}
    assert set(first_pages) <= set(RENAMED) and len(first_pages) == 47
    original = with_fiscal_quarters(same_company_names([profile(name, text) for name, text in first_pages.items()]))
    renamed = with_fiscal_quarters(same_company_names([profile(RENAMED[name], text) for name, text in first_pages.items()]))
    questions = [json.loads(line) for path in (SHARED / "eval" / "financebench_dev.jsonl",
                                                Path(__file__).resolve().parents[1] / "eval" / "manu_questions.jsonl")
                 for line in path.read_text().splitlines()]
    differing = {
        item["id"] for item in questions
        if sorted(RENAMED[name] for name in named_documents(item["question"], original))
        != sorted(named_documents(item["question"], renamed))
    }
    assert differing == set(), sorted(differing)


MU_REPORT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "manu-20f-2022-09-24.pdf"


@pytest.mark.skipif(not MU_REPORT.is_file(), reason="needs ../shared/corpus (the Manchester United 20-F)")
def test_the_real_manchester_united_report_beside_decoys(tmp_path, fake_embedder):
    settings = make_settings(tmp_path)
    settings.retrieval = Retrieval()
    write_reports(settings.paths.data, NAME_DECOYS)
    (settings.paths.data / MU_REPORT.name).symlink_to(MU_REPORT)
    build_index(settings)
    with DocQA(settings, retrieval_only=True) as qa:
        adidas = qa.ask(ADIDAS)
        total = qa.ask("Total revenue in 2022?")
        named = qa.ask("What was Manchester United's total revenue for the year ended 30 June 2022?")
    assert adidas.searched.scope == "all"
    assert any(s.page_index == 53 and "£750 million" in s.text for s in adidas.sources)
    assert total.searched.scope == "all"
    assert named.searched.documents == (MU_REPORT.name,)
