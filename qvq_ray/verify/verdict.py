"""The verifier's result record, shared by the solver, the batch rows and the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field

# Gold-free issues a verdict can carry; the solver re-samples on the ones its policy names.
ISSUES = (
    "no_final_answer",
    "truncated",
    "repetition_loop",
    "language_mixing",
    "false_calculation",
    "unparseable",
    "timeout",
)


class Verdict(BaseModel):
    answer: str | None = Field(None, description="Final answer as the model wrote it (None: none found).")
    canonical: str | None = Field(None, description="Normalised answer, for grouping equivalent answers.")
    correct: bool | None = Field(None, description="Against gold; None when no gold was given.")
    issues: list[str] = Field(default_factory=list, description="Gold-free problems found in the response.")
    elapsed_s: float = Field(0.0, description="Time the check took.")

    @property
    def has_answer(self) -> bool:
        return self.answer is not None
