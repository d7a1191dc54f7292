"""Problem / Attempt / Solution records and their Arrow row form.

Rows cross Ray Data stages and land in Parquet, so each record has a fixed Arrow schema:
blocks whose optional columns happen to be all-null must still concatenate and write with one
schema. Images travel like Hugging Face's Image feature: a struct of `bytes` and `path`.
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qvq_ray.config import SamplingConfig
from qvq_ray.verify.verdict import Verdict


class ImageRef(BaseModel):
    """An image as bytes, or a reference resolved later (file path, data URL, http(s) URL)."""

    model_config = ConfigDict(extra="forbid")

    bytes: builtins.bytes | None = Field(None, description="Encoded image bytes (PNG, JPEG, ...).")
    path: str | None = Field(None, description="File path, data URL or URL when bytes are absent.")


class Problem(BaseModel):
    """One problem, whatever benchmark it came from (adapters map native fields onto these)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="Unique id within the problem set.")
    question: str = Field(..., description="Question text; may hold `<image1>`-style placeholders.")
    images: list[ImageRef] = Field(default_factory=list)
    choices: list[str] = Field(default_factory=list, description="Options, lettered A, B, C... in order.")
    answer: str | None = Field(None, description="Gold answer; never read while solving in `self` mode.")
    answer_type: str | None = Field(None, description="e.g. integer, float, expression, choice, text.")
    unit: str | None = Field(None, description="Unit of the gold answer, if any.")
    tolerance: float | None = Field(None, description="Absolute/relative tolerance for numeric answers.")
    source: str | None = Field(None, description="Benchmark or problem set name.")
    subject: str | None = None
    language: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, description="Native fields with no home above.")


class Attempt(BaseModel):
    """One generation and its verdict."""

    text: str
    sampling: SamplingConfig
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    verdict: Verdict = Field(default_factory=Verdict)
    cut_off: bool = Field(False, description="Stopped early by the loop cut-off.")
    tokens_saved: int = Field(0, description="max_tokens minus tokens generated, when cut off.")


class Solution(BaseModel):
    """What solving one problem produced: the final answer and every attempt behind it."""

    id: str
    answer: str | None = None
    verdict: Verdict = Field(default_factory=Verdict)
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
    error: str | None = None


# ---------------------------------------------------------------- Arrow row form


def _pa():
    import pyarrow as pa

    return pa


def image_struct_type():
    pa = _pa()
    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def problem_schema():
    """Arrow schema of a Problem row (meta as a JSON string: its keys differ per benchmark)."""
    pa = _pa()
    return pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("images", pa.list_(image_struct_type())),
            ("choices", pa.list_(pa.string())),
            ("answer", pa.string()),
            ("answer_type", pa.string()),
            ("unit", pa.string()),
            ("tolerance", pa.float64()),
            ("source", pa.string()),
            ("subject", pa.string()),
            ("language", pa.string()),
            ("meta", pa.string()),
        ]
    )


def verdict_struct_type():
    pa = _pa()
    return pa.struct(
        [
            ("answer", pa.string()),
            ("canonical", pa.string()),
            ("correct", pa.bool_()),
            ("issues", pa.list_(pa.string())),
            ("elapsed_s", pa.float64()),
        ]
    )


def attempt_struct_type():
    pa = _pa()
    return pa.struct(
        [
            ("text", pa.string()),
            ("sampling", pa.string()),  # JSON of SamplingConfig
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("latency_s", pa.float64()),
            ("finish_reason", pa.string()),
            ("verdict", verdict_struct_type()),
            ("cut_off", pa.bool_()),
            ("tokens_saved", pa.int64()),
            ("correct", pa.bool_()),  # this attempt's answer vs gold, filled by the score stage
        ]
    )


def solution_schema():
    """Arrow schema of an output row: the solution, the problem's identity and gold, and scoring."""
    pa = _pa()
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("question", pa.string()),
            ("choices", pa.list_(pa.string())),
            ("gold", pa.string()),
            ("answer", pa.string()),
            ("canonical", pa.string()),
            ("verified", pa.bool_()),
            ("issues", pa.list_(pa.string())),
            ("correct", pa.bool_()),
            ("pass_at_1", pa.bool_()),
            ("maj_at_k", pa.bool_()),
            ("pass_at_k", pa.bool_()),
            ("confidence", pa.float64()),
            ("mode", pa.string()),
            ("chosen_attempt", pa.int64()),
            ("attempts", pa.list_(attempt_struct_type())),
            ("num_attempts", pa.int64()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("tokens_saved", pa.int64()),
            ("latency_s", pa.float64()),
            ("error", pa.string()),
            ("problem", pa.string()),  # JSON of the Problem without image bytes, for re-scoring
        ]
    )


def problem_to_row(problem: Problem) -> dict[str, Any]:
    row = problem.model_dump(exclude={"images", "meta"})
    row["images"] = [{"bytes": im.bytes, "path": im.path} for im in problem.images]
    row["meta"] = json.dumps(problem.meta, ensure_ascii=False, default=str)
    return row


def problem_from_row(row: dict[str, Any]) -> Problem:
    data = dict(row)
    meta = data.get("meta")
    data["meta"] = json.loads(meta) if isinstance(meta, str) and meta else (meta or {})
    data["images"] = [ImageRef(bytes=im.get("bytes"), path=im.get("path")) for im in (data.get("images") or [])]
    data["choices"] = list(data.get("choices") or [])
    known = set(Problem.model_fields)
    return Problem(**{k: v for k, v in data.items() if k in known})


def problem_json_without_images(problem: Problem) -> str:
    data = problem.model_dump(mode="json", exclude={"images"})
    data["num_images"] = len(problem.images)
    return json.dumps(data, ensure_ascii=False)


def attempt_to_row(attempt: Attempt) -> dict[str, Any]:
    row = attempt.model_dump(exclude={"sampling"})
    row["sampling"] = attempt.sampling.model_dump_json()
    row["correct"] = None
    return row


def solution_to_row(solution: Solution, problem: Problem | None) -> dict[str, Any]:
    """Output row of the solve stage; `correct` stays None until the score stage fills it."""
    return {
        "id": solution.id,
        "source": problem.source if problem else None,
        "question": problem.question if problem else None,
        "choices": list(problem.choices) if problem else [],
        "gold": problem.answer if problem else None,
        "answer": solution.answer,
        "canonical": solution.verdict.canonical,
        "verified": solution.error is None and solution.answer is not None and not solution.verdict.issues,
        "issues": list(solution.verdict.issues),
        "correct": None,
        "pass_at_1": None,
        "maj_at_k": None,
        "pass_at_k": None,
        "confidence": solution.confidence,
        "mode": solution.mode,
        "chosen_attempt": solution.chosen_attempt,
        "attempts": [attempt_to_row(a) for a in solution.attempts],
        "num_attempts": len(solution.attempts),
        "prompt_tokens": solution.prompt_tokens,
        "completion_tokens": solution.completion_tokens,
        "tokens_saved": solution.tokens_saved,
        "latency_s": solution.latency_s,
        "error": solution.error,
        "problem": problem_json_without_images(problem) if problem else None,
    }


def error_row(problem_id: str, reason: str, problem: Problem | None = None, **known: Any) -> dict[str, Any]:
    """The one output row of an input row that failed before or during solving."""
    row = solution_to_row(Solution(id=problem_id, error=reason), problem)
    row["verified"] = False
    row.update(known)
    return row
