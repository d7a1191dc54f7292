"""Structures: sets (unordered), tuples and points (ordered), intervals (open/closed ends), unions,
matrices, equations, inequalities, several answers, `\\pm`, bare LaTeX golds parsed whole."""

from __future__ import annotations

import pytest

from qvq_ray.verify.structures import normalize_answer, parse_structure
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verifier import default_verifier


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize(
    "text, shape",
    [
        ("(-\\infty,1]\\cup[10,+\\infty)", "union[seq([scalar('-\\\\infty'), scalar('1')]], seq[[scalar('10'), scalar('+\\\\infty')])]"),
        ("(2,1),(3,1)", "several[seq([scalar('2'), scalar('1')]), seq([scalar('3'), scalar('1')])]"),
        ("\\{1, 2\\}", "set[scalar('1'), scalar('2')]"),
        ("[2014, 2016]", "seq[[scalar('2014'), scalar('2016')]]"),
        ("\\langle 1, 2\\rangle", "seq<[scalar('1'), scalar('2')]>"),
        ("1,000", "scalar('1,000')"),
        ("1,-2", "several[scalar('1'), scalar('-2')]"),
        ("x=2", "relation(scalar('x') = scalar('2') )"),
        ("1<x\\leq 3", "relation(scalar('1') < scalar('x') <= scalar('3') )"),
        ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "matrix[scalar('1'), scalar('2'), scalar('3'), scalar('4')]"),
        ("no solution", "text('no solution')"),
        ("(7)", "scalar('7')"),
    ],
)
def test_parse_structure(text, shape):
    assert repr(parse_structure(text)) == shape


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("$\\boxed{[-4/2, 0.5]}$", "[-4/2, 0.5]"),
        ("\\left( 1, 2 \\right]", "( 1, 2 ]"),
        ("\\dfrac{9}{7}.", "\\frac{9}{7}"),
        ("4\\sqrt(2)", "4\\sqrt{2}"),
        ("x \\geqslant 2", "x \\ge 2"),
        ("x=1 \\text{ and } y=2", "x=1 , y=2"),
        ("The answer is 5.", "5"),
        ("x² − 1", "x^2 - 1"),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


CASES = [
    # sets: unordered; tuples and points: ordered
    ("\\{1, 2, 3\\}", "\\{3, 1, 2\\}", {}, True),
    ("\\{1, 2, 3\\}", "\\{1, 2\\}", {}, False),
    ("\\{1, 2\\}", "(1, 2)", {}, False),
    ("(1, 2)", "(2, 1)", {}, False),
    ("(1, 2, 3)", "(1, 2, 3)", {}, True),
    ("(1, 2, 3)", "(1, 3, 2)", {}, False),
    ("(\\frac{1}{\\sqrt{3-\\sqrt{3}}}, 0)", "\\left(\\frac{1}{\\sqrt{3-\\sqrt{3}}}, 0\\right)", {}, True),
    ("\\langle 1, 2 \\rangle", "(1, 2)", {}, True),
    # intervals: the brackets matter
    ("(1, 2]", "(1, 2]", {}, True),
    ("(1, 2]", "(1, 2)", {}, False),
    ("[1, 2]", "[1, 2)", {}, False),
    ("[-2, \\frac{1}{2}]", "[-4/2, 0.5]", {}, True),
    ("(-\\infty, 1] \\cup [10, \\infty)", "[10, +\\infty) \\cup (-\\infty, 1]", {}, True),
    ("(-\\infty, 1] \\cup [10, \\infty)", "(-\\infty, 1) \\cup [10, \\infty)", {}, False),
    ("\\left(-\\frac{1}{3}, 1\\right] \\cup\\left\\{\\frac{1+\\sqrt{3}}{2}\\right\\}", "(-\\frac13, 1] \\cup \\{\\frac{1+\\sqrt3}{2}\\}", {}, True),
    # inequalities and intervals
    ("(2, \\infty)", "x > 2", {}, True),
    ("(2, \\infty)", "x \\ge 2", {}, False),
    ("(1, 3]", "1 < x \\le 3", {}, True),
    ("x > 2", "2 < x", {}, True),
    ("x \\le 3", "(-\\infty, 3]", {}, True),
    ("x < 1 \\text{ or } x > 2", "(-\\infty, 1) \\cup (2, \\infty)", {}, True),
    ("x \\in (0, 1)", "(0, 1)", {}, True),
    ("a > b", "b < a", {}, True),
    ("a > b", "a < b", {}, False),
    # matrices
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", {}, True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", {}, False),
    ("\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", {}, False),
    ("\\begin{pmatrix}\\frac{1}{2}&0\\\\0&1\\end{pmatrix}", "\\begin{pmatrix}0.5&0\\\\0&1\\end{pmatrix}", {}, True),
    # equations
    ("x=2", "2", {}, True),
    ("2", "x=2", {}, True),
    ("x=2", "y=2", {}, False),
    ("x=2", "x=3", {}, False),
    ("x^2+y^2=1", "1-x^2-y^2=0", {}, True),
    ("x^2+y^2=1", "x^2-y^2=1", {}, False),
    ("\\frac{x^2}{4} + y^{2} = 1", "x^2 + 4y^2 = 4", {}, True),
    ("y = 2x+1", "2x - y + 1 = 0", {}, True),
    ("y = 2x+1", "y = 2x - 1", {}, False),
    ("a_{n} = 2n+1", "a_n = 1 + 2n", {}, True),
    ("v=2\\omega R", "2 R \\omega", {}, True),
    ("\\hat{y}=0.28 x-0.64, 37.29", "\\hat{y} = 0.28x - 0.64, 37.3", {"tolerance": ",1e-1"}, True),
    # several answers (OlympiadBench is_multiple_answer): any order, each with its own tolerance
    ("1, -2", "-2, 1", {}, True),
    ("1, -2", "1, -3", {}, False),  # Qwen2.5-Math grader #50 called this equal
    ("1, -2", "1", {}, False),
    ("2, 3", "x = 2 \\text{ or } x = 3", {}, True),
    ("c, a, b", "c, a, b", {}, True),
    ("294.04, 293.81", "293.8, 294.0", {"tolerance": "1e-1"}, True),
    ("0.003, 5.233", "0.002, 5.234", {"tolerance": 0.001}, True),
    ("19,0,1", "19, 0, 1", {}, True),
    # plus-minus
    ("\\sqrt{3}, -\\sqrt{3}", "\\pm\\sqrt{3}", {}, True),
    ("\\sqrt[3]{\\frac{5}{12}}, -\\sqrt[3]{\\frac{5}{12}}", "y = \\pm \\sqrt[3]{\\frac{5}{12}}", {}, True),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt{2}, 1-\\sqrt{2}", {}, True),
    ("\\pm 2", "2", {}, False),
    # bare LaTeX golds parse whole (math-verify #70, #74) and `4\sqrt(2)` is not 4 (#41)
    ("\\dfrac{9}{7}", "\\frac{9}{7}", {}, True),
    ("\\dfrac{9}{7}", "9/7", {}, True),
    ("\\dfrac{9}{7}", "9", {}, False),
    ("1-\\sqrt2", "1-\\sqrt{2}", {}, True),
    ("1-\\sqrt2", "1", {}, False),
    ("4\\sqrt(2)", "4", {}, False),
    ("4\\sqrt(2)", "\\sqrt{32}", {}, True),
    # expressions
    ("\\frac{(n-1)!}{k!} \\frac{n}{(n-k)!}", "\\frac{n!}{k!(n-k)!}", {}, True),
    ("\\binom{n}{2}", "\\frac{n(n-1)}{2}", {}, True),
    ("2 \\pi R", "2R\\pi", {}, True),
    ("2 \\pi R", "2R", {}, False),
    ("x+1", "y+1", {}, False),
    ("n^{2}+1", "1+n^2", {}, True),
    ("\\frac{kRv_0d^2}{qL}, 25", "25\\%, \\frac{k R v_{0} d^{2}}{q L}", {"unit": ", %"}, True),
    ("(1, 2)", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", {}, True),  # a column vector is a point
    ("x=1, y=2", "(1, 2)", {}, True),
    ("\\frac{1}{2}", "\\sin 30^\\circ", {}, True),  # degrees inside a function
    ("\\emptyset", "\\varnothing", {}, True),
    ("(x+1)^2", "x^2+2x+1", {}, True),
    ("a^2 - b^2", "(a-b)(a+b)", {}, True),
    ("\\sqrt{3}", "3^{\\frac{1}{2}}", {}, True),
    ("\\log_2 8", "3", {}, True),
    ("d_1^* = S_1", "d_1^{*} = S_1", {}, True),
    ("e_1, e_8", "e_8, e_1", {}, True),
    ("\\{x | x > 2\\}", "\\{x \\mid x > 2\\}", {}, True),  # set-builder: compared as written
    # text
    ("no solution", "No Solution", {}, True),
    ("north", "\\text{north}", {}, True),
    ("Paris", "pairs", {}, False),
]


@pytest.mark.parametrize("gold, answer, problem, expected", CASES)
def test_structures(verifier, gold, answer, problem, expected):
    assert verifier.compare_sync(answer, gold, AnswerSpec(**problem)) is expected
