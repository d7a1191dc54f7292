"""Scoring one output row against gold: the final answer, every attempt, pass@1 / maj@k / pass@k.

One function for both places a row is scored: the CPU score stage (rules and sympy), and, when a
judge model is configured, the solve actor itself right after solving, so the judge's calls run on
that actor's engine (or endpoint) next to the solves in flight (stages.py).

A comparison that could not be judged (timeout, a value too large, a judge that did not answer)
leaves `correct` None: not judged, which the report shows as such, never as wrong. An attempt whose
engine call failed (`error` set) is no sample: its `correct` stays None and pass@1 / maj@k / pass@k
are over the attempts the engine answered. `decided_by`
says who decided the row's `correct` (and each attempt's): rules, sympy or judge.
"""

from __future__ import annotations

import functools
from typing import Any

from qvq_ray.problem import Problem, problem_of_output_row
from qvq_ray.verify.checker import AnswerChecker
from qvq_ray.verify.spec import AnswerSpec, has_gold


async def score_row(row: dict[str, Any], checker: AnswerChecker, *, problem: Problem | None = None) -> dict[str, Any]:
    """`row` with its scores, compared by `checker` (the Verifier, or with a judge the judging
    checker). `problem`: the row's problem when the caller has it already (else read from the row)."""
    from qvq_ray.results.metrics import attempt_outcome, problem_metrics
    from qvq_ray.verify.voting import AnswerClusters

    gold = row.get("gold")
    if not has_gold(gold):
        return row  # nothing to score against: correct and the metrics stay None
    if problem is None:
        try:
            problem = problem_of_output_row(row.get("problem"))
        except ValueError as exc:  # never scored with a guessed spec: an error row that says why
            reason = f"problem unreadable: {exc}".splitlines()[0][:300]
            return {**row, "error": row.get("error") or reason, "correct": False, "decided_by": "rules"}
    spec = problem.spec if problem else AnswerSpec(choices=list(row.get("choices") or []))
    question = (problem.question if problem else row.get("question")) or ""
    judged: dict[str, tuple[bool | None, str | None]] = {}

    async def matches_gold(answer: str | None) -> tuple[bool | None, str | None]:
        if answer is None:
            return False, "rules"
        if answer not in judged:
            judged[answer] = await checker.compare_detailed(
                answer, str(gold), spec, question=question, problem_key=row.get("id")
            )
        return judged[answer]

    def decider(verdict: dict[str, Any], by: str | None) -> str | None:
        """Who decided: the judge when it read the answer the rules compared, else the comparison's."""
        return "judge" if by is not None and verdict.get("extraction") == "judge" else by

    row = dict(row)
    clusters = AnswerClusters()  # as the solver votes: maj@k counts the same clusters
    outcomes = []
    same = functools.partial(checker.same_answer, spec=spec)
    for index, attempt in enumerate(row.get("attempts") or []):
        attempt["answer_cluster"] = None
        if attempt.get("error"):  # a failed engine call: no answer to score, and not a sample of k
            attempt["correct"], attempt["decided_by"] = None, None
            continue
        verdict = attempt.get("verdict") or {}
        answer = verdict.get("answer")
        correct, by = await matches_gold(answer)
        if answer is None and verdict.get("judge"):  # the judge read no answer, or did not answer at all
            by = verdict.get("decided_by")
            correct = False if by else None
        attempt["correct"], attempt["decided_by"] = correct, decider(verdict, by)
        if answer is not None:
            attempt["answer_cluster"] = (await clusters.ajoin(index, answer, verdict.get("canonical"), same)).members[0]
        outcomes.append(attempt_outcome(attempt))
    row["pass_at_1"], row["maj_at_k"], row["pass_at_k"] = problem_metrics(outcomes)
    attempts = row.get("attempts") or []
    chosen = row.get("chosen_attempt")
    if row.get("error"):
        row["correct"], row["decided_by"] = False, "rules"
    elif isinstance(chosen, int) and 0 <= chosen < len(attempts):  # the final answer is that attempt's
        row["correct"], row["decided_by"] = attempts[chosen]["correct"], attempts[chosen]["decided_by"]
    else:
        row["correct"], row["decided_by"] = await matches_gold(row.get("answer"))
    return row
