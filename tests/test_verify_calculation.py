"""The calculation check: closed numeric claims in a chain of thought, checked with sympy in the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.calculation import find_claims
from qvq_ray.verify.verifier import Verifier, default_verifier

CHAINS = json.loads((Path(__file__).parent / "data" / "verify" / "qvq_style_chains.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


FOUND = [
    ("So $97-73=24$.", ["97-73 = 24"]),
    ("and $3 \\times 4 = 12$,", ["3 \\times 4 = 12"]),
    ("\\frac{1}{2}+\\frac{1}{3}=\\frac{5}{6}", ["\\frac{1}{2}+\\frac{1}{3} = \\frac{5}{6}"]),
    ("so 2^{10} = 1024.", ["2^{10} = 1024"]),
    ("so 2^10 = 1024 and 10! = 3628800", ["2^10 = 1024", "10! = 3628800"]),
    ("\\sqrt{2} \\approx 1.414", ["\\sqrt{2} ≈ 1.414"]),
    ("\\angle ABC = 180 - 50 - 60 = 70", ["180 - 50 - 60 = 70"]),
    ("3^2 + 4^2 = 5^2 = 25", ["3^2 + 4^2 = 5^2", "5^2 = 25"]),
    ("12 ÷ 4 = 3, 7 − 2 = 5", ["12 \\div  4 = 3", "7 - 2 = 5"]),
    ("\\begin{align} x &= 3+4 \\\\ &= 7 \\end{align}", ["3+4 = 7"]),
    ("Thinking... 97 - 73 = 24. **Final Answer**", ["97 - 73 = 24"]),
    ("(3 + 4 = 7)", ["3 + 4 = 7"]),
    ("50% = 0.5", ["50% = 0.5"]),
    # part of a larger expression, or not arithmetic: no claim
    ("x_1 = 3", []),
    ("2x = 4", []),
    ("f(3) = 5", []),
    ("7 mod 3 = 1", []),
    ("half of 24 = 12", []),
    ("3 times 4 = 12", []),
    ("\\sin 30 = 0.5", []),
    ("5 m \\times 2 = 10 m", []),
    ("Step 3 = done", []),
    ("x^2 = 4", []),
    ("a^2 + b^2 = c^2", []),
    ("1,000 + 24 = 1,024", []),
    ("3 = 3", []),
    ("x \\leq 3 + 4", []),
]


@pytest.mark.parametrize("text, claims", FOUND)
def test_find_claims(text, claims):
    assert [c.text for c in find_claims(text)] == claims


def test_claims_are_bounded():
    text = "1 + 1 = 2, " * 10_000
    assert len(find_claims(text, limit=64)) == 1  # duplicates once
    text = " ".join(f"{k} + 1 = {k + 1}." for k in range(1000))
    assert len(find_claims(text, limit=64)) == 64


@pytest.mark.parametrize("chain", CHAINS, ids=[c["name"] for c in CHAINS])
def test_chains_flag_exactly_their_wrong_claims(verifier, chain):
    verdict = verifier.check_sync(chain["text"])
    assert verdict.false_claims == chain["false"]
    assert ("false_calculation" in verdict.issues) is bool(chain["false"])
    assert verdict.correct is None


@pytest.mark.parametrize(
    "text, wrong",
    [
        ("so 1/3 = 0.333 and 0.333 \\times 3 = 1.", []),  # rounded decimals: digits written
        ("\\pi \\approx 3 and 2 \\times \\pi \\approx 6.28", []),
        ("100/3 \\approx 33", []),
        ("100/3 = 33", ["100/3 = 33"]),
        ("22/7 = 3.142857...", []),
        ("\\frac{22}{7} = 3.15", ["\\frac{22}{7} = 3.15"]),
        ("1.5 \\times 10^{3} = 1500", []),
        ("50% = 0.6", ["50% = 0.6"]),
        ("(10^7)! = 5", []),  # too large to evaluate: unchecked, no alarm, no hang
        ("9^{9^{9^{9}}} = 1", []),
    ],
)
def test_claim_checks(verifier, text, wrong):
    verdict = verifier.check_sync(text + " \\boxed{1}")
    assert verdict.false_claims == wrong


def test_calculation_check_can_be_turned_off():
    with Verifier(VerifierConfig(workers=1, check_calculations=False)) as v:
        verdict = v.check_sync(CHAINS[-1]["text"])
        assert verdict.false_claims == [] and "false_calculation" not in verdict.issues
        assert v.pool._all == set()  # nothing needed a worker
