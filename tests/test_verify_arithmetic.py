"""The in-process arithmetic of claim sides (`verify/arithmetic.py`): exact where it decides, silent
(None) where the reading is ambiguous, in agreement with the sympy path, and it saves worker calls."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.arithmetic import evaluate
from qvq_ray.verify.calculation import claim_latex, find_claims, holds_fast
from qvq_ray.verify.verifier import Verifier


@pytest.mark.parametrize(
    "side, value",
    [
        ("97-73", Fraction(24)),
        ("3 \\times 4.5", Fraction(27, 2)),
        ("\\frac{1}{2}+\\frac{1}{3}", Fraction(5, 6)),
        ("2^{10}", Fraction(1024)),
        ("2^{-2}", Fraction(1, 4)),
        ("-2^{2}", Fraction(-4)),
        ("\\sqrt{3^2+4^2}", Fraction(5)),
        ("\\frac{1}{2}(8)(6)", Fraction(24)),  # latex2sympy alone reads 7
        ("2(16)", Fraction(32)),  # latex2sympy alone reads 18
        ("2(7/3)", Fraction(14, 3)),  # latex2sympy alone reads 2 + 7/3
        ("\\left(\\frac{1}{2}\\right)(30)(30)", Fraction(450)),
        ("5!/(2!3!)", None),  # `2!3!`: juxtaposed, left to sympy
        ("5!/(2! \\cdot 3!)", Fraction(10)),
        ("50\\%", Fraction(1, 2)),
        ("100 \\% - 45 \\%", Fraction(11, 20)),
        ("12 \\div 4 \\cdot 3", Fraction(9)),
        ("2^{3^{2}}", Fraction(512)),
    ],
)
def test_exact_values(side, value):
    assert evaluate(side) == value


@pytest.mark.parametrize(
    "side, value",
    [("2\\sqrt{2}", 2 * math.sqrt(2)), ("3\\pi", 3 * math.pi), ("\\frac{1}{2}\\pi(10)^{2}", 50 * math.pi), ("\\sqrt{2}", math.sqrt(2))],
)
def test_approximate_values(side, value):
    result = evaluate(side)
    assert isinstance(result, float) and result == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    "side",
    [
        "1\\frac{1}{2}",  # a mixed number, or 1 times a half?
        "170 / 2\\pi",  # 170/(2 pi) or 85 pi?
        "1/2\\sqrt{2}",
        "2 3",  # two numbers side by side
        "x + 1",
        "\\sin 30",
        "2^3^2",
        "2^{1000}",  # past the exponent bound
        "1/0",
        "\\sqrt{-4}",
        "\\sqrt{8} - 2\\sqrt{2}",  # an approximate zero: float cancellation, left to sympy
        "3.",
        "1000!",
        "",
        "(" * 300 + "1" + ")" * 300,  # past the token bound
    ],
)
def test_outside_the_grammar_is_none(side):
    assert evaluate(side) is None


def test_the_sympy_path_reads_parenthesised_products_as_products():
    """`symbolic.leaf_latex` makes `2(16)` and `(8)(6)` explicit products before latex2sympy."""
    pytest.importorskip("sympy")
    from qvq_ray.verify.symbolic import evaluate_closed

    assert evaluate_closed("2(16)") == 32
    assert evaluate_closed("(8)(6)") == 48
    assert evaluate_closed("\\frac{1}{2}(8)(6)") == 24
    assert evaluate_closed("2\\left(\\frac{100}{2}\\right)") == 100
    assert evaluate_closed("\\log_2(8)") == pytest.approx(3)  # a function's argument stays one


@pytest.mark.parametrize(
    "claim, holds",
    [
        (("97-73", "=", "24"), True),
        (("97-73", "=", "34"), False),
        (("\\frac{1}{2}(8)(6)", "=", "24"), True),
        (("2\\sqrt{2}", "~", "2.83"), True),
        (("2\\sqrt{2}", "~", "2.7"), False),
        (("\\pi(10)^2", "~", "314.16"), True),
        (("0.333 \\times 3", "=", "1"), True),
        (("\\sqrt{8}", "=", "2\\sqrt{2}"), True),
        (("1\\frac{1}{2}", "=", "1.5"), None),
    ],
)
def test_holds_fast(claim, holds):
    assert holds_fast(*claim) is holds


def test_plain_arithmetic_claims_need_no_worker_call():
    response = "We have 97 - 73 = 24 and 3 \\times 8 = 24, so 24 + 1 = 25.\n\n**Final Answer**\n\n\\boxed{25}"
    with Verifier(VerifierConfig(workers=1)) as verifier:
        calls = []
        real_call = verifier.pool.call
        verifier.pool.call = lambda *a, **k: calls.append(a) or real_call(*a, **k)
        verdict = verifier.check_sync(response, gold="25")
        assert verdict.correct is True and verdict.false_claims == [] and calls == []
        wrong = verifier.check_sync(response.replace("= 24 and", "= 34 and"), gold="25")
        assert wrong.false_claims == ["97 - 73 = 34"] and "false_calculation" in wrong.issues and calls == []
        mixed = verifier.check_sync("So 2 + 2 = 5 and 1\\frac{1}{2} + 1 = 2.5.\n\n\\boxed{5}", gold="5")
        assert mixed.false_claims == ["2 + 2 = 5"] and len(calls) == 1  # a mixed number needs sympy: one call


def test_agrees_with_the_sympy_path_on_real_claims():
    """Every claim side the fast path decides, on a sample of the development set's real outputs,
    has the value sympy gives it (where sympy gives one)."""
    from tests.conftest import shared_data

    root = shared_data("model_outputs")
    import json

    from qvq_ray.verify.symbolic import evaluate_closed

    sides: set[str] = set()
    for line in (root / "mathvision" / "InternLM-XComposer2-VL-CoT.jsonl").read_text(encoding="utf-8").splitlines():
        for claim in find_claims(json.loads(line)["response"] or ""):
            sides.update((claim.lhs, claim.rhs))
    sample = random.Random(11).sample(sorted(sides), min(250, len(sides)))
    decided = 0
    for side in sample:
        latex = claim_latex(side)
        fast = evaluate(latex)
        if fast is None:
            continue
        decided += 1
        try:
            slow = evaluate_closed(latex)
        except Exception:  # noqa: BLE001 - latex2sympy could not read it: nothing to compare
            continue
        if slow is not None:
            assert abs(slow - float(fast)) <= 1e-9 * max(1.0, abs(slow)), side
    assert decided >= len(sample) // 2  # most real claim sides are plain arithmetic
