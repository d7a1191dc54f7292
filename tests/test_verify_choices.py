"""Multiple choice: letter <-> option text with the problem's choices; never by string distance."""

from __future__ import annotations

import pytest

from qvq_ray.verify.choices import choice_letter, choice_letters, is_letter_hedge
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verifier import default_verifier


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("C", "C"),
        ("(C)", "C"),
        ("(c)", "C"),
        ("[C]", "C"),
        ("C.", "C"),
        ("C. 24", "C"),
        ("C: 24", "C"),
        ("(C) 24", "C"),
        ("\\text{(C)}", "C"),
        ("\\textbf{C}", "C"),
        ("**C**", "C"),
        ("Option C", "C"),
        ("The answer is C", "C"),
        ("选C", "C"),
        ("C选项", "C"),
        ("x = 2", None),
        ("AB", None),
        ("I think", None),
        ("A or B", None),
        ("c", None),
        ("24", None),
        ("", None),
    ],
)
def test_choice_letter(answer, letter):
    assert choice_letter(answer) == letter


def test_letters_beyond_the_choices_name_no_option():
    assert choice_letter("E", 4) is None
    assert choice_letter("D", 4) == "D"


@pytest.mark.parametrize(
    "answer, letters",
    [("A, C", ("A", "C")), ("C and A", ("A", "C")), ("AC", ("A", "C")), ("A", None), ("A or C", None), ("x, y", None)],
)
def test_several_letters(answer, letters):
    assert choice_letters(answer, 4) == letters


@pytest.mark.parametrize("answer, hedge", [("A or B", True), ("(A) or (C)", True), ("A/B", True), ("A", False), ("A and B", False)])
def test_letter_hedges(answer, hedge):
    assert is_letter_hedge(answer) is hedge


MATHVISTA = ["135°", "140°", "145°", "150°"]
MATHVISION = ["$98^{\\circ}$", "$100^{\\circ}$", "$104^{\\circ}$", "$108^{\\circ}$", "$110^{\\circ}$"]
MMMU = ["1", "2", "Not exist"]
FRACTIONS = ["\\frac{2}{3}", "\\frac{1}{4}", "\\frac{1}{3}", "\\frac{1}{2}"]

CASES = [
    # gold a letter (MMMU, MATH-V): letter or the option's text
    ("C", "C", MMMU, True),
    ("(C)", "C", MMMU, True),
    ("\\text{(C)}", "C", MMMU, True),
    ("Not exist", "C", MMMU, True),
    ("not exist", "C", MMMU, True),
    ("B", "C", MMMU, False),
    ("2", "C", MMMU, False),
    ("104^\\circ", "C", MATHVISION, True),
    ("104°", "C", MATHVISION, True),
    ("100^\\circ", "C", MATHVISION, False),
    # gold an option's text (MathVista): a letter names that option
    ("C", "145°", MATHVISTA, True),
    ("(C)", "145°", MATHVISTA, True),
    ("145^{\\circ}", "145°", MATHVISTA, True),
    ("145", "145°", MATHVISTA, True),
    ("B", "145°", MATHVISTA, False),
    ("140°", "145°", MATHVISTA, False),
    ("C", "\\frac{1}{3}", FRACTIONS, True),
    ("\\dfrac{1}{3}", "\\frac{1}{3}", FRACTIONS, True),
    ("0.5", "\\frac{1}{3}", FRACTIONS, False),
    # never map an empty or unrelated answer to a choice
    ("", "C", MMMU, False),
    ("The figure is a square", "C", MMMU, False),
    ("banana", "145°", MATHVISTA, False),
    ("A or C", "C", MMMU, False),
    # no choices: letters compare as letters
    ("(C)", "C", None, True),
    ("(B)", "C", None, False),
    ("C. 24", "C", None, True),
    # several correct options
    ("A and C", "AC", ["1", "2", "3", "4"], True),
    ("C, A", "A, C", ["1", "2", "3", "4"], True),
    ("A", "AC", ["1", "2", "3", "4"], False),
    # a letter answer when the gold is a value that is an option's text, written differently
    ("D", "0.5", FRACTIONS, True),
    ("A", "0.5", FRACTIONS, False),
]


@pytest.mark.parametrize("answer, gold, choices, expected", CASES)
def test_choice_comparison(verifier, answer, gold, choices, expected):
    assert verifier.compare_sync(answer, gold, AnswerSpec(choices=choices or [])) is expected


def test_canonical_form_of_an_option_text_is_its_letter(verifier):
    verdict = verifier.check_sync("**Final Answer**\n\n\\boxed{145°}", AnswerSpec(choices=MATHVISTA), gold="C")
    assert verdict.canonical == "C" and verdict.correct is True
