"""Gold answers of every shared benchmark sample against re-written equivalent and non-equivalent forms.

The golds (with their choices, unit, tolerance, precision and answer type) are read at test time
from the shared developer samples of MATH-V, MathVista, MMMU and OlympiadBench (`../shared/data`,
see tests/conftest.py `shared_data`) through our own loaders; the module is skipped when they are
absent. Each gold is checked the way a solve run checks it: a QVQ-style response ending in
`**Final Answer**` and a box, through the Verifier and its pool.
"""

from __future__ import annotations

import re

import pytest

from qvq_ray.datasets import load_problems
from qvq_ray.problem import Problem
from qvq_ray.verify.numbers import parse_number
from qvq_ray.verify.verifier import default_verifier
from tests.conftest import shared_data

BENCHMARKS = ("mathvision", "mathvista", "mmmu", "olympiadbench")
GOLDS_PER_BENCHMARK = {"mathvision": 50, "mathvista": 40, "mmmu": 30, "olympiadbench": 37}  # OlympiadBench: the auto-scorable
LETTERS = "ABCDEFGHIJ"


def _gold_row(benchmark: str, p: Problem) -> dict:
    """The gold and its `AnswerSpec` as the loader filled them, plus what the forms below need."""
    return {
        "source": benchmark,
        "id": p.id,
        "gold": p.answer,
        "spec": p.spec,
        "choices": p.spec.choices,
        "unit": p.spec.unit,
        "tolerance": (p.spec.tolerance or [None])[0],  # the first answer's
        "precision": p.spec.precision,
        "alternatives": p.spec.alternatives,
        "multiple": bool(p.meta.get("is_multiple_answer")),  # OlympiadBench
    }


def _load_golds() -> list[dict]:
    rows = []
    for benchmark in BENCHMARKS:
        for p in load_problems(shared_data(benchmark)):  # skips the module when a sample is absent
            assert isinstance(p, Problem), p  # the shared samples load without error rows
            if p.answer:  # OlympiadBench proofs have no gold
                rows.append(_gold_row(benchmark, p))
    return rows


GOLDS = _load_golds()


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


def _response(answer: str) -> str:
    return f"Let me look at the figure carefully and work it out.\n\n**Final Answer**\n\n\\[ \\boxed{{{answer}}} \\]"


def _strip_dollars(s: str) -> str:
    return s.replace("$", "").strip()


def _equivalent_forms(row: dict) -> list[str]:
    gold = row["gold"]
    choices = row["choices"] or []
    forms = [_strip_dollars(gold)]
    if choices:
        if len(gold) == 1 and gold in LETTERS:
            index = LETTERS.index(gold)
            forms += [f"({gold})", f"\\text{{{gold}}}", f"{gold}. {_strip_dollars(choices[index])}"]
            option = _strip_dollars(choices[index])
            if option and sum(_strip_dollars(c) == option for c in choices) == 1 and not option.startswith("<image"):
                forms.append(option)
        elif gold in choices:
            forms.append(LETTERS[choices.index(gold)])
            forms.append(f"({LETTERS[choices.index(gold)]})")
        return forms
    number = parse_number(_strip_dollars(gold))
    if number is not None and not number.infinite:
        text = _strip_dollars(gold)
        if "." in text and "\\times" not in text:
            forms.append(text + "0")  # 2.47 -> 2.470
        if number.value.denominator != 1 and "frac" not in text and "/" not in text and row.get("precision") is None:
            forms.append(f"\\frac{{{number.value.numerator}}}{{{number.value.denominator}}}")
        unit = row.get("unit")
        if unit and "," not in unit and re.fullmatch(r"[A-Za-z/]+", unit):
            forms.append(f"{text} \\mathrm{{{unit}}}")
        forms.append(f"x = {text}")
    else:
        forms.append(re.sub(r"\s+", " ", _strip_dollars(gold)).replace("\\frac", "\\dfrac"))
    if row.get("alternatives"):
        forms += row["alternatives"]
    return forms


def _different_forms(row: dict) -> list[str]:
    gold = _strip_dollars(row["gold"])
    choices = row["choices"] or []
    if choices:
        if len(gold) == 1 and gold in LETTERS:
            other = LETTERS[(LETTERS.index(gold) + 1) % len(choices)]
            return [other, f"({other})"]
        index = choices.index(row["gold"]) if row["gold"] in choices else 0
        other = (index + 1) % len(choices)
        return [LETTERS[other], _strip_dollars(choices[other])]
    number = parse_number(gold)
    if number is not None and not number.infinite:
        step = 10 * max(row["tolerance"] or 0, float(number.ulp) if number.ulp else 1)
        value = float(number.value) + step
        return [f"{value:.6g}", f"-{gold}" if not gold.startswith("-") else gold[1:]]
    if row.get("multiple") and "," in gold:
        return [gold.split(",")[0]]  # one answer of several
    return [f"{gold} + 1", f"2\\left({gold}\\right)" if "=" not in gold else gold.replace("=", "= 2 +", 1)]


CASES = [
    pytest.param(row, form, expected, id=f"{row['source']}-{row['id']}-{'eq' if expected else 'ne'}{k}")
    for row in GOLDS
    for expected, forms in ((True, _equivalent_forms(row)), (False, _different_forms(row)))
    for k, form in enumerate(forms)
]


@pytest.mark.parametrize("row, form, expected", CASES)
def test_gold_against_rewritten_forms(verifier, row, form, expected):
    verdict = verifier.check_sync(_response(form), row["spec"], gold=row["gold"])
    assert verdict.correct is expected, (form, row["gold"], verdict)


def test_every_gold_matches_itself_when_written_plainly(verifier):
    results = verifier.check_many([(_response(_strip_dollars(r["gold"])), r["gold"], r["spec"]) for r in GOLDS])
    wrong = [(r["source"], r["id"], r["gold"]) for r, v in zip(GOLDS, results) if v.correct is not True]
    assert not wrong


def test_every_sample_with_a_gold_is_checked():
    counts = {b: sum(r["source"] == b for r in GOLDS) for b in BENCHMARKS}
    assert counts == GOLDS_PER_BENCHMARK
