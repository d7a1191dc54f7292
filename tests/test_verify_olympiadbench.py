"""The OlympiadBench judge's own answer-equivalence vectors (eval/scoring_examples.json), all 36.

A copy lives in tests/data/verify; when the shared developer sample is present, the copy must
equal it. `precision` (a number, or one per answer) is the judge's absolute tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvq_ray.verify.verifier import default_verifier

COPY = Path(__file__).parent / "data" / "verify" / "olympiadbench_scoring_examples.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "olympiadbench" / "eval" / "scoring_examples.json"
VECTORS = [
    (group["GT"], case["answer"], case.get("precision"), case["equal"])
    for group in json.loads(COPY.read_text(encoding="utf-8"))
    for case in group["Ans"]
]


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize("gold, answer, precision, equal", VECTORS, ids=[f"v{k}" for k in range(len(VECTORS))])
def test_scoring_example(verifier, gold, answer, precision, equal):
    assert verifier.compare_sync(answer, gold, tolerance=precision) is equal


def test_all_vectors_are_here():
    assert len(VECTORS) == 36


@pytest.mark.skipif(not SHARED.exists(), reason="shared OlympiadBench sample not present")
def test_copy_matches_the_shared_file():
    assert json.loads(COPY.read_text(encoding="utf-8")) == json.loads(SHARED.read_text(encoding="utf-8"))
