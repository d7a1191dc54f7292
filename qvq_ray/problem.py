"""Problem / Attempt / Solution records, and the rows the batch job reads and writes.

Row schemas are derived from these records (`qvq_ray/arrow_rows.py`), never written by hand.
Images travel like Hugging Face's Image feature: a struct of `bytes` and `path`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qvq_ray.arrow_rows import arrow_schema, from_row, to_row
from qvq_ray.config import SamplingConfig
from qvq_ray.image_ref import ImageRef as ImageRef  # re-exported (loaders import it from here)
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verdict import Verdict

if TYPE_CHECKING:
    import pyarrow as pa


class Problem(BaseModel):
    """One problem, whatever benchmark it came from (adapters map native fields onto these)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="Unique id within the problem set.")
    question: str = Field(..., description="Question text; may hold `<image1>`-style placeholders.")
    images: list[ImageRef] = Field(default_factory=list)
    answer: str | None = Field(None, description="Gold answer; never read while solving in `self` mode.")
    spec: AnswerSpec = Field(
        default_factory=AnswerSpec,
        description="How an answer is read and compared (choices, unit, tolerance, ...), filled by the loader.",
    )
    source: str | None = Field(None, description="Benchmark or problem set name.")
    subject: str | None = None
    language: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, description="Native fields with no home above.")

    @model_validator(mode="before")
    @classmethod
    def _flat_spec_fields(cls, data: Any) -> Any:
        """Problem files write `choices`, `unit`, `tolerance`... at the top level: gather them into `spec`."""
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in AnswerSpec.model_fields if k in data}
        if not flat:
            return data
        data = {k: v for k, v in data.items() if k not in flat}
        spec = data.get("spec")
        spec = spec.model_dump() if isinstance(spec, AnswerSpec) else dict(spec or {})
        clash = sorted(set(flat) & {k for k, v in spec.items() if v not in (None, [])})
        if clash:
            raise ValueError(f"{clash} given both at the top level and in 'spec'")
        data["spec"] = {**spec, **flat}
        return data

    def gold_free(self) -> "Problem":
        """What may be seen while solving without gold: the `problem_view` as a Problem (a policy's
        problem in `self` mode, a user check's problem in the verifier's workers)."""
        return Problem.model_validate(problem_view(self))


def problem_view(problem: Problem) -> dict[str, Any]:
    """The gold-free, image-free view of a problem: id, question, spec without the accepted
    alternatives, source, subject, language. Not `answer`, not `spec.alternatives`, not `meta`
    (loaders keep gold-derived fields there, e.g. MathVista's `answer_letter`, MMMU's `answers`),
    not the images (bytes)."""
    return {
        "id": problem.id,
        "question": problem.question,
        "spec": problem.spec.model_dump(mode="json", exclude={"alternatives"}),
        "source": problem.source,
        "subject": problem.subject,
        "language": problem.language,
    }


class Attempt(BaseModel):
    """One generation and its verdict, or one engine call that failed (`error` set: no text, no verdict)."""

    text: str
    sampling: SamplingConfig
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    verdict: Verdict = Field(default_factory=Verdict)
    cut_off: bool = Field(False, description="Stopped early by the loop cut-off.")
    tokens_saved: int = Field(0, description="max_tokens minus tokens generated, when cut off.")
    error: str | None = Field(
        None, description="Why this attempt's engine call failed (then no text, no verdict, never a vote or a "
        "scored sample); None when the engine answered."
    )


class PromptRecord(BaseModel):
    """The prompt a solution was generated from: enough to tell runs apart and to read what the model saw.

    Kept once per solution, not per attempt (a re-sample sends the same prompt, plus
    `policy.retry_hint` when one is set).
    """

    preset: str = Field(..., description="The prompt preset's name (`prompt.preset`).")
    overrides: list[str] = Field(default_factory=list, description="Prompt fields the config set over the preset.")
    template_sha: str = Field(
        ..., description="16 hex digits of sha256 over the resolved template and the system prompt: equal for every "
        "row solved with the same prompt recipe."
    )
    text: str = Field(..., description="The user message as sent, each image shown as <image>.")


class Solution(BaseModel):
    """What solving one problem produced: the final answer and every attempt behind it."""

    id: str
    answer: str | None = None
    verdict: Verdict = Field(default_factory=Verdict, description="The verdict of the chosen attempt.")
    confidence: float | None = Field(
        None, description="Share of the winning answer's votes (self-consistency); 1.0 accepted, 0.0 none healthy."
    )
    mode: str = Field("self", description="'self' (gold never read) or 'oracle' (accuracy is pass@k).")
    chosen_attempt: int | None = Field(None, description="Index in `attempts` of the answer given.")
    attempts: list[Attempt] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_saved: int = Field(0, description="Tokens the loop cut-off saved over all attempts.")
    latency_s: float = 0.0
    error: str | None = Field(
        None, description="Why solving failed: set only when no attempt produced an answer (a failed engine call "
        "among answered attempts is recorded on its attempt alone)."
    )
    prompt: PromptRecord | None = Field(None, description="The prompt sent; None when solving failed before it was built.")
    stop_reason: str | None = Field(
        None, description="Why the policy ended the solve without accepting an answer (its `Stop` reason); None otherwise."
    )


# ---------------------------------------------------------------- rows


class InputRow(Problem):
    """A problem as the batch job reads it: `error` set for a row the loader could not parse."""

    model_config = ConfigDict(extra="forbid")

    error: str | None = Field(None, description="Why the row could not be loaded (it is still written, as an error row).")


class ScoredAttempt(Attempt):
    """An attempt in an output row, with its answer scored against gold."""

    correct: bool | None = Field(
        None, description="This attempt's answer vs gold (score stage); None: no gold, or not judged (timeout)."
    )
    decided_by: str | None = Field(
        None, description="Who decided `correct`: rules, sympy or judge (the judge model); None when not judged."
    )
    answer_cluster: int | None = Field(
        None,
        description="The index of the first attempt whose answer this one's equals: the clusters maj@k voted "
        "over when the row was scored, which the report's maj@j reads too. None: no answer (or a failed call).",
    )


class StoredProblem(BaseModel):
    """The problem as an output row keeps it, for re-scoring and reports: everything but the image
    bytes (counted instead). A typed struct column, so a stage reads it without parsing text."""

    id: str
    question: str = ""
    answer: str | None = None
    spec: AnswerSpec = Field(default_factory=AnswerSpec)
    source: str | None = None
    subject: str | None = None
    language: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    num_images: int = Field(0, description="Images the problem had (their bytes are not kept).")

    @classmethod
    def of(cls, problem: Problem) -> "StoredProblem":
        return cls(**problem.model_dump(exclude={"images"}), num_images=len(problem.images))

    def problem(self) -> Problem:
        return Problem(**self.model_dump(exclude={"num_images"}))


class OutputRow(BaseModel):
    """One output row of the solve job: the solution, the problem's identity and gold, and scores.

    `answer`, `canonical`, `issues` and `false_claims` are the chosen attempt's verdict, flat for
    readers of the Parquet files; the whole verdict is in `attempts[chosen_attempt].verdict`.
    """

    id: str
    source: str | None = None
    question: str | None = None
    choices: list[str] = Field(default_factory=list)
    gold: str | None = None
    answer: str | None = None
    canonical: str | None = None
    verified: bool = Field(False, description="Answered, no error, and no issue from the gold-free checks.")
    issues: list[str] = Field(default_factory=list)
    false_claims: list[str] = Field(default_factory=list, description="The wrong claims behind 'false_calculation'.")
    correct: bool | None = Field(
        None, description="Final answer vs gold; None without gold or when the comparison could not be judged."
    )
    decided_by: str | None = Field(
        None, description="Who decided `correct`: rules, sympy or judge (the judge model); None without gold or not judged."
    )
    pass_at_1: bool | None = None
    maj_at_k: bool | None = None
    pass_at_k: bool | None = None
    confidence: float | None = None
    mode: str = "self"
    chosen_attempt: int | None = None
    attempts: list[ScoredAttempt] = Field(default_factory=list)
    num_attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_saved: int = 0
    latency_s: float = 0.0
    error: str | None = None
    stop_reason: str | None = Field(None, description="Why the policy ended the solve without accepting (its Stop reason).")
    prompt: PromptRecord | None = Field(None, description="The prompt the solution was generated from (preset, recipe hash, user text).")
    problem: StoredProblem | None = Field(None, description="The Problem without image bytes, for re-scoring.")


def problem_schema() -> pa.Schema:
    return arrow_schema(Problem)


def input_schema() -> pa.Schema:
    return arrow_schema(InputRow)


def solution_schema() -> pa.Schema:
    return arrow_schema(OutputRow)


def problem_to_row(problem: Problem) -> dict[str, Any]:
    return to_row(problem)


def problem_from_row(row: dict[str, Any]) -> Problem:
    return from_row(Problem, row)


def stored_problem_dict(value: Any) -> dict[str, Any]:
    """An output row's `problem` value as a plain dict: the struct (this version), or the JSON text
    older versions wrote; {} when absent or unreadable."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            data = json.loads(value)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def problem_of_output_row(value: Any) -> Problem | None:
    """The problem of an output row's `problem` column (images left out), None if absent.

    A value that is there but cannot be read raises ValueError saying why: scoring it with a guessed
    spec (its units, tolerance and choices lost) would give a verdict nobody asked for."""
    if value in (None, "", {}):
        return None
    data = stored_problem_dict(value)
    if not data:
        raise ValueError(f"the row's problem is not a problem record: {str(value)[:80]!r}")
    if isinstance(value, str):  # older JSON text: the record's own form
        data = {k: v for k, v in data.items() if k != "num_images"}
        return Problem.model_validate(data)
    return from_row(StoredProblem, data).problem()


def solution_to_row(solution: Solution, problem: Problem | None) -> dict[str, Any]:
    """Output row of the solve stage; the scores stay None until the score stage fills them."""
    verdict = solution.verdict
    row = OutputRow(
        id=solution.id,
        source=problem.source if problem else None,
        question=problem.question if problem else None,
        choices=list(problem.spec.choices) if problem else [],
        gold=problem.answer if problem else None,
        answer=solution.answer,
        canonical=verdict.canonical,
        verified=solution.error is None and solution.answer is not None and not verdict.issues,
        issues=list(verdict.issues),
        false_claims=list(verdict.false_claims),
        confidence=solution.confidence,
        mode=solution.mode,
        chosen_attempt=solution.chosen_attempt,
        attempts=[ScoredAttempt(**a.model_dump()) for a in solution.attempts],
        num_attempts=len(solution.attempts),
        prompt_tokens=solution.prompt_tokens,
        completion_tokens=solution.completion_tokens,
        tokens_saved=solution.tokens_saved,
        latency_s=solution.latency_s,
        error=solution.error,
        stop_reason=solution.stop_reason,
        prompt=solution.prompt,
        problem=StoredProblem.of(problem) if problem else None,
    )
    return to_row(row)


def solution_from_row(row: dict[str, Any]) -> Solution:
    """The Solution an output row was written from (every field: the verdict is the chosen attempt's)."""
    out = from_row(OutputRow, row)
    attempts = [Attempt(**a.model_dump(exclude={"correct", "decided_by", "answer_cluster"})) for a in out.attempts]
    chosen = attempts[out.chosen_attempt].verdict if out.chosen_attempt is not None and attempts else Verdict()
    shared = out.model_dump(include=set(Solution.model_fields) - {"verdict", "attempts"})
    return Solution(**shared, verdict=chosen, attempts=attempts)


def error_row(problem_id: str, reason: str, problem: Problem | None = None, **known: Any) -> dict[str, Any]:
    """The one output row of an input row that failed before or during solving."""
    row = solution_to_row(Solution(id=problem_id, error=reason), problem)
    row.update(known)
    return row
