"""Self-consistency: cluster the extracted answers of several verdicts by equivalence, pick the largest.

Answers with equal canonical forms join without a comparison; others are compared with the
representative of each cluster through `equivalent` (the verifier's equivalence: `2/4` and `0.5`
vote together, `x=2` and `2` too). Verdicts without an answer or with a disqualifying issue do not
vote. The winner is the largest cluster; ties go to the cluster whose first member came first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qvq_ray.verify.verdict import Verdict

DISQUALIFYING = ("no_final_answer", "truncated", "repetition_loop", "unparseable")


@dataclass
class VoteResult:
    answer: str | None  # the winning answer, as its first voter wrote it
    canonical: str | None
    votes: int  # verdicts in the winning cluster
    voters: int  # verdicts that voted (had an answer and no disqualifying issue)
    total: int  # all verdicts given
    share: float  # votes / voters (0.0 when nobody voted)
    clusters: list[list[int]] = field(default_factory=list)  # indices into the verdicts, largest first
    winner_index: int | None = None  # index of the winning answer's first verdict


def vote(
    verdicts: Iterable[Verdict],
    *,
    equivalent: Callable[[str, str], bool] | None = None,
    disqualifying: Iterable[str] = DISQUALIFYING,
) -> VoteResult:
    """Cluster the verdicts' answers by equivalence and return the winner and its share.

    `equivalent(a, b)` defaults to the process-global verifier's equivalence (a worker call only
    when string rules cannot decide).
    """
    if equivalent is None:
        from qvq_ray.verify.verifier import default_verifier

        equivalent = default_verifier().equivalent_sync
    items = list(verdicts)
    bad = set(disqualifying)
    clusters: list[list[int]] = []
    reps: list[tuple[str, str | None]] = []  # (answer, canonical) of each cluster's first member
    voters = 0
    for index, verdict in enumerate(items):
        if verdict.answer is None or bad & set(verdict.issues):
            continue
        voters += 1
        for k, (answer, canonical) in enumerate(reps):
            same = verdict.canonical is not None and verdict.canonical == canonical
            if same or equivalent(verdict.answer, answer):
                clusters[k].append(index)
                break
        else:
            clusters.append([index])
            reps.append((verdict.answer, verdict.canonical))
    if not clusters:
        return VoteResult(None, None, 0, 0, len(items), 0.0, [], None)
    order = sorted(range(len(clusters)), key=lambda k: (-len(clusters[k]), clusters[k][0]))
    best = order[0]
    winner = clusters[best][0]
    return VoteResult(
        answer=items[winner].answer,
        canonical=items[winner].canonical,
        votes=len(clusters[best]),
        voters=voters,
        total=len(items),
        share=len(clusters[best]) / voters,
        clusters=[clusters[k] for k in order],
        winner_index=winner,
    )
