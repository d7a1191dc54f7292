"""Self-consistency: cluster the extracted answers of several verdicts by equivalence, pick the largest.

Answers with equal canonical forms join without a comparison; others are compared with the
representative of each cluster through `equivalent` (the verifier's equivalence: `2/4` and `0.5`
vote together, `x=2` and `2` too). Verdicts without an answer or with a disqualifying issue do not
vote. The winner is the largest cluster; ties go to the cluster whose first member came first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
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


@dataclass
class AnswerCluster:
    """Equivalent answers: the first one's text and canonical form, and who voted for it."""

    answer: str
    canonical: str | None
    members: list[int] = field(default_factory=list)


class AnswerClusters:
    """Answers clustered as they arrive: the online form of `vote`, shared by the solver's
    self-consistency and the score stage's maj@k.

    An answer joins the cluster with its canonical form if there is one (no comparison at all),
    else the first cluster whose representative `equivalent` accepts, else a new cluster.
    """

    def __init__(self) -> None:
        self.clusters: list[AnswerCluster] = []

    def _same_canonical(self, canonical: str | None) -> AnswerCluster | None:
        if canonical is None:
            return None
        return next((c for c in self.clusters if c.canonical == canonical), None)

    def _place(self, found: AnswerCluster | None, index: int, answer: str, canonical: str | None) -> AnswerCluster:
        if found is None:
            found = AnswerCluster(answer, canonical)
            self.clusters.append(found)
        found.members.append(index)
        return found

    def join(self, index: int, answer: str, canonical: str | None, equivalent: Callable[[str, str], bool]) -> AnswerCluster:
        found = self._same_canonical(canonical) or next(
            (c for c in self.clusters if equivalent(answer, c.answer)), None
        )
        return self._place(found, index, answer, canonical)

    async def ajoin(
        self, index: int, answer: str, canonical: str | None, equivalent: Callable[[str, str], Awaitable[bool]]
    ) -> AnswerCluster:
        found = self._same_canonical(canonical)
        if found is None:
            for cluster in self.clusters:
                if await equivalent(answer, cluster.answer):
                    found = cluster
                    break
        return self._place(found, index, answer, canonical)

    def ranked(self) -> list[AnswerCluster]:
        """Largest first; ties go to the cluster whose first member came first."""
        return sorted(self.clusters, key=lambda c: (-len(c.members), c.members[0]))

    @property
    def leader_votes(self) -> int:
        return max((len(c.members) for c in self.clusters), default=0)

    @property
    def voters(self) -> int:
        return sum(len(c.members) for c in self.clusters)


def cluster_vote(
    verdicts: Iterable[Verdict],
    equivalent: Callable[[str, str], bool],
    *,
    disqualifying: Iterable[str] = DISQUALIFYING,
) -> VoteResult:
    """Cluster the verdicts' answers by `equivalent(a, b)` and return the winner and its share.

    The comparer is passed in (a `Verifier`'s, see `Verifier.vote` and `verify.vote`): this module
    sits below the verifier and never imports it.
    """
    items = list(verdicts)
    bad = set(disqualifying)
    clusters = AnswerClusters()
    for index, verdict in enumerate(items):
        if verdict.answer is not None and not bad & set(verdict.issues):
            clusters.join(index, verdict.answer, verdict.canonical, equivalent)
    if not clusters.clusters:
        return VoteResult(None, None, 0, 0, len(items), 0.0, [], None)
    ranked = clusters.ranked()
    winner = ranked[0].members[0]
    return VoteResult(
        answer=items[winner].answer,
        canonical=items[winner].canonical,
        votes=len(ranked[0].members),
        voters=clusters.voters,
        total=len(items),
        share=len(ranked[0].members) / clusters.voters,
        clusters=[c.members for c in ranked],
        winner_index=winner,
    )
