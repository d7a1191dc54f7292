"""The answer checker: everything the solver, the batch scorer, the Serve app and rescore ask of
whatever judges a response, declared once.

Two classes implement it: the `Verifier` (rules and sympy, this package) and the judge's
`JudgingChecker` (`qvq_ray.judge`: a Verifier with a judge model for what the rules leave
undecided). Callers hold an `AnswerChecker` and never ask which one they have: "is a judge on" is
`checker.judge is not None`, and the judge's entry points (`judge_verdict`, `judge`) are part of the
contract, answered by the Verifier too (no judge: a verdict comes back as it went in).

Both subclass the protocol, so a type checker holds each to every signature; `compare` is written
once, here, over `compare_detailed`. Declared here, at the bottom with the Verifier, so that both
implementations and every caller import it downward. It names no type from above: the problem a
response answers is any `CheckedProblem` (`qvq_ray.problem.Problem` is one), and the judge is any
`JudgeHandle` (`qvq_ray.judge.model.Judge`).
"""

from __future__ import annotations

from typing import Protocol

from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verdict import Decider, Verdict


class CheckedProblem(Protocol):
    """What a checker reads of the problem a response answers."""

    @property
    def question(self) -> str:
        """The question asked (gold-free): an answer given by restating it is found, and a judge reads it."""
        ...

    def gold_free(self) -> "CheckedProblem":
        """A copy without gold, accepted alternatives, `meta` or images: all a user check may see."""
        ...


class JudgeHandle(Protocol):
    """The judge model behind a checker, as the callers above it reach it."""

    async def check_health(self) -> None:
        """Raise the engine's error when the judge's engine cannot answer (a wrong URL or model name)."""
        ...

    def stats_line(self) -> str:
        """Its calls, cached answers, failures and tokens so far, as one line."""
        ...

    async def close(self) -> None:
        """Release what the judge owns (an engine it built); a shared engine is left running."""
        ...


class AnswerChecker(Protocol):
    """Checks responses and compares answers; `judge` is None when no judge model is on.

    `question` and `problem_key` of the comparisons are the judge's (its prompt; the budget of a
    job row): the rules and sympy decide without them, and a checker without a judge ignores them.
    """

    @property
    def judge(self) -> JudgeHandle | None:
        """The judge model asked where the rules cannot decide; None: rules and sympy only."""
        ...

    async def check(
        self,
        response: str,
        spec: AnswerSpec | None = None,
        *,
        gold: str | None = None,
        finish_reason: str | None = "stop",
        timeout_s: float | None = None,
        problem: CheckedProblem | None = None,
        question: str | None = None,
    ) -> Verdict:
        """The verdict of one response; `correct` judged only when `gold` is given. `problem`: the
        problem it answers (for the user checks, which see its gold-free copy, and the judge);
        `question`: the question asked when there is no problem (default: `problem.question`)."""
        ...

    async def compare(
        self,
        answer: str,
        gold: str,
        spec: AnswerSpec | None = None,
        *,
        timeout_s: float | None = None,
        question: str = "",
        problem_key: str | None = None,
    ) -> bool | None:
        """Whether `answer` matches `gold` (or an accepted alternative); None when it could not be
        judged (timeout, a value too large to compare, a worker failure, a judge that did not
        answer): "not judged" is not "wrong". Written once, here, for every checker."""
        return (await self.compare_detailed(answer, gold, spec, timeout_s=timeout_s, question=question,
                                            problem_key=problem_key))[0]

    async def compare_detailed(
        self,
        answer: str,
        gold: str,
        spec: AnswerSpec | None = None,
        *,
        timeout_s: float | None = None,
        question: str = "",
        problem_key: str | None = None,
    ) -> tuple[bool | None, Decider | None]:
        """`compare`, and who decided it: 'rules', 'sympy' or 'judge' (None when not judged)."""
        ...

    async def same_answer(self, a: str, b: str, spec: AnswerSpec | None = None) -> bool:
        """Whether two answers vote together (self-consistency, maj@k): judged equivalent."""
        ...

    async def judge_verdict(
        self,
        verdict: Verdict,
        response: str,
        spec: AnswerSpec | None,
        *,
        gold: str | None,
        question: str,
        problem_key: str | None = None,
    ) -> Verdict:
        """`verdict` (the rules' and sympy's) with the judge's part added: an answer read where the
        rules found none, a free-text match where they said different; without a judge, as it is."""
        ...
