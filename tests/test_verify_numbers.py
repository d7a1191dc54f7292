"""Numbers: exact parsing, tolerances (absolute, OlympiadBench `error`, MathVista `precision`),
rounded decimals, percentages, degrees; no absolute rounding of tiny values, no 3.14 = pi."""

from __future__ import annotations

from fractions import Fraction

import pytest

from qvq_ray.verify.numbers import number_text, numbers_equal, parse_number, parse_tolerance
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verifier import default_verifier


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize(
    "text, value, decimal, ulp",
    [
        ("12", Fraction(12), False, None),
        ("-0.50", Fraction(-1, 2), True, Fraction(1, 100)),
        (".5", Fraction(1, 2), True, Fraction(1, 10)),
        ("1,234", Fraction(1234), False, None),
        ("1{,}234.5", Fraction(12345, 10), True, Fraction(1, 10)),
        ("7.1\\times10^{35}", Fraction(71 * 10**34), True, Fraction(10**34)),
        ("7.1 \\cdot 10^{35}", Fraction(71 * 10**34), True, Fraction(10**34)),
        ("1.5e-3", Fraction(15, 10000), True, Fraction(1, 10000)),
        ("10^{-3}", Fraction(1, 1000), False, None),
        ("\\frac{3}{4}", Fraction(3, 4), False, None),
        ("-\\frac{3}{4}", Fraction(-3, 4), False, None),
        ("\\frac34", Fraction(3, 4), False, None),
        ("3/4", Fraction(3, 4), False, None),
    ],
)
def test_parse_number(text, value, decimal, ulp):
    n = parse_number(text)
    assert n is not None and n.value == value and n.decimal is decimal and n.ulp == ulp


@pytest.mark.parametrize("text", ["x", "1e999999", "10^{100000}", "1,2", "\\frac{1}{0}", "2\\pi", "", "1" * 200])
def test_not_plain_numbers(text):
    assert parse_number(text) is None


def test_number_text():
    assert number_text(parse_number("024.50")) == "24.5"
    assert number_text(parse_number("\\frac{1}{2}")) == "0.5"
    assert number_text(parse_number("\\frac{1}{3}")) == "1/3"
    assert number_text(parse_number("-\\infty")) == "-oo"


@pytest.mark.parametrize(
    "value, parsed",
    [(0.1, [0.1]), ("1e-1", [0.1]), (",1e-2", [None, 0.01]), ("1e0,1e2", [1.0, 100.0]), ([1e34, 0.001], [1e34, 0.001]), (None, None), ("", None), (-1, None)],
)
def test_parse_tolerance(value, parsed):
    assert parse_tolerance(value) == parsed


RULES = [
    # (gold, answer, tolerance, precision, expected)
    ("2.47", "2.5", 0.1, None, True),
    ("2.47", "2.6", 0.1, None, False),
    ("7 \\times 10^{35}", "7.1 \\cdot 10^{35}", 1e34, None, True),
    ("7 \\times 10^{35}", "7.1 \\cdot 10^{35}", 1e33, None, False),
    ("130.9", "130.94", None, 1, True),  # MathVista precision: rounded to 1 place
    ("130.9", "130.96", None, 1, False),
    ("0.33", "0.3333", None, 2, True),
    ("12", "12.0", None, None, True),
    ("12", "12.4", None, None, False),  # integers are exact (MathVista truncated 12.4 to 12)
    ("2.47", "2.4712", None, None, True),  # a decimal gold is a rounded value
    ("0.5", "0.54", None, None, False),  # ... but a one-digit gold is not a rounding of 0.54
    ("1.0e-30", "1.1e-30", None, None, False),  # relative, never absolute: tiny values differ
    ("1e-30", "1.0000000000001e-30", None, None, True),
    ("0", "0.0", None, None, True),
    ("\\infty", "+\\infty", None, None, True),
]


@pytest.mark.parametrize("gold, answer, tolerance, precision, expected", RULES)
def test_number_rules(gold, answer, tolerance, precision, expected):
    assert numbers_equal(parse_number(gold), parse_number(answer), tolerance=tolerance, precision=precision) is expected


THROUGH_THE_VERIFIER = [
    # anchors: absolute rounding (math-verify #14) and 2-decimal rounding (MATH-V)
    ("\\frac{1}{2006!}", "\\frac{1}{2004!}", {}, False),
    ("\\frac{1}{2004!}", "\\frac{1}{2004 \\cdot 2003!}", {}, True),
    ("\\pi", "3.14", {}, False),
    ("\\pi", "3.1416", {}, True),  # rounded at 5 significant digits
    ("\\pi", "3.1415", {}, True),  # truncated
    ("\\pi", "3.1417", {}, False),
    ("\\frac{1}{3}", "0.333", {}, False),
    ("\\frac{1}{3}", "0.3333", {}, True),
    ("\\sqrt{2}", "1.414", {}, True),
    ("\\cos^{10}(\\frac{\\pi}{10})", "0.6054", {"tolerance": 1e-4}, True),
    ("0.6054", "\\cos^{10}(\\frac{\\pi}{10})", {}, True),  # the gold fixes the precision
    ("e^{-2004}", "e^{-2006}", {}, False),
    ("2\\sqrt{3}", "\\sqrt{12}", {}, True),
    ("1024", "2^{10}", {}, True),
    ("1.5 \\times 10^{3}", "1500", {}, True),
    ("2+3i", "3i+2", {}, True),
    ("2+3i", "2-3i", {}, False),
    # percentages
    ("0.6", "60\\%", {}, True),
    ("60", "60\\%", {}, True),  # the gold left the sign out
    ("0.6", "0.6\\%", {}, False),
    ("25\\%", "0.25", {}, True),
    ("25\\%", "25", {}, True),
    ("25\\%", "\\frac{1}{4}", {}, True),
    ("4.2", "4.2\\%", {"unit": "%"}, True),
    # degrees
    ("30^\\circ", "30", {}, True),
    ("30^\\circ", "\\frac{\\pi}{6}", {}, True),
    ("\\frac{\\pi}{6}", "30^{\\circ}", {}, True),
    ("30^\\circ", "\\frac{\\pi}{3}", {}, False),
    ("55°", "55^{\\circ}", {}, True),
]


@pytest.mark.parametrize("gold, answer, problem, expected", THROUGH_THE_VERIFIER)
def test_numbers_through_the_verifier(verifier, gold, answer, problem, expected):
    assert verifier.compare_sync(answer, gold, AnswerSpec(**problem)) is expected
