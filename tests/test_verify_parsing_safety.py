"""No wrong value accepted by parsing, and units read where models write them (issue 11, items 2-3)."""

from __future__ import annotations

import pytest

from qvq_ray.verify import check
from qvq_ray.verify.numbers import parse_number

QVQ = "**Final Answer**\n\n\\[ \\boxed{{{}}} \\]"


@pytest.mark.parametrize(
    "text, value",
    [("20 000", 20000), ("20\u2009000", 20000), ("7,425,000", 7425000), ("1{,}000", 1000), ("1 234 567", 1234567), ("12 34", None)],
)
def test_thousands_separators_are_one_number(text, value):
    number = parse_number(text)
    assert (number.value if number else None) == value


@pytest.mark.parametrize(
    "answer, gold, correct",
    [
        # thousands separators: one number, never a product
        ("20 000", "20000", True),
        ("20 000", "0", False),
        ("20\\,000", "20000", True),
        ("20\\,000 \\times 3", "60000", True),
        ("1000,99", "1000.99", True),  # a decimal comma where nothing else can be meant
        ("7,425", "7.425", False),  # three digits after a comma: thousands
        # juxtaposed parts are never combined
        ("(1) 20 cm", "21 cm", False),
        ("(1) 20 cm", "20 cm", True),
        ("2 3", "5", False),
        ("2 3", "6", False),
        ("(1) 20 cm (2) 30 cm", "20 cm, 30 cm", True),
        ("①5 ②7", "①5 ②7", True),
        ("①5 ②7", "5, 7", True),
        ("①5 ②7", "57", False),
        # symbols keep their case; I, E, Greek letters are symbols
        ("R", "r", False),
        ("2 \\pi R", "2 \\pi r", False),
        ("2 \\pi R", "2 \\pi R", True),
        ("I", "i", False),
        ("I_0", "I_1", False),
        ("I_0 R", "R I_0", True),
        ("\\gamma", "0.5772156649015329", False),
        ("\\Gamma", "\\gamma", False),
        ("E", "e", False),
        ("E / B", "E/B", True),
        ("E / B", "B/E", False),
    ],
)
def test_parsing_never_accepts_a_wrong_value(answer, gold, correct):
    assert check(QVQ.format(answer), gold).correct is correct


@pytest.mark.parametrize(
    "answer, gold, unit, correct",
    [
        ("3 \\text{ cubic cm}", "3 cm^3", None, True),
        ("3 cubic cm", "3000 mm^3", None, True),
        ("2 \\text{ sq m}", "2 m^2", None, True),
        ("2 square meters", "2 m^2", None, True),
        ("25 per cent", "25\\%", None, True),
        ("25 percent", "0.25", None, True),
        ("30 degrees", "30^\\circ", None, True),
        ("30°", "30^{\\circ}", None, True),
        ("30 \\text{deg}", "30^\\circ", None, True),
        ("3 米/秒", "3 m/s", None, True),
        ("3 米每秒", "3 m/s", None, True),
        ("20 牛", "20 N", None, True),
        ("5 焦", "5 J", None, True),
        ("5 千克", "5000 g", None, True),
        ("5 千克", "5 g", None, False),
        ("9.8 \\mathrm{kg \\cdot m^{-2}}", "9.8", "\\mathrm{kg \\cdot m^{-2}}", True),
        ("9.8 \\mathrm{kg \\cdot m^{-2}}", "9.8", "\\mathrm{kg \\cdot m^{-3}}", False),
        ("1.2 \\mathrm{~N} \\cdot \\mathrm{m}", "1.2", "N m", True),
        ("[1, 3] \\mathrm{~m}", "[1, 3]", "m", True),
        ("(2, 3) \\mathrm{~s}", "(2, 3)", "s", True),
    ],
)
def test_units(answer, gold, unit, correct):
    assert check(QVQ.format(answer), gold, unit=unit).correct is correct


def test_bare_number_names_the_option_that_carries_a_unit():
    choices = ["$4 \\mathrm{~cm}$", "$5 \\mathrm{~cm}$", "$6 \\mathrm{~cm}$"]
    assert check("\\boxed{5}", "B", choices=choices).correct is True
    assert check("\\boxed{5}", "A", choices=choices).correct is False
    assert check("\\boxed{5 \\mathrm{~m}}", "B", choices=choices).correct is False


@pytest.mark.parametrize(
    "answer, gold, answer_type, correct",
    [
        # `E / B` lists the answers where the gold has as many; a ratio or nothing otherwise
        ("E / B", "E, B", "Expression,Expression", True),
        ("B / E", "E, B", None, True),  # several answers are unordered
        ("E / C", "E, B", None, False),
        ("E / B", "E", None, False),
        ("E/B", "E, B", None, False),  # no spaces: a ratio
        ("3 / 5", "3, 5", None, False),  # numbers: a ratio, never a pair
        ("E / B", "\\frac{E}{B}", None, True),
        # circled numbers label parts, in either side
        ("①3 ②5", "3, 5", "Numerical,Numerical", True),
        ("① 3；② 5", "3, 5", None, True),
        ("①3 ②5", "①3 ②5", None, True),
        ("①3 ②5", "5, 3", None, True),
        ("①3 ②6", "3, 5", None, False),
        # an equation whose left side combines names states the value asked for (MATH-V 1848)
        ("G+J = 6", "6", None, True),
        ("G + J = 6", "7", None, False),
        ("AB + CD = 10", "10", None, True),
        ("6", "G+J=6", None, True),
        ("x + 1 = 6", "6", None, False),  # a number on the left: an equation to solve
        ("2x = 6", "6", None, False),
        # two integers as written are exact; float noise needs an approximation
        ("2309415686", "2309415687", None, False),
        ("0.30000000000000004", "0.3", None, True),
    ],
)
def test_pairs_parts_and_value_statements(answer, gold, answer_type, correct):
    assert check(QVQ.format(answer), gold, answer_type=answer_type).correct is correct


def test_letter_pair_with_choices_stays_a_hedge():
    assert check(QVQ.format("E / B"), "B", choices=["1", "2", "3", "4", "5"]).correct is False


@pytest.mark.parametrize(
    "response",
    [
        "所以答案是 ①3 ②5。",
        "**答案**\n\n① 3\n② 5",
        "**答案**\n\n①3；②5",
        "① \\boxed{3} ② \\boxed{5}",
        "\\boxed{①3} \\boxed{②5}",
    ],
)
def test_circled_parts_are_read_wherever_written(response):
    assert check(response, "3, 5", answer_type="Numerical,Numerical").correct is True
    assert check(response, "3, 6", answer_type="Numerical,Numerical").correct is False


def test_math_v_1848_value_statement():
    """The real response (GPT-4 CoT, MATH-V test id 1848, "what is the value of G+J?"): right."""
    response = "So the only solution must have 6 on the G,J,K spots. This leaves the numbers G+J = 6. Therefore $$\\boxed{G+J = 6}.$$"
    assert check(response, "6").correct is True


def test_parenthesised_products_are_never_read_as_sums():
    """latex2sympy reads `2(16)` as 18 and `(8)(6)` as 14: neither may be accepted for those values."""
    assert check(QVQ.format("2(16)"), "18").correct is False
    assert check(QVQ.format("2(16)"), "32").correct is True
    assert check(QVQ.format("(8)(6)"), "14").correct is False
    assert check(QVQ.format("2(7/3)"), "\\frac{13}{3}").correct is False
