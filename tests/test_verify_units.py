"""Physical units: splitting value and unit, conversion with sympy.physics.units, missing units."""

from __future__ import annotations

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.units import Quantity, split_quantity
from qvq_ray.verify.verifier import Verifier, default_verifier


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize(
    "text, quantity",
    [
        ("0.64N", Quantity("0.64", unit="N")),
        ("0.6400 N", Quantity("0.6400", unit="N")),
        ("\\frac{16}{25}N", Quantity("\\frac{16}{25}", unit="N")),
        ("500 g", Quantity("500", unit="g")),
        ("9.8\\,\\mathrm{m/s^2}", Quantity("9.8", unit="m s^{-2}")),
        ("3 \\text{ m/s}", Quantity("3", unit="m s^{-1}")),
        ("2.47 \\mathrm{~m}", Quantity("2.47", unit="m")),
        ("4\\pi \\text{ cm}^2", Quantity("4\\pi", unit="cm^{2}")),
        ("6.67 \\times 10^{-11} N m^2/kg^2", Quantity("6.67 \\times 10^{-11}", unit="N m^{2} kg^{-2}")),
        ("12 km/h", Quantity("12", unit="km h^{-1}")),
        ("10 \\mu F", Quantity("10", unit="\\muF")),
        ("60\\%", Quantity("60", percent=True)),
        ("30^{\\circ}", Quantity("30", degree=True)),
        ("5 apples", Quantity("5", label="apples")),
        ("56万", Quantity("56", label="万")),
        # algebra, not units
        ("5m", Quantity("5m")),
        ("3s", Quantity("3s")),
        ("2n+1", Quantity("2n+1")),
        ("x+1", Quantity("x+1")),
    ],
)
def test_split_quantity(text, quantity):
    assert split_quantity(text) == quantity


CASES = [
    # (gold, answer, problem, expected)
    ("0.5 kg", "500 g", {}, True),
    ("500 kg", "500 g", {}, False),
    ("500 g", "0.5 kg", {}, True),
    ("1 m", "1 s", {}, False),  # different dimensions
    ("1 m", "100 cm", {}, True),
    ("20 m/s", "72 km/h", {}, True),
    ("1.5 \\text{ eV}", "1.5 eV", {}, True),
    ("9.8 m/s^2", "9.8 \\mathrm{m\\cdot s^{-2}}", {}, True),
    ("2 \\mu F", "2 \\times 10^{-6} F", {}, True),
    ("1 kWh", "3.6 MJ", {}, True),
    ("0.64N", "\\frac{16}{25}N", {}, True),
    # a gold that states its unit against an answer without one (OlympiadBench's judge: not equal)
    ("0.64N", "0.64", {}, False),
    # the problem names the unit: a bare number is read in it, a unit is converted
    ("2.47", "2.47", {"unit": "m"}, True),
    ("2.47", "2.47 m", {"unit": "m"}, True),
    ("2.47", "247 cm", {"unit": "m"}, True),
    ("2.47", "2.47 s", {"unit": "m"}, False),
    ("13.1", "13.1 m/s", {"unit": "m/s", "tolerance": "1e-1"}, True),
    ("13.1", "47.2 km/h", {"unit": "m/s", "tolerance": "1e-1"}, True),
    ("13.1", "13.3", {"unit": "m/s", "tolerance": "1e-1"}, False),
    ("9", "9", {"unit": "years"}, True),
    ("9", "9 years", {"unit": "years"}, True),
    # one unit per answer (OlympiadBench `unit` ",kg", `error` "1e0,1e2")
    ("F_{n}=387, M=9.892 \\times 10^{4}", "F_n = 387, M = 98.9 t", {"unit": ",kg", "tolerance": "1e0,1e2"}, False),
    ("F_{n}=387, M=9.892 \\times 10^{4}", "F_n = 387, M = 98920", {"unit": ",kg", "tolerance": "1e0,1e2"}, True),
    ("F_{n}=387, M=9.892 \\times 10^{4}", "F_n = 387.6, M = 98.92 \\times 10^{3} kg", {"unit": ",kg", "tolerance": "1e0,1e2"}, True),
    # labels that are not units are ignored on either side
    ("5 apples", "5", {}, True),
    ("5", "5 apples", {}, True),
    ("56", "56万", {"unit": "万"}, True),
    # the answer has a unit, the gold none
    ("4.0", "4.0 kg", {}, True),
]


@pytest.mark.parametrize("gold, answer, problem, expected", CASES)
def test_units(verifier, gold, answer, problem, expected):
    assert verifier.compare_sync(answer, gold, AnswerSpec(**problem)) is expected


def test_missing_unit_can_be_read_in_the_gold_unit():
    with Verifier(VerifierConfig(workers=1, missing_unit="assume_gold")) as v:
        assert v.compare_sync("0.64", "0.64N") is True
        assert v.compare_sync("0.65", "0.64N") is False
