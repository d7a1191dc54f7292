"""Extraction that finds what a careful grader finds (issue 11): where the answer is, how it was
found (`Verdict.extraction`), weak rules marked `weak_extraction`, hedges and refusals no answer."""

from __future__ import annotations

import pytest

from qvq_ray.verify import check
from qvq_ray.verify.extract import detect_issues, extract
from qvq_ray.issues import ISSUES

YES_NO = ["Yes", "No"]
FOOD = ["Tilapia", "Common water flea", "Great diving beetle", "Tadpole"]
ANGLES = ["135°", "140°", "145°", "150°"]


@pytest.mark.parametrize(
    "response, choices, answer, how",
    [
        # answer-only and answer-first responses
        ("-5", None, "-5", "whole_response"),
        ("7,425,000", None, "7,425,000", "whole_response"),
        ("(D)", None, "(D)", "whole_response"),
        ("E", None, "E", "whole_response"),
        ("3.", None, "3", "whole_response"),
        ("(D)\n\nExplanation: the triangle is isosceles, so ...", None, "(D)", "whole_response"),
        ("B) plants increase", ["plants decrease", "plants increase"], "B) plants increase", "whole_response"),
        ("Increase in fish (B)\n\nKrill feed on them.", ["decrease in fish", "Increase in fish"], "B", "whole_response"),
        # the last explicit answer wins, box or statement
        ("so \\boxed{12} is the side ... so the answer is (C).", None, "(C)", "statement"),
        ("The answer is (B).\n\nChecking: \\boxed{5}", None, "5", "boxed"),
        ("\\boxed{5}\n\nThe answer is correct, as checked above.", None, "5", "boxed"),
        # statements keep only the answer-bearing span
        ("the answer is therefore choice (B).", None, "choice (B)", "statement"),
        ("Thus, the answer is C (145°).", ANGLES, "C (145°)", "statement"),
        ("**答案**\n\n1. 面积是 12\n2. 周长是 16", None, "12, 16", "statement"),
        # no marker: the last sentence (weak)
        ("...so the perimeter of the rectangle is **6 yards**.", None, "6 yards", "final_sentence"),
        ("Therefore, the distance the spring is compressed is 0.11 meters.", None, "0.11 meters", "final_sentence"),
        ("Based on the chart, there are 3 bars that have value below 40.", None, "3", "final_sentence"),
        ("The model has 4 dots in 2 groups. There are 2 dots in each group.", None, "2", "final_sentence"),
        ("Ruth buys three things.\n\nRuth needs 13.", None, "13", "final_sentence"),
        ("Let me think.\n\nThe final number of objects left is: 2", None, "2", "final_sentence"),
        ("No, Black is not greater than Deep Sky Blue.\nB", YES_NO, "B", "final_sentence"),
        # the one option mentioned (weak)
        ("Algae feed the common water flea, so it would be the most affected organism.", FOOD, "B", "choice_mention"),
    ],
)
def test_where_the_answer_is(response, choices, answer, how):
    found = extract(response, choices)
    assert (found.answer, found.how) == (answer, how)


@pytest.mark.parametrize(
    "response, choices",
    [
        ("The information provided is insufficient to answer the question. Please provide more details.", None),
        ("Without the image, I cannot determine the 2 missing values.", None),
        ("Given ∠1 = 50°, ∠3 = 50°. Therefore, none of the options (A, B, C, D) are correct.", ANGLES),
        ("If the sum is larger, the answer is A (Yes). Without specific data, we cannot provide a definitive answer.", YES_NO),
        ("Many motorcycles get around 40-50 mpg on the highway.", None),
        ("Both 135° and 150° fit the figure.", ANGLES),  # two options named: a hedge
        ("so we get 4 and then", None),  # an unfinished sentence
        ("no answer", None),
        ("The final answer should be an integer.", None),
    ],
)
def test_no_answer(response, choices):
    assert extract(response, choices).answer is None


def test_weak_rules_never_read_a_truncated_response():
    text = "Therefore, the distance the spring is compressed is 0.11 meters."
    assert extract(text, finish_reason="length").answer is None
    assert extract(text, finish_reason="stop").answer == "0.11 meters"


def test_verdict_says_how_and_weak_extractions_carry_an_issue():
    assert "weak_extraction" in ISSUES
    v = check("So, the spring is compressed by 1.3 cm.", "1.3 cm")
    assert v.correct is True and v.extraction == "final_sentence" and "weak_extraction" in v.issues
    v = check("**Final Answer**\n\n\\[ \\boxed{5} \\]", "5")
    assert v.extraction == "boxed" and v.issues == []
    v = check("The answer is 5.", "5")
    assert v.extraction == "statement" and "weak_extraction" not in v.issues
    v = check("I cannot tell without the image.", "5")
    assert v.extraction is None and v.correct is False and "no_final_answer" in v.issues
    assert detect_issues("Thus the total is 13.", "stop") == ["weak_extraction"]


def test_weak_extraction_is_not_resampled_by_default():
    from qvq_ray.config import PolicyConfig

    assert "weak_extraction" not in PolicyConfig().resample_on


@pytest.mark.parametrize(
    "response, gold, choices, correct",
    [
        ("-5", "-5", None, True),
        ("7,425,000", "7425000", None, True),
        ("(D)", "D", None, True),
        ("(D)", "C", None, False),
        ("4", "4", None, True),
        ("**32**.", "32", None, True),
        ("Thus, the answer is C (145°).", "145°", ANGLES, True),
        ("Thus, the answer is B (145°).", "145°", ANGLES, False),  # a letter contradicted by its value
        ("\\boxed{4}", "B", ["3 cm", "4 cm", "5 cm"], True),  # a bare number names the option with a unit
        ("\\boxed{\\textbf{(D)}\\ 120^{\\circ}}", "D", ["$98^{\\circ}$", "$104^{\\circ}$", "$108^{\\circ}$", "$108^{\\circ}$"], False),
        ("\\boxed{\\text{(A) } PQ, \\text{(C) } PS}", "A", ["$PQ$", "$PR$", "$PS$"], False),  # two options
        ("\\boxed{\\text{(E) another value}}", "E", ["$3$", "$5$", "$7$", "$9$", "another value"], True),
        ("所以选项B是正确答案。", "36", ["30", "36", "72", "24"], True),
        ("So, the answer is (C).", "C", ["A", "B", "C", "D", "E"], True),
    ],
)
def test_verdicts_on_answer_only_and_letter_answers(response, gold, choices, correct):
    assert check(response, gold, choices=choices).correct is correct
