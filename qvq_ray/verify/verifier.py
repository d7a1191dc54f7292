"""The Verifier: a response in, a `Verdict` out.

In-process (pure string work, bounded): extraction, the health checks (`truncated`,
`no_final_answer`, `repetition_loop`, `language_mixing`), finding numeric claims and checking
those that are plain arithmetic (`97-73=24`), and every comparison the string rules decide
(letters, option texts, plain numbers with tolerances and units of one kind, structures of those).
Everything that needs sympy (expressions, unit conversion, equations, the parse check behind
`unparseable`, the other claims behind `false_calculation`) is one call to a `VerifyPool` worker
process, with a hard wall-clock limit and a memory limit; a worker past its limit is killed and
replaced. Most checks of real outputs make no worker call at all (the round trip and an ANTLR
parse cost far more than the string work: see benchmarks/verifier.py for the time per case).

One check takes at most `timeout_s` of worker time in all (its stages share the budget), and
answers even when a stage runs out: a comparison that could not finish yields `correct=None` with
the issue `timeout`, not `correct=False`. The answer was not judged; calling it wrong would
silently turn a slow comparison into a wrong answer in every score, while None keeps it visible
(scorers count it as not correct, and a re-score with a larger timeout can settle it). The same
holds for values too large to compare safely (`9^{9^{9^{9}}}`) and for a worker that hit its memory
limit or died. A comparison that raised on the input gives the issue `unparseable`. A response
with no final answer checked against gold is simply wrong (`correct=False`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

from qvq_ray.config import VerifierConfig
from qvq_ray.issues import USER_CHECK_FAILED
from qvq_ray.verify.calculation import find_claims, holds_fast
from qvq_ray.verify.checker import AnswerChecker, CheckedProblem
from qvq_ray.verify.equivalence import NeedsSympy, Options, answer_parses, canonical_form, quick_equivalent
from qvq_ray.verify.extract import detect_issues, extract
from qvq_ray.verify.pool import VerifyPool, VerifyTimeout, VerifyWorkerError
from qvq_ray.verify.spec import AnswerSpec, has_gold
from qvq_ray.verify.verdict import Decider, Verdict
from qvq_ray.verify.voting import VoteResult, cluster_vote

logger = logging.getLogger(__name__)

CHECKS_FN = "qvq_ray.verify.worker.run_checks"
USER_CHECK_FN = "qvq_ray.verify.user_checks.run_user_check"
_MIN_CALL_S = 0.05


class Verifier(AnswerChecker):
    """Checks responses; owns a `VerifyPool` sized by `VerifierConfig` (or shares one passed in).

    Safe to call from any thread and from any event loop: nothing here relies on signals. What a
    correct answer looks like comes as an `AnswerSpec` (choices, unit, tolerance, answer type,
    precision, alternatives); the gold value comes apart, as `gold=`, so a gold-free check cannot
    read it by accident. The `AnswerChecker` without a judge (`judge` is None); a judge model wraps
    it (`qvq_ray.judge.JudgingChecker`).
    """

    def __init__(self, config: VerifierConfig | None = None, *, pool: VerifyPool | None = None) -> None:
        self.config = config or VerifierConfig()
        self._owns_pool = pool is None
        self.pool = pool or VerifyPool(
            workers=self.config.workers,
            timeout_s=self.config.timeout_s,
            memory_limit_mb=self.config.memory_limit_mb,
            user_checks=tuple(c.path for c in self.config.checks),
        )

    # -- checks

    @property
    def judge(self) -> None:
        """No judge model: the rules and sympy decide, or nothing does (not judged)."""
        return None

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
        """`check_sync` on the pool's own threads, never on the event loop. `correct` is judged only
        when `gold` is given (see module doc)."""
        run = functools.partial(
            self.check_sync, response, spec, gold=gold, finish_reason=finish_reason, timeout_s=timeout_s,
            problem=problem, question=question,
        )
        return await self.pool.run_blocking(run)

    def check_sync(
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
        """`check` for synchronous callers (blocks the calling thread, any thread).

        `problem`: the problem the response answers, for the user checks (`config.checks`), which
        see only its gold-free copy (`problem.gold_free()`); None when the caller has none.
        `question`: the question asked (default: `problem.question`), so an answer given only by
        restating it is found (`restatement.py`); gold-free.
        """
        start = time.perf_counter()
        spec = spec or AnswerSpec()
        budget = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        response = response or ""
        options = self._options(spec)
        if question is None and problem is not None:
            question = problem.question
        found = extract(response, options.choices, finish_reason, question)
        answer = found.answer
        issues = detect_issues(response, finish_reason, answer=answer, extraction=found.how, health=self.config.health_checks)
        canonical = canonical_form(answer, options.choices) if answer is not None else None
        gold_given = has_gold(gold)

        correct: bool | None = None
        decided_by: Decider | None = "rules"  # sympy when a worker's comparison decided `correct`; None when not judged
        need_equivalence = False
        if gold_given:
            if answer is None:
                correct = False
            else:
                correct = quick_equivalent(answer, str(gold), None, options.as_dict())
                need_equivalence = correct is None
        parse_ok: bool | None = None
        need_parse = False
        if answer is not None and correct is not True:
            try:
                parse_ok = answer_parses(answer, options, use_sympy=False)
            except NeedsSympy:
                need_parse = True
        claims = find_claims(response, limit=self.config.max_claims) if self.config.check_calculations else []
        # plain arithmetic (`97-73=24`, most claims) is decided here; only the rest needs a worker
        fast = [holds_fast(c.lhs, c.op, c.rhs) for c in claims]
        pending = [c for c, holds in zip(claims, fast) if holds is None]
        false_texts = {c.text for c, holds in zip(claims, fast) if holds is False}

        if need_equivalence or need_parse or pending:
            request = {
                "answer": answer,
                "gold": str(gold) if need_equivalence else None,
                "options": options.as_dict(),
                "check_parse": need_parse,
                "claims": [[c.lhs, c.op, c.rhs] for c in pending],
            }
            result = self._run(request, start, budget, issues)
            if result is not None:
                if need_equivalence:
                    correct = result["correct"]
                    decided_by = "sympy"
                    if correct is None:
                        _add(issues, "unparseable" if result.get("error") and not result.get("timed_out") else "timeout")
                if need_parse:
                    parse_ok = result["parse_ok"]
                false_texts.update(result.get("false_claims") or [])
                if result.get("timed_out"):
                    _add(issues, "timeout")
        if correct is False and answer is not None:
            alternative = self._matches_alternative(answer, str(gold), spec, start, budget)
            if alternative is not None:
                correct, decided_by = True, alternative
        if gold_given and correct is None:
            decided_by = None
        false_claims = [c.text for c in claims if c.text in false_texts]  # in the response's order
        if parse_ok is False:
            _add(issues, "unparseable")
        if false_claims:
            _add(issues, "false_calculation")
        if self.config.checks:
            self._user_checks(response, answer, problem, issues, timeout_s)
        return Verdict(
            answer=answer,
            extraction=found.how,
            canonical=canonical,
            correct=correct,
            issues=issues,
            false_claims=false_claims,
            decided_by=decided_by,
            elapsed_s=time.perf_counter() - start,
        )

    def _user_checks(
        self, response: str, answer: str | None, problem: CheckedProblem | None, issues: list[str], timeout_s: float | None
    ) -> None:
        """Each configured user check: one worker call under its own `timeout_s` (see user_checks.py)."""
        from qvq_ray.verify.user_checks import issue_name

        view = problem.gold_free() if problem is not None else None  # gold never reaches a worker
        limit = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        for check in self.config.checks:
            name = check.check_name
            try:
                found = self.pool.call(USER_CHECK_FN, check.path, response, answer, view, timeout_s=limit)
            except (VerifyTimeout, VerifyWorkerError, RuntimeError) as exc:
                logger.warning("user check %s failed: %s", name, exc)
                _add(issues, f"{name}:{USER_CHECK_FAILED}")
                continue
            for issue in found:
                _add(issues, issue_name(name, issue))

    def _run(self, request: dict[str, Any], start: float, budget: float, issues: list[str]) -> dict[str, Any] | None:
        """One worker call with what is left of the budget; None (and an issue) when it failed."""
        remaining = max(budget - (time.perf_counter() - start), _MIN_CALL_S)
        request["budget_s"] = remaining
        try:
            return cast("dict[str, Any]", self.pool.call(CHECKS_FN, request, timeout_s=remaining))
        except VerifyTimeout as exc:
            logger.warning("check not finished (timeout): %s", exc)
            _add(issues, "timeout")
        except VerifyWorkerError as exc:
            # a worker that died (memory limit in C code, a crash) is a resource failure
            issue = "unparseable" if "died" not in str(exc) and "MemoryError" not in str(exc) else "timeout"
            logger.warning("check failed (%s): %s", issue, exc)
            _add(issues, issue)
        return None

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
        """`compare` and who decided it ('rules' or 'sympy'; None when not judged). `question` and
        `problem_key` are a judge's (see `AnswerChecker`): the rules and sympy decide without them."""
        return await self.pool.run_blocking(functools.partial(self.compare_sync_detailed, answer, gold, spec, timeout_s=timeout_s))

    def compare_sync(
        self, answer: str, gold: str, spec: AnswerSpec | None = None, *, timeout_s: float | None = None
    ) -> bool | None:
        """`compare` for synchronous callers."""
        return self.compare_sync_detailed(answer, gold, spec, timeout_s=timeout_s)[0]

    def compare_sync_detailed(
        self, answer: str, gold: str, spec: AnswerSpec | None = None, *, timeout_s: float | None = None
    ) -> tuple[bool | None, Decider | None]:
        """`compare_detailed` for synchronous callers."""
        spec = spec or AnswerSpec()
        start = time.perf_counter()
        budget = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        result, by = self._compare_pair(answer, gold, spec, start, budget)
        if result is False and answer is not None:
            alternative = self._matches_alternative(answer, gold, spec, start, budget)
            if alternative is not None:
                return True, alternative
        return result, by

    def _compare_pair(
        self, answer: str, other: str, spec: AnswerSpec, start: float, budget: float
    ) -> tuple[bool | None, Decider | None]:
        """One comparison within what is left of the budget (string rules first, else one worker
        call), and who decided it."""
        if answer is None or not has_gold(other):
            return False, "rules"
        options = self._options(spec)
        quick = quick_equivalent(answer, other, None, options.as_dict())
        if quick is not None:
            return quick, "rules"
        issues: list[str] = []
        request = {"answer": answer, "gold": other, "options": options.as_dict(), "check_parse": False, "claims": []}
        result = self._run(request, start, budget, issues)
        if result is None or result["correct"] is None:
            logger.debug("equivalence not judged: %s", issues)
            return None, None
        return result["correct"], "sympy"

    def _matches_alternative(
        self, answer: str, gold: str, spec: AnswerSpec, start: float, budget: float
    ) -> Decider | None:
        """Who found `answer` to match one of the other accepted golds (MMMU lists several); None if none does."""
        for alternative in spec.alternatives:
            if str(alternative) == str(gold):
                continue
            matched, by = self._compare_pair(answer, alternative, spec, start, budget)
            if matched:
                return by
        return None

    async def same_answer(self, a: str, b: str, spec: AnswerSpec | None = None) -> bool:
        """For clustering votes: two answers are one cluster only when judged equivalent (a
        comparison that could not be judged keeps them apart; accepted alternatives play no part)."""
        return await self.pool.run_blocking(functools.partial(self.same_answer_sync, a, b, spec))

    def same_answer_sync(self, a: str, b: str, spec: AnswerSpec | None = None) -> bool:
        """`same_answer` for synchronous callers."""
        return bool(self._compare_pair(a, b, spec or AnswerSpec(), time.perf_counter(), float(self.config.timeout_s))[0])

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
        """No judge: the rules' and sympy's verdict is the whole verdict."""
        return verdict

    def check_many(
        self,
        items: Iterable[tuple[str, str | None, AnswerSpec | None]],
        *,
        finish_reasons: Iterable[str | None] | None = None,
        timeout_s: float | None = None,
        questions: Iterable[str | None] | None = None,
    ) -> list[Verdict]:
        """Verdicts for many (response, gold, spec) triples, in order, using every worker at once
        (`questions`: each one's question, as `check_sync`'s `question`)."""
        triples = list(items)
        reasons = list(finish_reasons) if finish_reasons is not None else ["stop"] * len(triples)
        asked = list(questions) if questions is not None else [None] * len(triples)
        if len(reasons) != len(triples) or len(asked) != len(triples):
            raise ValueError("finish_reasons and questions must have one entry per item")

        def one(k: int) -> Verdict:
            response, gold, spec = triples[k]
            return self.check_sync(response, spec, gold=gold, finish_reason=reasons[k], timeout_s=timeout_s, question=asked[k])

        if len(triples) <= 1:
            return [one(k) for k in range(len(triples))]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.pool.workers, thread_name_prefix="qvq-verify-batch") as ex:
            return list(ex.map(one, range(len(triples))))

    def vote(self, verdicts: Iterable[Verdict], spec: AnswerSpec | None = None, **kwargs: Any) -> VoteResult:
        """Self-consistency over verdicts, clustering with this verifier's `same_answer`."""
        return cluster_vote(verdicts, functools.partial(self.same_answer_sync, spec=spec), **kwargs)

    def _options(self, spec: AnswerSpec) -> Options:
        return Options.build(
            {
                "unit": spec.unit,
                "tolerance": spec.tolerance,
                "answer_type": spec.answer_type,
                "precision": spec.precision,
                "missing_unit": self.config.missing_unit,
            },
            spec.choices,
        )

    # -- lifecycle

    def close(self) -> None:
        """Stop the worker processes (a pool passed in by the caller is left to the caller)."""
        if self._owns_pool:
            self.pool.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()




def _add(issues: list[str], issue: str) -> None:
    if issue not in issues:
        issues.append(issue)


# ---------------------------------------------------------------- process-global convenience

_default: Verifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> Verifier:
    """The process-global Verifier behind `check` (created on first use, default config)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Verifier()
    return _default


def check(
    response: str,
    gold: str | None = None,
    *,
    choices: list[str] | None = None,
    answer_type: str | None = None,
    unit: str | None = None,
    tolerance: Any = None,
    precision: int | None = None,
    timeout_s: float = 5.0,
    finish_reason: str | None = "stop",
) -> Verdict:
    """Verify one response with a process-global Verifier (scripts, notebooks, the CLI, any thread).

    The answer-spec fields are plain keywords here, for the hand-typed call. Synchronous: inside an
    event loop, use `await Verifier.check(...)` instead.
    """
    spec = AnswerSpec(
        choices=list(choices or []), answer_type=answer_type, unit=unit, tolerance=tolerance, precision=precision
    )
    return default_verifier().check_sync(response, spec, gold=gold, finish_reason=finish_reason, timeout_s=timeout_s)


def check_many(
    items: Iterable[tuple[str, str | None, AnswerSpec | None]], *, timeout_s: float = 5.0, **kwargs: Any
) -> list[Verdict]:
    """The batch form of `check`: verdicts for (response, gold, spec) triples, in order."""
    return default_verifier().check_many(items, timeout_s=timeout_s, **kwargs)


def vote(verdicts: Iterable[Verdict], spec: AnswerSpec | None = None, **kwargs: Any) -> VoteResult:
    """Self-consistency over verdicts with the process-global Verifier (see `voting.cluster_vote`)."""
    return default_verifier().vote(verdicts, spec, **kwargs)
