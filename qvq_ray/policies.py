"""Solve policies: what the solver does after each judged attempt (accept, re-sample, or stop).

The solver (`qvq_ray/solver.py`) owns the mechanics: launching samples (at most
`policy.parallel_samples` in flight, never more than `max_attempts`, none past `token_budget`),
streaming and the loop cut-off, verifying each attempt the moment it ends, cancelling what is still
running once the solve is settled. A policy owns the decisions, through this protocol:

- One `Policy` object per solve, built as `PolicyClass(state)`. `state` (`SolveState`) is what it
  sees: the problem (in `self` mode a gold-free view: no gold, no accepted alternatives, no `meta`,
  no images), the policy config, the configured sampling, the verifier (for `same_answer`), and
  `attempts`, every attempt judged so far by index (text, the sampling used, tokens, verdict), kept
  up to date by the solver.
- `await on_attempt(index, attempt)` is called once per judged attempt, in index order, and returns
  `Accept(index)` (answer with that attempt; the solve ends), `Resample(sampling)` (keep going; the
  next attempt uses `sampling`, or the schedule when None) or `Stop(reason)` (end without accepting;
  `choose` then picks the answer). Attempts still in flight when a decision ends the solve are
  cancelled; attempts that finished together are all shown to the policy (every vote counts), and
  the first decision that ends the solve wins. An attempt whose engine call failed (`error` set)
  is never shown to the policy nor put in `attempts`: its index is skipped (the Solution keeps it).
- `sampling_for(index)`: the sampling of an attempt no `Resample` asked for (default: the schedule).
- `max_in_flight()`: how many samples may run at once (default `parallel_samples`).
- `choose(accepted)`: the answer given and its confidence when the solve ends: the accepted attempt,
  or, without one, whatever the policy prefers (default: the last attempt with an answer, confidence 0).

The built-in policies are written against the same protocol: `FirstHealthy` (mode `self`; one
attempt: greedy or a single sample), `SelfConsistency` (`self_consistency: true`) and `Oracle`
(mode `oracle`, rejection sampling against gold). `policy.import_path` names a user class instead
(`load_policy`); see examples/custom_check_policy/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from qvq_ray.config import PolicyConfig, SamplingConfig

if TYPE_CHECKING:  # the solver imports this module; these are only annotations here
    from qvq_ray.problem import Attempt, Problem
    from qvq_ray.verify.checker import AnswerChecker


@dataclass(frozen=True)
class Accept:
    """Answer with attempt `index`; the solve ends."""

    index: int


@dataclass(frozen=True)
class Resample:
    """Keep sampling; the next attempt uses `sampling` (as given, with n=1), or the schedule when None."""

    sampling: SamplingConfig | None = None


@dataclass(frozen=True)
class Stop:
    """End the solve without accepting an attempt (`Policy.choose` picks the answer given)."""

    reason: str = ""


Decision = Union[Accept, Resample, Stop]


@dataclass
class SolveState:
    """What a policy sees of one solve (filled and kept current by the solver)."""

    problem: "Problem"
    config: PolicyConfig
    sampling: SamplingConfig
    verifier: "AnswerChecker"
    attempts: "dict[int, Attempt]" = field(default_factory=dict)
    launched: int = 0

    @property
    def tokens_used(self) -> int:
        """Completion tokens of the attempts judged so far."""
        return sum(a.completion_tokens for a in self.attempts.values())


def scheduled_sampling(config: PolicyConfig, sampling: SamplingConfig, index: int) -> SamplingConfig:
    """The schedule's entry, else: attempt 0 as configured, re-samples warmer (a greedy re-sample repeats)."""
    if config.schedule:
        return config.schedule[min(index, len(config.schedule) - 1)]
    if index == 0:
        return sampling
    return config.resample_sampling or sampling.model_copy(update={"temperature": max(sampling.temperature, 0.7)})


class Policy:
    """Base of every policy (see the module doc for the protocol); subclasses write `on_attempt`."""

    def __init__(self, state: SolveState) -> None:
        self.state = state
        self.config = state.config

    def healthy(self, attempt: "Attempt") -> bool:
        """An answer, and none of the issues the config re-samples on."""
        verdict = attempt.verdict
        return verdict.answer is not None and not set(verdict.issues) & set(self.config.resample_on)

    def sampling_for(self, index: int) -> SamplingConfig:
        return scheduled_sampling(self.config, self.state.sampling, index)

    def max_in_flight(self) -> int:
        return self.config.parallel_samples

    async def on_attempt(self, index: int, attempt: "Attempt") -> Decision:
        raise NotImplementedError

    def choose(self, accepted: int | None) -> tuple[int | None, float | None]:
        """(index of the attempt answered with, confidence)."""
        attempts = self.state.attempts
        if accepted is not None:
            return accepted, 1.0
        answered = [i for i in sorted(attempts) if attempts[i].verdict.answer is not None]
        chosen = answered[-1] if answered else (max(attempts) if attempts else None)
        return chosen, (0.0 if attempts else None)


class FirstHealthy(Policy):
    """Mode `self`: answer with the first healthy attempt, re-sample the others."""

    async def on_attempt(self, index: int, attempt: "Attempt") -> Decision:
        return Accept(index) if self.healthy(attempt) else Resample()


class Oracle(Policy):
    """Mode `oracle` (rejection sampling): accept a healthy attempt that matches gold."""

    async def on_attempt(self, index: int, attempt: "Attempt") -> Decision:
        return Accept(index) if self.healthy(attempt) and attempt.verdict.correct else Resample()


class SelfConsistency(Policy):
    """Vote over healthy attempts (clustered by equivalence); accept once one answer has `quorum` votes,
    else answer with the largest cluster (confidence: its share of the votes)."""

    def __init__(self, state: SolveState) -> None:
        from qvq_ray.verify.voting import AnswerClusters

        super().__init__(state)
        self.clusters = AnswerClusters()

    def max_in_flight(self) -> int:
        """At least the samples the quorum certainly still needs."""
        return max(self.config.parallel_samples, self.config.quorum - self.clusters.leader_votes)

    async def on_attempt(self, index: int, attempt: "Attempt") -> Decision:
        import functools

        verdict = attempt.verdict
        if not self.healthy(attempt) or verdict.answer is None:  # healthy: an answer
            return Resample()
        same = functools.partial(self.state.verifier.same_answer, spec=self.state.problem.spec)
        cluster = await self.clusters.ajoin(index, verdict.answer, verdict.canonical, same)
        return Accept(cluster.members[0]) if len(cluster.members) >= self.config.quorum else Resample()

    def choose(self, accepted: int | None) -> tuple[int | None, float | None]:
        if self.clusters.clusters:
            best = self.clusters.ranked()[0]
            return best.members[0], len(best.members) / self.clusters.voters
        return super().choose(accepted)


def builtin_policy(config: PolicyConfig) -> type[Policy]:
    """The built-in policy a config describes."""
    if config.mode == "oracle":
        return Oracle
    return SelfConsistency if config.self_consistency else FirstHealthy


def load_policy(config: PolicyConfig) -> Any:
    """The policy factory: `policy.import_path`'s class (or any callable taking a `SolveState`), else a built-in."""
    if not config.import_path:
        return builtin_policy(config)
    from qvq_ray.import_paths import load_object

    factory = load_object(config.import_path)
    if not callable(factory):
        raise TypeError(f"policy.import_path {config.import_path!r} is not a class or callable")
    return factory
