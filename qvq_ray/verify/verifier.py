"""The Verifier: a response in, a `Verdict` out.

In-process (pure string work, bounded): extraction, the health checks (`truncated`,
`no_final_answer`, `repetition_loop`, `language_mixing`), finding numeric claims, and every
comparison the string rules decide (letters, option texts, plain numbers with tolerances and
units of one kind, structures of those). Everything that needs sympy (expressions, unit
conversion, equations, the parse check behind `unparseable`, checking the claims behind
`false_calculation`) is one call to a `VerifyPool` worker process, with a hard wall-clock limit
and a memory limit; a worker past its limit is killed and replaced.

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
from collections.abc import Iterable, Mapping
from typing import Any

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.calculation import find_claims
from qvq_ray.verify.equivalence import NeedsSympy, Options, answer_parses, canonical_form, quick_equivalent
from qvq_ray.verify.extract import detect_issues, extract_final_answer
from qvq_ray.verify.pool import VerifyPool, VerifyTimeout, VerifyWorkerError
from qvq_ray.verify.verdict import Verdict

logger = logging.getLogger(__name__)

CHECKS_FN = "qvq_ray.verify.worker.run_checks"
EQUIVALENCE_FN = "qvq_ray.verify.equivalence.answers_equivalent"  # kept for callers of the pool directly
_MIN_CALL_S = 0.05


class Verifier:
    """Checks responses; owns a `VerifyPool` sized by `VerifierConfig` (or shares one passed in).

    Safe to call from any thread and from any event loop: nothing here relies on signals.
    Problem fields (`choices`, `unit`, `tolerance`, `answer_type`, `precision`) are optional
    keyword arguments of every check; `problem=` takes them (and the gold) from a `Problem`
    or a mapping with those keys (see `problem_fields`).
    """

    def __init__(self, config: VerifierConfig | None = None, *, pool: VerifyPool | None = None) -> None:
        self.config = config or VerifierConfig()
        self._owns_pool = pool is None
        self.pool = pool or VerifyPool(
            workers=self.config.workers, timeout_s=self.config.timeout_s, memory_limit_mb=self.config.memory_limit_mb
        )

    # -- checks

    async def check(self, response: str, **keywords: Any) -> Verdict:
        """`check_sync` (same keywords) on the pool's own threads, never on the event loop.

        `correct` is judged only when `gold` is given (see module doc).
        """
        return await self.pool.run_blocking(functools.partial(self.check_sync, response, **keywords))

    def check_sync(
        self,
        response: str,
        *,
        gold: str | None = None,
        choices: list[str] | None = None,
        finish_reason: str | None = "stop",
        timeout_s: float | None = None,
        unit: str | None = None,
        tolerance: Any = None,
        answer_type: str | None = None,
        precision: int | None = None,
        problem: Any = None,
    ) -> Verdict:
        """`check` for synchronous callers (blocks the calling thread, any thread)."""
        start = time.perf_counter()
        budget = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        alternatives: list[str] = []
        if problem is not None:
            fields = problem_fields(problem)
            alternatives = fields["alternatives"] if gold is None else []
            gold = gold if gold is not None else fields["gold"]
            choices = choices if choices is not None else fields["choices"]
            unit = unit if unit is not None else fields["unit"]
            tolerance = tolerance if tolerance is not None else fields["tolerance"]
            answer_type = answer_type if answer_type is not None else fields["answer_type"]
            precision = precision if precision is not None else fields["precision"]
        response = response or ""
        options = self._options(choices, unit, tolerance, answer_type, precision)
        answer = extract_final_answer(response)
        issues = detect_issues(response, finish_reason, answer=answer, health=self.config.health_checks)
        canonical = canonical_form(answer, options.choices) if answer is not None else None
        has_gold = _has_gold(gold)

        correct: bool | None = None
        need_equivalence = False
        if has_gold:
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

        false_claims: list[str] = []
        if need_equivalence or need_parse or claims:
            request = {
                "answer": answer,
                "gold": str(gold) if need_equivalence else None,
                "options": options.as_dict(),
                "check_parse": need_parse,
                "claims": [[c.lhs, c.op, c.rhs] for c in claims],
            }
            result = self._run(request, start, budget, issues)
            if result is not None:
                if need_equivalence:
                    correct = result["correct"]
                    if correct is None:
                        _add(issues, "unparseable" if result.get("error") and not result.get("timed_out") else "timeout")
                if need_parse:
                    parse_ok = result["parse_ok"]
                false_claims = list(result.get("false_claims") or [])
                if result.get("timed_out"):
                    _add(issues, "timeout")
        if correct is False and answer is not None and alternatives:  # MMMU: several accepted answers
            for alternative in alternatives:
                if self.compare_sync(answer, alternative, timeout_s=max(budget - (time.perf_counter() - start), _MIN_CALL_S),
                                     choices=options.choices or None, unit=unit, tolerance=tolerance,
                                     answer_type=answer_type, precision=precision):
                    correct = True
                    break
        if parse_ok is False:
            _add(issues, "unparseable")
        if false_claims:
            _add(issues, "false_calculation")
        return Verdict(
            answer=answer,
            canonical=canonical,
            correct=correct,
            issues=issues,
            false_claims=false_claims,
            elapsed_s=time.perf_counter() - start,
        )

    def _run(self, request: dict, start: float, budget: float, issues: list[str]) -> dict | None:
        """One worker call with what is left of the budget; None (and an issue) when it failed."""
        remaining = max(budget - (time.perf_counter() - start), _MIN_CALL_S)
        request["budget_s"] = remaining
        try:
            return self.pool.call(CHECKS_FN, request, timeout_s=remaining)
        except VerifyTimeout as exc:
            logger.warning("check not finished (timeout): %s", exc)
            _add(issues, "timeout")
        except VerifyWorkerError as exc:
            # a worker that died (memory limit in C code, a crash) is a resource failure
            issue = "unparseable" if "died" not in str(exc) and "MemoryError" not in str(exc) else "timeout"
            logger.warning("check failed (%s): %s", issue, exc)
            _add(issues, issue)
        return None

    async def equivalent(self, a: str, b: str, *, timeout_s: float | None = None, **problem: Any) -> bool:
        """Whether answer `a` matches `b` (gold, or another answer when clustering); False when not
        judged (timeout, failure). Problem fields: choices, unit, tolerance, answer_type, precision."""
        return await self.pool.run_blocking(functools.partial(self.equivalent_sync, a, b, timeout_s=timeout_s, **problem))

    def equivalent_sync(self, a: str, b: str, *, timeout_s: float | None = None, **problem: Any) -> bool:
        """`equivalent` for synchronous callers."""
        return bool(self.compare_sync(a, b, timeout_s=timeout_s, **problem))

    async def compare(self, answer: str, gold: str, *, timeout_s: float | None = None, **problem: Any) -> bool | None:
        """Like `equivalent`, but None when the comparison could not be judged (timeout, too large)."""
        return await self.pool.run_blocking(functools.partial(self.compare_sync, answer, gold, timeout_s=timeout_s, **problem))

    def compare_sync(
        self,
        answer: str,
        gold: str,
        *,
        timeout_s: float | None = None,
        choices: list[str] | None = None,
        unit: str | None = None,
        tolerance: Any = None,
        answer_type: str | None = None,
        precision: int | None = None,
    ) -> bool | None:
        """`compare` for synchronous callers."""
        if answer is None or not _has_gold(gold):
            return False
        options = self._options(choices, unit, tolerance, answer_type, precision)
        quick = quick_equivalent(answer, gold, None, options.as_dict())
        if quick is not None:
            return quick
        start = time.perf_counter()
        budget = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        issues: list[str] = []
        result = self._run(
            {"answer": answer, "gold": gold, "options": options.as_dict(), "check_parse": False, "claims": []},
            start,
            budget,
            issues,
        )
        if result is None:
            logger.debug("equivalence not judged: %s", issues)
            return None
        return result["correct"]

    def check_many(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        finish_reasons: Iterable[str | None] | None = None,
        timeout_s: float | None = None,
    ) -> list[Verdict]:
        """Verdicts for many (response, problem) pairs, in order, using every worker at once.

        `problem` may be a `Problem`, a mapping (see `problem_fields`), a gold string, or None.
        """
        pairs = list(items)
        reasons = list(finish_reasons) if finish_reasons is not None else ["stop"] * len(pairs)
        if len(reasons) != len(pairs):
            raise ValueError("finish_reasons must have one entry per item")

        def one(k: int) -> Verdict:
            response, problem = pairs[k]
            if problem is None or isinstance(problem, str):
                return self.check_sync(response, gold=problem, finish_reason=reasons[k], timeout_s=timeout_s)
            return self.check_sync(response, problem=problem, finish_reason=reasons[k], timeout_s=timeout_s)

        if len(pairs) <= 1:
            return [one(k) for k in range(len(pairs))]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.pool.workers, thread_name_prefix="qvq-verify-batch") as ex:
            return list(ex.map(one, range(len(pairs))))

    async def acheck_many(self, items: Iterable[tuple[str, Any]], **kwargs: Any) -> list[Verdict]:
        """`check_many` without blocking the event loop."""
        return await self.pool.run_blocking(functools.partial(self.check_many, list(items), **kwargs))

    def vote(self, verdicts: Iterable[Verdict], **kwargs: Any):
        """Self-consistency over verdicts, clustering with this verifier's equivalence (see `vote.vote`)."""
        from qvq_ray.verify.voting import vote

        return vote(verdicts, equivalent=self.equivalent_sync, **kwargs)

    def _options(self, choices, unit, tolerance, answer_type, precision) -> Options:
        return Options.build(
            {
                "unit": unit,
                "tolerance": tolerance,
                "answer_type": answer_type,
                "precision": precision,
                "missing_unit": self.config.missing_unit,
            },
            list(choices) if choices else [],
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


def problem_fields(problem: Any) -> dict[str, Any]:
    """gold, choices, unit, tolerance, answer_type, precision and alternatives of a `Problem` or a
    mapping (e.g. the JSON of a solve row's `problem` column).

    Native fields the dataset adapters keep in `meta` count too: OlympiadBench's per-answer
    tolerances (`tolerances`, or the raw `error` string) and units (`units`), MathVista's
    `precision`, MMMU's several accepted answers (`answers`, as `alternatives`).
    """
    if isinstance(problem, Mapping):
        get = problem.get
        meta = problem.get("meta") or {}
    else:
        def get(key, default=None):
            return getattr(problem, key, default)

        meta = getattr(problem, "meta", None) or {}
    if isinstance(meta, str):
        import json

        try:
            meta = json.loads(meta)
        except ValueError:
            meta = {}
    if not isinstance(meta, Mapping):
        meta = {}
    tolerance = get("tolerance")
    if tolerance is None:
        tolerance = meta.get("tolerances") if meta.get("tolerances") is not None else meta.get("error")
    unit = get("unit")
    if unit is None and isinstance(meta.get("units"), list):
        unit = ",".join(str(u or "") for u in meta["units"])
    precision = get("precision")
    if precision is None:
        precision = meta.get("precision")
    gold = get("answer")
    if gold is None:
        gold = get("gold")
    if isinstance(gold, (list, tuple)):
        gold = ", ".join(str(g) for g in gold)
    alternatives = [str(a) for a in (meta.get("answers") or []) if str(a) != str(gold)]
    return {
        "gold": gold,
        "choices": list(get("choices") or []) or None,
        "unit": unit,
        "tolerance": tolerance,
        "answer_type": get("answer_type"),
        "precision": precision,
        "alternatives": alternatives,
    }


def _has_gold(gold: str | None) -> bool:
    return gold is not None and bool(str(gold).strip())


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

    Synchronous: inside an event loop, use `await Verifier.check(...)` instead.
    """
    return default_verifier().check_sync(
        response,
        gold=gold,
        choices=choices,
        finish_reason=finish_reason,
        timeout_s=timeout_s,
        unit=unit,
        tolerance=tolerance,
        answer_type=answer_type,
        precision=precision,
    )


def check_many(items: Iterable[tuple[str, Any]], *, timeout_s: float = 5.0, **kwargs: Any) -> list[Verdict]:
    """The batch form of `check`: verdicts for (response, problem) pairs, in order."""
    return default_verifier().check_many(items, timeout_s=timeout_s, **kwargs)
