"""The OlympiadBench judge's own answer-equivalence vectors (eval/scoring_examples.json), all 36.

Read at test time from the shared OlympiadBench sample (`../shared/data/olympiadbench/eval/`,
see tests/conftest.py `shared_data`); the module is skipped when it is absent.
`precision` (a number, or one per answer) is the judge's absolute tolerance.
"""

from __future__ import annotations

import json

import pytest

from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verifier import default_verifier
from tests.conftest import shared_data

SCORING_EXAMPLES = shared_data("olympiadbench/eval/scoring_examples.json")  # skips the module when absent
VECTORS = [
    (group["GT"], case["answer"], case.get("precision"), case["equal"])
    for group in json.loads(SCORING_EXAMPLES.read_text(encoding="utf-8"))
    for case in group["Ans"]
]


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize("gold, answer, precision, equal", VECTORS, ids=[f"v{k}" for k in range(len(VECTORS))])
def test_scoring_example(verifier, gold, answer, precision, equal):
    assert verifier.compare_sync(answer, gold, AnswerSpec(tolerance=precision)) is equal


def test_all_vectors_are_here():
    assert len(VECTORS) == 36
