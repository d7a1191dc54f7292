"""Report blocks that are neither a table nor a plot nor a problem list: a heading, and the
problems two runs scored differently.

Plain records, apart from what makes them (compare.py, summary.py) and what draws them
(render.py), so that neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from qvq_ray.report.problems import Response


@dataclass(frozen=True)
class Heading:
    """A section heading between blocks."""

    text: str


@dataclass(frozen=True)
class Flip:
    """One problem the two runs scored differently, with both chosen responses."""

    id: str
    source: str
    gold: str
    answer_a: str
    answer_b: str
    response_a: Response | None
    response_b: Response | None


@dataclass
class FlipList:
    """A report block: the problems that went one way (right in A and wrong in B, or the reverse)."""

    title: str
    flips: list[Flip]
    total: int
    note: str
