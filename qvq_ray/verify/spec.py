"""`AnswerSpec`: how the answer to one problem is read and compared.

The verifier is the bottom layer: it knows answers, not benchmarks. Each dataset loader turns its
benchmark's conventions (OlympiadBench's per-answer `error` tolerances and units, MathVista's
`precision`, MMMU's several accepted answers) into this one typed record, so the verifier never
reads a loader's `meta` keys and no caller writes the five comparison keywords out by hand.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AnswerSpec(BaseModel):
    """What a correct answer looks like, short of the gold value itself (gold is passed apart, so
    a gold-free check cannot read it by accident)."""

    model_config = ConfigDict(extra="forbid")

    choices: list[str] = Field(default_factory=list, description="Options, lettered A, B, C... in order.")
    answer_type: str | None = Field(
        None,
        description="e.g. integer, float, expression, choice, text; OlympiadBench's per-answer "
        "'Numerical,Expression' form is read answer by answer.",
    )
    unit: str | None = Field(
        None,
        description="Unit of the gold answer; per answer comma-separated when they differ (',kg': none, then kg).",
    )
    tolerance: list[float | None] | None = Field(
        None,
        description="Absolute tolerance of a numeric answer: one entry for every answer, or one per answer "
        "(None: exact, or the relative default). A single number is accepted and read as [number].",
    )
    precision: int | None = Field(None, description="Decimal places the gold is given to (MathVista).")
    alternatives: list[str] = Field(
        default_factory=list, description="Other accepted gold answers (MMMU open questions list several)."
    )

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance_list(cls, value: Any) -> Any:
        """A scalar, a list, or OlympiadBench's raw `error` string ("1e-1", ",1e-2")."""
        if value is None or isinstance(value, list):
            return value
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, str):
            from qvq_ray.verify.numbers import parse_tolerance

            return parse_tolerance(value)
        return [value]

    @field_validator("tolerance")
    @classmethod
    def _tolerance_finite(cls, value: list[float | None] | None) -> list[float | None] | None:
        for t in value or []:
            if t is not None and not (math.isfinite(t) and t >= 0):
                raise ValueError(f"tolerance {t} must be a finite number >= 0")
        return value


def has_gold(gold: Any) -> bool:
    """Whether a problem has a gold answer to score against: one rule for the verifier, the judge,
    the scorer and the report (None, empty and blank strings are no gold)."""
    return gold is not None and bool(str(gold).strip())
