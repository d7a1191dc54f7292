"""Issue 21, items 2-4: answers compared as the values they write.

Structures (matrices bare and in brackets, sets and set-builder notation, tuples, `name = value`
golds single or tuple, ratios, decimal commas, clock times, inequalities), units (a prefix is part
of the quantity, fraction units, degrees Celsius, Chinese units, units after an interval, unit lists
split at a full-width comma) and equations (compared by their sides, never by their truth value).
Every case goes through the real Verifier and its worker pool; most of the True cases were rejected
and most of the False ones accepted before (see the issue), so each can fail.
"""

from __future__ import annotations

import pytest

from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.structures import clock_time, parse_structure
from qvq_ray.verify.units import Quantity, parse_unit_tokens, prefixed_apart, split_quantity
from qvq_ray.verify.verifier import default_verifier


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


STRUCTURES = [
    # matrices: bracket styles, a list of rows, shape and entries
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "[[1,2],[3,4]]", {}, True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "[[1,2],[4,3]]", {}, False),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", {}, True),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2&3&4\\end{pmatrix}", {}, False),
    ("[[1,2],[3,4]]", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", {}, True),
    # sets: set-builder notation is the condition it states
    ("\\{x \\mid x > 2\\}", "(2, \\infty)", {}, True),
    ("\\{x \\mid x > 2\\}", "(3, \\infty)", {}, False),
    ("\\{x | x > 2\\}", "x>2", {}, True),
    ("\\{x \\mid x > 2\\}", "x \\ge 2", {}, False),
    # tuples and `name = value` golds
    ("(a,b)=(1,2)", "(1,2)", {}, True),
    ("(a,b)=(1,2)", "(2,1)", {}, False),
    ("(a,b)=(1,2)", "a=1, b=2", {}, True),
    ("(a,b)=(1,2)", "b=2, a=1", {}, True),
    ("(a,b)=(1,2)", "a=2, b=1", {}, False),
    ("(1,2)", "(a,b)=(1,2)", {}, True),
    ("(x, y) = (3, -1)", "(y, x) = (-1, 3)", {}, True),
    ("(x, y) = (3, -1)", "(y, x) = (3, -1)", {}, False),
    ("(x,y,z)=(1,2,3)", "(1,3,2)", {}, False),
    ("\\text{area} = 12", "12", {}, True),
    ("\\text{area} = 12", "13", {}, False),
    ("m=2, n=3", "2, 3", {}, True),
    ("m=2, n=3", "3, 2", {}, False),
    ("AB:BC = 2:1", "2:1", {}, True),
    # ratios: proportional, or a two-part ratio as its quotient
    ("1:2:3", "2:4:6", {}, True),
    ("1:2:3", "1:2:4", {}, False),
    ("2:3", "2 \\colon 3", {}, True),
    ("2:3", "3:2", {}, False),
    ("3:4", "0.75", {}, True),
    ("0.75", "3:4", {}, True),
    ("3:4", "0.8", {}, False),
    ("1:\\sqrt{3}", "\\sqrt{3}:3", {}, True),
    ("1:\\sqrt{3}", "\\sqrt{3}:2", {}, False),
    # decimal commas, on either side
    ("3,5", "3.5", {}, True),
    ("0,25", "\\frac{1}{4}", {}, True),
    ("3,5", "3.6", {}, False),
    ("3{,}5", "3.5", {}, True),
    ("1{,}500", "1500", {}, True),
    ("1,500", "1.5", {}, False),
    ("3,5", "3.5", {"answer_type": "list"}, False),
    # clock times are times, not ratios
    ("10:30", "10:45", {}, False),
    ("6:00", "3:00", {}, False),
    ("12:00", "1:00", {}, False),
    ("5:19", "\\frac{5}{19}", {}, True),  # a clock-shaped gold against a fraction: a ratio after all
    ("5:19", "\\frac{5}{18}", {}, False),
    ("10:30", "10:30 AM", {}, True),
    ("4:30", "4:30 p.m.", {}, True),
    ("4:30 PM", "4:30 AM", {}, False),
    ("9:00", "9 o'clock", {}, True),
    # boxed text golds: the value a `\text{}` wraps
    ("\\text{5 cm}", "5 cm", {}, True),
    ("\\text{5 cm}", "6 cm", {}, False),
    ("\\text{1 and 2}", "1 and 2", {}, True),
    ("\\text{1 and 2}", "1 and 3", {}, False),
]


UNITS = [
    # a prefix is part of the quantity (8 of 16 wrong accepts on OlympiadBench were mrad/krad)
    ("5", "5 mrad", {"unit": "rad"}, False),
    ("5", "5 \\mathrm{krad}", {"unit": "\\mathrm{rad}"}, False),
    ("5", "5000 mrad", {"unit": "rad"}, True),
    ("5 rad", "5000 mrad", {}, True),
    ("3 \\mathrm{rad/s}", "3 \\mathrm{mrad/s}", {}, False),
    ("5", "5 km", {"unit": "m"}, False),
    ("5", "5000 m", {"unit": "km"}, True),
    ("3 pc", "3 kpc", {}, False),
    ("3", "3 kpc", {"unit": "pc"}, False),
    # fraction units
    ("1000", "1000 \\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}", {"unit": "\\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}"}, True),
    ("1000 \\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}", "1 g/cm^3", {}, True),
    ("1000 \\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}", "1 kg/m^3", {}, False),
    ("3", "3 \\frac{m}{s^{2}}", {"unit": "\\mathrm{~m} / \\mathrm{s}^{2}"}, True),
    ("2\\frac{h}{m}", "\\frac{2h}{m}", {}, True),  # letters glued to a number: algebra, not a unit
    # degrees Celsius
    ("25", "25^{\\circ} \\mathrm{C}", {"unit": "^{\\circ} \\mathrm{C}"}, True),
    ("25", "26^{\\circ} \\mathrm{C}", {"unit": "^{\\circ} \\mathrm{C}"}, False),
    ("25^{\\circ}C", "25 degrees Celsius", {}, True),
    ("25^{\\circ} \\mathrm{C}", "25 K", {}, False),
    # Chinese units
    ("60千米/时", "60 km/h", {}, True),
    ("60", "60千米/小时", {"unit": "千米/时"}, True),
    ("60", "61千米/时", {"unit": "千米/时"}, False),
    ("20", "20海里/时", {"unit": "海里/时"}, True),
    ("5", "5米", {"unit": "米"}, True),
    ("5千克", "5000克", {}, True),
    ("5千克", "5克", {}, False),
    ("3吨", "3000 kg", {}, True),
    ("15", "15元", {"unit": "元"}, True),
    ("15元", "16元", {}, False),
    # units after an interval
    ("(-\\infty, 3]", "(-\\infty, 3] m", {"unit": "m"}, True),
    ("[1, 3]", "[1,3] \\mathrm{km}", {"unit": "m"}, False),
    ("[1, 3]", "[1000,3000] \\mathrm{m}", {"unit": "km"}, True),
    # a unit list with a full-width comma
    ("2, 3", "2 m, 3 s", {"unit": "m，s"}, True),
    ("2, 3", "2 m, 3 m", {"unit": "m，s"}, False),
]


# equations: by their sides (or as the same relation), never by truth value; the gold may be false
EQUATIONS = [
    ("1 = 3", "1 = 2", {}, False),
    ("2 = 2", "3 = 3", {}, False),
    ("0 = 0", "1 = 1", {}, False),
    ("1 = 3", "3 = 1", {}, True),
    ("\\sqrt{2} = 1", "\\sqrt{3} = 1", {}, False),
    ("\\sqrt{2} = 1", "1 = \\sqrt{2}", {}, True),
    ("x + 1 = x + 3", "y + 1 = y + 2", {}, False),
    ("x + 1 = x + 3", "x + 1 = x + 3", {}, True),
    ("x^2 = 1", "x^2 - 1 = 0", {}, True),
    ("y = 2x+1", "2y = 4x + 2", {}, True),
    ("x + y = 3", "x + y = 4", {}, False),
    # a gold of digits juxtaposed before a root is compared as text, never as a degenerate product
    ("2 3\\sqrt{2}", "0", {}, False),
    ("2 3\\sqrt{2}", "0 \\cdot 5", {}, False),
    ("2 3\\sqrt{2}", "6\\sqrt{2}", {}, False),
    ("2 3\\sqrt{2}", "2 3\\sqrt{2}", {}, True),
]


@pytest.mark.parametrize("gold, answer, spec, expected", STRUCTURES + UNITS + EQUATIONS)
def test_answers_compared_as_the_values_they_write(verifier, gold, answer, spec, expected):
    assert verifier.compare_sync(answer, gold, AnswerSpec(**spec)) is expected


@pytest.mark.parametrize(
    "text, shape",
    [
        ("10:30", "clock('10:30')"),
        ("1:2:3", "ratio[scalar('1'), scalar('2'), scalar('3')]"),
        ("\\{x \\mid x > 2\\}", "relation(scalar('x') > scalar('2') )"),
        ("\\text{1 and 2}", "several[scalar('1'), scalar('2')]"),
        ("Answer: 5", "scalar('5')"),
        ("\\{(x,y) | x+y=1\\}", "text('\\\\{(x,y) | x+y=1\\\\}')"),
    ],
)
def test_parse_structure_of_new_shapes(text, shape):
    assert repr(parse_structure(text)) == shape


@pytest.mark.parametrize(
    "text, seconds, meridiem",
    [("10:30", 37800, None), ("4:30 PM", 59400, "p"), ("12:00 a.m.", 0, "a"), ("9:05:30", 32730, None), ("9 o'clock", 32400, None)],
)
def test_clock_time(text, seconds, meridiem):
    assert clock_time(text) == (seconds, meridiem)


@pytest.mark.parametrize(
    "text, quantity",
    [
        ("25^{\\circ} \\mathrm{C}", Quantity("25", unit="degC")),
        ("25℃", Quantity("25", unit="degC")),
        ("5米", Quantity("5", unit="m")),
        ("1000 \\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}", Quantity("1000", unit="kg m^{-3}")),
        ("2\\frac{h}{m}", Quantity("2\\frac{h}{m}")),
        ("5 mrad", Quantity("5", unit="mrad")),
    ],
)
def test_split_quantity_reads_new_units(text, quantity):
    assert split_quantity(text) == quantity


def test_unit_parsing_and_prefixes():
    assert parse_unit_tokens("\\frac{1}{\\mathrm{s}}") == [("s", -1)]
    assert parse_unit_tokens("海里/时") == [("nmi", 1), ("h", -1)]
    assert prefixed_apart("kpc", "pc") and prefixed_apart("\\mathrm{rad}", "mrad")
    assert not prefixed_apart("apples", "pears") and not prefixed_apart("pc", "pc")
