"""The judging checker: a `Verifier` with a judge model for what its rules cannot decide.

Two cases reach the judge (`verifier.judge`, see `JudgeConfig`):
- **extraction**: the rules found no answer in a response. The judge reads the question, the options
  and the end of the response and writes the answer (or "none"). Its answer is then compared with
  gold by the rules and sympy, as any answer is: the judge only reads, it does not grade math.
- **equivalence**: the gold is free text (a sentence, a name, `滤液E是硫酸亚铁溶液`) and the string rules
  said "different" (free_text.py). Math golds never reach it: sympy's verdict stands.

A call that fails, times out, is over budget or answers something unreadable leaves the case
**not judged** (`correct` None, `decided_by` None) with the reason in the verdict's `judge` notes,
never a guess. Verdicts say who decided (`decided_by`).

`JudgingChecker` is an `AnswerChecker` (qvq_ray/verify/checker.py), as the `Verifier` is: the
solver, the batch scorer, the Serve app and `qvq-ray rescore` hold one or the other through that
contract and tell them apart only by `judge` (None without one). In mode `self` the solver calls
`check` without gold, so the judge is only ever asked to extract, from the question and the
response. `judging_checker` picks the checker a config asks for and the engine its judge runs on.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

from qvq_ray.judge.budget import JudgeBudget
from qvq_ray.judge.free_text import is_free_text
from qvq_ray.judge.model import Judge, judge_identity
from qvq_ray.verify.checker import AnswerChecker, CheckedProblem
from qvq_ray.verify.spec import AnswerSpec, has_gold
from qvq_ray.verify.verdict import Decider, JudgeNote, Verdict

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig
    from qvq_ray.engines.base import Engine
    from qvq_ray.verify.verifier import Verifier

_BUDGETS_KEPT = 4096  # problems whose judge spending is remembered (a batch actor sees many)


class JudgingChecker(AnswerChecker):
    """A `Verifier` with a judge for what its rules cannot decide."""

    def __init__(self, verifier: "Verifier", judge: Judge) -> None:
        self.verifier = verifier
        self._judge = judge
        self.config = judge.config
        self._budgets: OrderedDict[str, JudgeBudget] = OrderedDict()
        self._solve_budgets: dict[int, JudgeBudget] = {}

    @property
    def judge(self) -> Judge:
        return self._judge

    def budget_for(self, key: str | None) -> JudgeBudget:
        """The spending of one problem of a job, by its row id (unique within a job); a fresh budget
        when the caller names none."""
        if key is None:
            return JudgeBudget()
        budget = self._budgets.pop(key, None) or JudgeBudget()
        self._budgets[key] = budget
        while len(self._budgets) > _BUDGETS_KEPT:
            self._budgets.popitem(last=False)
        return budget

    # -- the AnswerChecker surface

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
        """The Verifier's verdict, then the judge's part of it, spent from this solve's budget."""
        verdict = await self.verifier.check(
            response, spec, gold=gold, finish_reason=finish_reason, timeout_s=timeout_s, problem=problem, question=question
        )
        if question is None:
            question = problem.question if problem is not None else ""
        return await self._add_judgement(verdict, response, spec, gold=gold, question=question or "",
                                         budget=self._solve_budget(problem))

    def _solve_budget(self, problem: CheckedProblem | None) -> JudgeBudget:
        """The budget of one solve: tied to the Problem object the solver passes with each of its
        attempts, and dropped with it. Never keyed by `problem.id`: online that is the client's id,
        which requests may reuse, and one request would spend (or start with) another's budget."""
        if problem is None:
            return JudgeBudget()
        key = id(problem)
        budget = self._solve_budgets.get(key)
        if budget is None:
            budget = self._solve_budgets[key] = JudgeBudget()
            weakref.finalize(problem, self._solve_budgets.pop, key, None)  # before its id() can be reused
        return budget

    async def same_answer(self, a: str, b: str, spec: AnswerSpec | None = None) -> bool:
        return await self.verifier.same_answer(a, b, spec)

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
        """Rules and sympy first; a free-text gold they call different goes to the judge, spent
        from the job row `problem_key`'s budget."""
        correct, by = await self.verifier.compare_detailed(answer, gold, spec, timeout_s=timeout_s)
        if not self._wants_equivalence(answer, gold, spec, correct):
            return correct, by
        note = await self._judge.equivalent(question=question, answer=answer, gold=str(gold), budget=self.budget_for(problem_key))
        return _judged(note)

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
        """`verdict` (the rules' and sympy's) with the judge's part, spent from the job row
        `problem_key`'s budget (rescore: one row per problem)."""
        return await self._add_judgement(verdict, response, spec, gold=gold, question=question,
                                         budget=self.budget_for(problem_key))

    async def close(self) -> None:
        """Close the judge (its engine, when it built one); the Verifier is its owner's to close."""
        await self._judge.close()

    # -- the judge's part of a verdict

    def _wants_equivalence(self, answer: str | None, gold: str | None, spec: AnswerSpec | None, correct: bool | None) -> bool:
        return (
            "equivalence" in self.config.tasks
            and correct is False
            and answer is not None
            and is_free_text(gold, spec)
        )

    async def _add_judgement(self, verdict: Verdict, response: str, spec: AnswerSpec | None, *, gold: str | None,
                             question: str, budget: JudgeBudget) -> Verdict:
        """An answer read where the rules found none, a free-text match where the rules said
        different; unchanged otherwise. Spending goes to `budget`."""
        from qvq_ray.verify.equivalence import canonical_form

        spec = spec or AnswerSpec()
        verdict = verdict.model_copy(deep=True)
        if "extraction" in self.config.tasks and verdict.answer is None and (response or "").strip():
            note = await self._judge.extract(question=question, choices=list(spec.choices), response=response, budget=budget)
            verdict.judge.append(note)
            if note.outcome is None:  # the judge did not answer: not judged, never "wrong"
                verdict.decided_by = None
                if has_gold(gold):
                    verdict.correct = None
                return verdict
            verdict.decided_by = "judge"
            if note.outcome:  # '' = the judge also found no answer: the rules' verdict stands, now the judge's
                verdict.answer = note.outcome
                verdict.extraction = "judge"
                verdict.canonical = canonical_form(note.outcome, list(spec.choices))
                verdict.issues = [i for i in verdict.issues if i != "no_final_answer"]
                if "weak_extraction" not in verdict.issues:
                    verdict.issues.append("weak_extraction")
                if gold is not None and has_gold(gold):
                    verdict.correct, _ = await self.verifier.compare_detailed(note.outcome, gold, spec)
                    if verdict.correct is None:
                        verdict.decided_by = None
        if gold is not None and has_gold(gold) and verdict.answer is not None and self._wants_equivalence(
            verdict.answer, gold, spec, verdict.correct
        ):
            note = await self._judge.equivalent(question=question, answer=verdict.answer, gold=str(gold), budget=budget)
            verdict.judge.append(note)
            verdict.correct, verdict.decided_by = _judged(note)
        return verdict


def _judged(note: JudgeNote) -> tuple[bool | None, Decider | None]:
    """An equivalence note as (correct, decided_by): not judged when the judge gave no outcome."""
    if note.outcome is None:
        return None, None
    return note.outcome == "1", "judge"


def judging_checker(verifier: "Verifier", config: "QvqConfig", solving_engine: "Engine | None" = None) -> AnswerChecker:
    """The checker to solve and score with: `verifier` itself without `verifier.judge`, else a
    `JudgingChecker` whose judge runs on the configured endpoint, or on `solving_engine` (the
    engine already serving), or, with neither, on the config's engine built here (rescore)."""
    judge_config = config.verifier.judge
    if judge_config is None:
        return verifier
    from qvq_ray.engines import build_engine

    owns = True
    if judge_config.engine is not None:
        engine = build_engine(config.model_copy(update={"engine": judge_config.engine}))
    elif solving_engine is not None:
        engine, owns = solving_engine, False
    else:
        engine = build_engine(config)
    return JudgingChecker(verifier, Judge(judge_config, engine, identity=judge_identity(config), owns_engine=owns))
