"""Which pages are a filing's primary financial statements, read from their content, and which statements a
question's metric is read from.

A question about a metric ("the quick ratio", "FY2022 capital expenditure", "gross margin") is answered from the
balance sheet, the income statement or the cash flow statement, but those pages are tables of line items that
share few words with the question and embed poorly: in FinanceBench's filings the statement a question needs was
often not among the first 50 candidates of either search. Retrieval therefore adds a third ranking to the fusion,
the pages of the statements the question's metric comes from (``Retriever``).

A statement page is known by its title near the top of the page ("Consolidated Balance Sheets", "Consolidated
statement of profit or loss", "Condensed Consolidated Statements of Cash Flows") and by being mostly figures, which
tells it apart from an index of the financial statements or a note that names them. Nothing here depends on a file
name. The metrics and their line items are those of any financial analysis textbook.
"""

from __future__ import annotations

import re
from typing import Optional

BALANCE_SHEET = "balance sheet"
INCOME_STATEMENT = "income statement"
CASH_FLOWS = "cash flow statement"

_TITLES = {
    BALANCE_SHEET: re.compile(r"\bbalance\s+sheets?\b|\bstatements?\s+of\s+(?:consolidated\s+)?financial\s+(?:position|condition)\b", re.I),
    INCOME_STATEMENT: re.compile(
        r"\bstatements?\s+of\s+(?:consolidated\s+)?(?:income|operations|earnings|profit\s+or\s+loss)\b|\bincome\s+statements?\b", re.I
    ),
    CASH_FLOWS: re.compile(r"\bstatements?\s+of\s+(?:consolidated\s+)?cash\s+flows?\b|\bcash\s+flows?\s+statements?\b", re.I),
}
TITLE_CHARS = 300  # a statement's title is among the first lines of its page (after a running header at most)
TITLE_LINE_CHARS = 80  # and a line of its own, not words of a sentence ("recognised in the statement of profit or loss")
# "Selected income statement data", "Statement of profit or loss data": a segment's or a five-year summary, whose
# figures are not the company's statements.
_SUMMARY = re.compile(r"\b(?:selected|data|summary)\b", re.I)
MIN_DIGIT_SHARE = 0.08  # statements are tables of figures; an index page or a note naming them is mostly words

# Metrics and line items, by the statement they are read from (a ratio of two statements names both). Revenue and
# sales are not among them: a report discusses them everywhere (by segment, market, currency), and questions about
# their parts are answered from those discussions (measured: docs/retrieval.md).
_BOTH = (r"return\s+on\s+(?:average\s+)?(?:assets|equity|invested\s+capital)|roa|roe|roic|asset\s+turnover|"
         r"inventory\s+turnover|days?\s+(?:sales|inventory|payables?)\s+outstanding|dio|dso|dpo|cash\s+conversion\s+cycle")
_ASKED = {
    INCOME_STATEMENT: re.compile(
        r"\b(?:gross\s+(?:margin|profit)|operating\s+(?:margin|income|profit|expenses)|"
        r"net\s+(?:income|earnings|profit|loss|margin)|profit\s+margin|profit\s+(?:before|after)\s+tax|"
        r"earnings\s+per\s+share|eps|cost\s+of\s+(?:goods\s+sold|sales|revenues?)|cogs|sg&a|"
        r"selling,?\s+general\s+and\s+administrative|ebitda|ebit|interest\s+expense|interest\s+coverage|"
        r"effective\s+tax\s+rate|income\s+tax(?:es)?|research\s+and\s+development|r&d|" + _BOTH + r")\b", re.I),
    BALANCE_SHEET: re.compile(
        r"\b(?:total\s+assets|total\s+liabilities|current\s+assets|current\s+liabilities|quick\s+ratio|current\s+ratio|"
        r"working\s+capital|inventor(?:y|ies)|(?:accounts|trade)\s+(?:receivable|payable)|receivables|payables|"
        r"debt|borrowings|(?:shareholders|stockholders)['’]?\s+equity|total\s+equity|cash\s+and\s+cash\s+equivalents|"
        # "purchases of property, plant and equipment" is a cash flow line (below)
        r"pp&e|ppne|(?<!purchases\sof\s)(?<!purchase\sof\s)property,?\s+plant,?\s+and\s+equipment|fixed\s+assets?|"
        r"goodwill|leverage|book\s+value|" + _BOTH + r")\b", re.I),
    CASH_FLOWS: re.compile(
        r"\b(?:capex|capital\s+expenditures?|purchases?\s+of\s+property|free\s+cash\s+flows?|"
        r"cash\s+(?:flows?\s+)?from\s+operat\w*|operating\s+cash\s+flows?|"
        r"cash\s+(?:provided|generated)\s+(?:by|from)\s+operat\w*|dividends?\s+paid|"
        r"dividend\s+payout|(?:share|stock)\s+(?:repurchases?|buybacks?)|buybacks?|"
        r"depreciation\s+and\s+amortization|d&a|ebitda)\b", re.I),
}


def page_statement(page_opening: str) -> Optional[str]:
    """The statement a page is, from the first chunk of its text, or None. A page whose top names two statements
    (an index of the financial statements) is none."""
    lines = [line for line in page_opening[:TITLE_CHARS].splitlines()
             if len(line) <= TITLE_LINE_CHARS and not _SUMMARY.search(line)]
    kinds = [kind for kind, title in _TITLES.items() if any(title.search(line) for line in lines)]
    if len(kinds) != 1:
        return None
    digits = sum(character.isdigit() for character in page_opening)
    return kinds[0] if digits >= MIN_DIGIT_SHARE * max(1, len(page_opening)) else None


def statements_asked(question: str) -> frozenset[str]:
    """The statements the metrics a question names are read from (none for a question about anything else)."""
    return frozenset(kind for kind, terms in _ASKED.items() if terms.search(question))
