"""What the judge spends: per problem (the budget a call is refused past) and over its life (the counts).

A budget belongs to one solve (the judging checker keeps one per Problem object the solver passes
with its attempts) or to one job row (`problem_key`, unique within a job); never to an id a client
chose, so one request can neither spend nor start with another's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class JudgeBudget:
    """What one problem has spent on judge calls so far."""

    calls: int = 0
    tokens: int = 0


@dataclass
class JudgeStats:
    """Counts over the judge's life: calls made, answers from the cache, calls that failed, refusals."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    unreadable: int = 0  # answered, but nothing an answer or a judgement could be read from
    over_budget: int = 0
    tokens: int = 0

    def line(self) -> str:
        return (f"judge calls {self.calls} (cached {self.cached}, failed {self.failed}, over budget "
                f"{self.over_budget}), unreadable answers {self.unreadable}, tokens {self.tokens}")
