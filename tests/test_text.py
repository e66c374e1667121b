"""The two ways text is compared regardless of how it is written: the hit rule's, and company names'."""

from docqa.text import compact_name, fold_text


def test_fold_text_collapses_whitespace_and_case_and_keeps_punctuation():
    assert fold_text("Net  Income\n\t(LOSS)") == "net income (loss)"
    assert fold_text("Straße 4,5 %") == fold_text("STRASSE  4,5 %") == "strasse 4,5 %"  # casefold, not lower


def test_compact_name_keeps_letters_and_digits_only():
    assert compact_name("Johnson & Johnson") == compact_name("JOHNSON-JOHNSON") == "johnsonjohnson"
    assert compact_name("3M Company") == "3mcompany"
