"""Scoring an output row (`batch/scoring.py: score_row`) with the real verifier."""

from __future__ import annotations

import asyncio

import pytest

from qvq_ray.batch.scoring import score_row
from qvq_ray.config import VerifierConfig
from qvq_ray.verify import Verifier


def _row(problem) -> dict:
    attempt = {"text": "\\boxed{5}", "verdict": {"answer": "5", "canonical": "5"}}
    return {"id": "r1", "gold": "5 cm", "answer": "5", "chosen_attempt": 0, "attempts": [attempt], "problem": problem}


@pytest.mark.parametrize("problem", ['{"question": "How long?", "answer": "5 cm", "unit', "[1, 2]", {"tolerance": "wide"}])
def test_a_row_whose_problem_cannot_be_read_is_an_error_row_never_scored_with_a_guessed_spec(problem):
    with Verifier(VerifierConfig(workers=1)) as verifier:
        row = asyncio.run(score_row(_row(problem), verifier))
    assert row["error"].startswith("problem unreadable: ")
    assert (row["correct"], row["decided_by"]) == (False, "rules")


def test_a_row_without_its_problem_is_scored_on_the_gold_alone():
    with Verifier(VerifierConfig(workers=1)) as verifier:
        row = asyncio.run(score_row(_row(None), verifier))
    assert row.get("error") is None and row["decided_by"] is not None


@pytest.mark.parametrize("gold", [None, "", "   "])
def test_no_gold_is_one_rule_for_the_scorer_and_the_report(gold):
    """A blank gold is no gold for the scorer (nothing scored) and for the report's views alike."""
    from qvq_ray.report.stats import views

    with Verifier(VerifierConfig(workers=1)) as verifier:
        row = asyncio.run(score_row({**_row(None), "gold": gold}, verifier))
    assert row.get("correct") is None and row.get("pass_at_1") is None
    assert views([row])[0].has_gold is False
