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


def test_the_reports_maj_at_k_is_the_rows_own():
    """One maj@k: the report's maj@j at j = k reads the clusters the score stage formed. Here the
    two wrong answers are written differently (other canonical forms) but equal, so they outvote
    the one right answer; grouping by canonical form instead gave three clusters of one, and the
    tie went to the first, right, answer."""
    from qvq_ray.report.stats import attempts_curve, views

    answers = [("\\boxed{7}", "7"), ("\\boxed{2x+2}", "2x+2"), ("\\boxed{2(x+1)}", "2(x+1)")]
    attempts = [{"text": text, "verdict": {"answer": answer, "canonical": answer}} for text, answer in answers]
    row = {"id": "r1", "gold": "7", "answer": "7", "chosen_attempt": 0, "attempts": attempts, "problem": None}
    with Verifier(VerifierConfig(workers=1)) as verifier:
        row = asyncio.run(score_row(row, verifier))
    assert [a["answer_cluster"] for a in row["attempts"]] == [0, 1, 1]
    assert (row["pass_at_1"], row["maj_at_k"], row["pass_at_k"]) == (True, False, True)
    curve = attempts_curve(views([row]))
    assert [point.maj_at_j for point in curve] == [1.0, 1.0, 0.0]  # at j = 3: the row's maj@k
