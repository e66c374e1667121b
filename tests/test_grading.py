"""The answer-grading rule of docs/evaluation.md, on hand-made answers."""

import pytest

from docqa.grading import grade, numbers


@pytest.mark.parametrize("answer", [
    "The minimum guarantee is £120 MILLION.",
    "It is  £120\nmillion over ten years",
])
def test_answers_are_found_with_case_and_whitespace_folded(answer):
    assert grade(answer, answers=["£120 million"]) is True


def test_answers_missing_from_the_answer_is_wrong():
    assert grade("It is £12 million.", answers=["£120 million"]) is False
    assert grade(None, answers=["£120 million"]) is False


def test_answers_take_precedence_over_the_free_text_answer():
    assert grade("revenue was 5", answers=["five"], reference="5") is False


@pytest.mark.parametrize("answer", [
    "Capital expenditure was $1,577 million in FY2018.",
    "3M spent $1577 million.",
    "$1.577 billion",
    "1,577",
    "about $1,580 million",  # 0.19 % off
])
def test_the_same_amount_in_other_units_is_correct(answer):
    assert grade(answer, reference="$1577.00") is True


@pytest.mark.parametrize("answer", [
    "Capital expenditure was $1,677 million.",
    "$1.6 billion",  # 1.5 % off
    "I don't know.",
    "",
])
def test_another_amount_is_wrong(answer):
    assert grade(answer, reference="$1577.00") is False


def test_parentheses_are_negative():
    assert grade("The change was (370) million.", reference="-370") is True
    assert grade("The change was $(1,234).", reference="-$1,234") is True
    assert grade("The change was 370 million.", reference="-370") is False
    assert grade("Net cash used was (370).", reference="370") is False


def test_percent_matches_the_percent_or_its_fraction_but_not_a_thousandfold():
    assert grade("The margin was 30.8%.", reference="30.8%") is True
    assert grade("The margin was 30.8 percent.", reference="30.8%") is True
    assert grade("The ratio is 0.308.", reference="30.8%") is True
    assert grade("The quick ratio is 66%.", reference="0.66") is True
    assert grade("It grew 31.2%.", reference="30.8%") is False  # 1.3 % off
    assert grade("It grew 5,100.", reference="5.1%") is False


def test_the_one_percent_bound_is_included():
    assert grade("100", reference="101") is True      # 0.99 % below
    assert grade("102.01", reference="101") is True   # exactly 1 % above
    assert grade("102.02", reference="101") is False  # just past 1 %
    assert grade("24.3", reference="24.26") is True   # rounded to one decimal
    assert grade("2%", reference="1.9%") is False     # rounded to a whole percent: 5 % off


def test_every_number_of_the_reference_is_needed():
    reference = "The effective tax rate changed from 24.6% in FY 2021 to 21.6% in FY 2022."
    assert grade("It fell from 24.6% (2021) to 21.6% (2022).", reference=reference) is True
    assert grade("It fell to 21.6% in 2022.", reference=reference) is False


def test_scale_words_and_suffixes():
    assert grade("Total was $8.4 billion.", reference="$8,400,000,000") is True
    assert grade("Adjusted EBITDA: 2,018 million", reference="$2,018mn") is True
    assert grade("Debt fell by $2.5 billion", reference="$2.5bn") is True
    assert grade("Debt fell by $2.5 thousand", reference="$2.5bn") is True  # a factor 1,000ⁿ: units left implicit
    assert grade("Debt fell by $2.6 billion", reference="$2.5bn") is False


def test_a_reference_without_numbers_cannot_be_graded():
    assert grade("Yes.", reference="Yes, his name is Richard A. Johnson") is None
    assert grade("Yes.", reference=None) is None


def test_years_dates_periods_and_list_markers_are_not_numbers_to_find():
    found = numbers("(1) In FY2022 (2) the 12 months ended on January 28, 2023: 36%, COVID-19, 2021-2022")
    assert [n.text for n in found] == ["36%"]
    assert grade("It was 36%.", reference="36%. FY2023 refers to the 12 months ended on January 28, 2023") is True


def test_a_year_written_as_an_amount_is_a_number():
    assert [n.value for n in numbers("$2,018 million and 2018")] == [2_018_000_000]
