"""The scores an output row carries: pass@1, maj@k and pass@k of one problem from its attempts'
outcomes against gold, the score columns, and who decided them (counted the same everywhere).

The batch job writes these (batch/scoring.py, rescore) and the report reads them back
(report/stats.py, the job summary): one definition below both.

- pass@1: the first attempt's answer is correct (what a single sample scores).
- maj@k: the most common answer over all k attempts is correct (ties go to the answer seen first).
- pass@k: some attempt's answer is correct (an upper bound: it needs gold to pick; oracle mode's
  accuracy is this number, and reports say so).

The outcomes are of the attempts the engine answered: an attempt whose engine call failed (`error`
set) is no sample, and its callers (batch/scoring.py, report/stats.py) leave it out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AttemptOutcome:
    """One attempt as scoring sees it: its answer's cluster (equivalent answers share a key) and correctness."""

    cluster: str | None  # None: no answer
    correct: bool


def attempt_outcome(attempt: dict[str, Any]) -> AttemptOutcome:
    """A scored attempt's vote: its answer cluster as the score stage formed it (`answer_cluster`)
    and its correctness. The one reading of a cluster, for the row's maj@k and the report's maj@j."""
    cluster = attempt.get("answer_cluster")
    return AttemptOutcome(cluster=None if cluster is None else str(cluster), correct=attempt.get("correct") is True)


def problem_metrics(outcomes: list[AttemptOutcome]) -> tuple[bool, bool, bool]:
    """(pass@1, maj@k, pass@k) for one problem; all False without attempts."""
    if not outcomes:
        return False, False, False
    pass_at_1 = outcomes[0].correct
    pass_at_k = any(o.correct for o in outcomes)
    votes: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    correct_cluster: dict[str, bool] = {}
    for position, outcome in enumerate(outcomes):
        if outcome.cluster is None:
            continue
        votes[outcome.cluster] = votes.get(outcome.cluster, 0) + 1
        first_seen.setdefault(outcome.cluster, position)
        correct_cluster[outcome.cluster] = correct_cluster.get(outcome.cluster, False) or outcome.correct
    if not votes:
        return pass_at_1, False, pass_at_k
    winner = max(votes, key=lambda c: (votes[c], -first_seen[c]))
    return pass_at_1, correct_cluster[winner], pass_at_k


SCORE_COLUMNS = ("correct", "pass_at_1", "maj_at_k", "pass_at_k")


def is_scored(row: dict[str, Any]) -> bool:
    """Whether a row has been scored already (the solve actor scores when a judge is configured)."""
    return row.get("pass_at_1") is not None


def score_unanswered(row: dict[str, Any]) -> dict[str, Any]:
    """An output row that never got an answer (an error before any attempt), held against gold, is
    wrong on every score; without gold, or once scored, it is returned as it is."""
    if row.get("gold") in (None, "") or row.get("attempts") or is_scored(row):
        return row
    return {**row, **dict.fromkeys(SCORE_COLUMNS, False), "decided_by": "rules"}


#: Who decided a scored row's `correct`, in the order summaries list them.
DECIDED_ORDER = ("rules", "sympy", "judge", "not judged", "unrecorded")


def decided_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Scored rows by who decided them, in `DECIDED_ORDER` (rules, sympy, judge, not judged, unrecorded)."""
    # rows written before `decided_by` existed say nothing: "unrecorded", never a guess
    counts = Counter(r.get("decided_by") or ("not judged" if r.get("correct") is None else "unrecorded") for r in rows)
    return {k: counts[k] for k in DECIDED_ORDER if counts.get(k)}
