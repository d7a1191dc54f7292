"""The verifier's result record, shared by the solver, the batch rows and the HTTP API."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

# How the answer was found (`qvq_ray.verify.extract`): the first two are explicit final answers, the
# last two weak rules (an answer read from the last sentence, or the one option it mentions) that
# add the issue `weak_extraction`, so a policy may re-sample on them (off by default).
# `judge`: the rules found none and a judge model read the answer (qvq_ray/judge/); weak too.
# `restatement`: read by restating the question (`Is X the maximum?` -> `X is not the maximum.`); weak too.
ExtractionRule = Literal[
    "boxed", "statement", "final_sentence", "whole_response", "choice_mention", "judge", "restatement"
]
EXTRACTIONS: tuple[ExtractionRule, ...] = get_args(ExtractionRule)
WEAK_EXTRACTIONS = frozenset({"final_sentence", "choice_mention", "judge", "restatement"})
# Who decided a verdict: the string rules, a sympy comparison in a worker, or the judge model.
Decider = Literal["rules", "sympy", "judge"]
DECIDERS: tuple[Decider, ...] = get_args(Decider)


class JudgeNote(BaseModel):
    """What the judge model was asked about one response, and what came of it."""

    task: Literal["extraction", "equivalence"] = Field(..., description="What it was asked.")
    outcome: str | None = Field(
        None, description="Its answer, read: the extracted answer ('' = it found none), or '1'/'0' for equivalence; "
        "None when it did not answer (see `error`)."
    )
    cached: bool = Field(False, description="Taken from the judge cache (no call made).")
    error: str | None = Field(None, description="Why it gave no outcome (failed, timed out, unreadable, over budget).")


class Verdict(BaseModel):
    answer: str | None = Field(None, description="Final answer as the model wrote it (None: none found).")
    extraction: ExtractionRule | None = Field(
        None,
        description="How the answer was found: boxed, statement (a final-answer statement), whole_response "
        "(the response is the answer, or starts with it), final_sentence or choice_mention (weak: read "
        "from the last sentences; the issue 'weak_extraction'), restatement (weak: read by restating the "
        "question); None when there is no answer.",
    )
    canonical: str | None = Field(None, description="Normalised answer, for grouping equivalent answers.")
    correct: bool | None = Field(None, description="Against gold; None when no gold was given.")
    issues: list[str] = Field(
        default_factory=list, description="Problems found (names from qvq_ray.issues.ISSUES, or a user check's '<check>:<issue>'); all gold-free but 'timeout'."
    )
    false_claims: list[str] = Field(
        default_factory=list, description="The wrong numeric claims behind 'false_calculation' (e.g. '97-73 = 34')."
    )
    decided_by: Decider | None = Field(
        None,
        description="Who decided the answer and `correct`: 'rules' (string rules), 'sympy' (a symbolic comparison), "
        "'judge' (the judge model read the answer or judged a free-text match); None when nothing was decided "
        "(not judged).",
    )
    judge: list[JudgeNote] = Field(default_factory=list, description="The judge's work on this response, if any.")
    elapsed_s: float = Field(0.0, description="Time the check took.")
