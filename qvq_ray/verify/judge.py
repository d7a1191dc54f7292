"""The judge model: asked only where the rules cannot decide, and never trusted past what it said.

Two cases reach it (`verifier.judge`, see `JudgeConfig`):
- **extraction**: the rules found no answer in a response. The judge reads the question, the options
  and the end of the response and writes the answer (or "none"). Its answer is then compared with
  gold by the rules and sympy, as any answer is: the judge only reads, it does not grade math.
- **equivalence**: the gold is free text (a sentence, a name, `滤液E是硫酸亚铁溶液`) and the string rules
  said "different". Math golds never reach it: sympy's verdict stands.

Every call goes through a per-problem budget (calls and tokens), a timeout and a cache keyed by
the exact inputs (judge_cache.py). A call that fails, times out, is over budget or answers
something unreadable leaves the case **not judged** (`correct` None, `decided_by` None) with the
reason in the verdict's `judge` notes, never a guess. Verdicts say who decided (`decided_by`).

`JudgingChecker` wraps a `Verifier` with a `Judge` and is what the solver, the batch scorer, the
Serve app and `qvq-ray rescore` use when a judge is configured: the same `check` / `compare`
surface, so nothing else changes. In mode `self` the solver calls `check` without gold, so the
judge is only ever asked to extract, from the question and the response. Calls are async on the
judge's engine: the solving engine itself (a batch actor's or the Serve app's, batched with the
solves in flight, never blocking the solve loop) or an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qvq_ray.verify import judge_prompts
from qvq_ray.verify.judge_cache import JudgeCache, cache_key
from qvq_ray.verify.spec import AnswerSpec, has_gold
from qvq_ray.verify.verdict import JudgeNote, Verdict

if TYPE_CHECKING:
    from qvq_ray.config import JudgeConfig, QvqConfig
    from qvq_ray.engines.base import Engine

logger = logging.getLogger(__name__)

_BUDGETS_KEPT = 4096  # problems whose judge spending is remembered (a batch actor sees many)
_FREE_TEXT_TYPES = {"text", "free_text", "free-text", "open", "string", "sentence"}
_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
# Unit words that make `6 yards` or `3 km/h` a quantity, not free text.
_UNIT_WORDS = {
    "cm", "mm", "km", "kg", "mg", "ml", "mph", "kmh", "hz", "khz", "mhz", "pa", "kpa", "mol", "ev", "kev", "mev",
    "yard", "yards", "feet", "foot", "ft", "inch", "inches", "meter", "meters", "metre", "metres", "mile", "miles",
    "gram", "grams", "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "year", "years",
    "degree", "degrees", "deg", "rad", "radians", "newton", "newtons", "joule", "joules", "watt", "watts", "volt",
    "volts", "ohm", "ohms", "units", "unit", "sq", "square", "cubic", "per", "dollars", "cents", "percent", "pi",
    "lb", "lbs", "oz", "kw", "mw", "kj", "min", "sec", "hr",
}
_CJK_UNITS = set("米秒牛焦千克克瓦伏安欧度分时个元角")


def is_free_text(gold: str | None, spec: AnswerSpec | None = None) -> bool:
    """Whether a gold is free text the string rules can only compare literally (so a judge may say
    whether a differently worded answer means the same): a sentence, a name, a phrase. Not a
    multiple-choice gold, a number, an expression, or a quantity with its unit."""
    if gold is None or not str(gold).strip():
        return False
    spec = spec or AnswerSpec()
    if spec.choices:
        return False
    if (spec.answer_type or "").strip().lower() in _FREE_TEXT_TYPES:
        return True
    text = _LATEX_COMMAND.sub(" ", str(gold))
    words = [w for w in _WORD.findall(text) if w.lower() not in _UNIT_WORDS]
    cjk = [c for c in _CJK.findall(text) if c not in _CJK_UNITS]
    has_digit = any(ch.isdigit() for ch in text)
    return len(words) >= 2 or len(cjk) >= 2 or (len(words) == 1 and not has_digit and len(words[0]) >= 3)


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


class Judge:
    """Asks the judge model one question at a time, within budget, timeout and cache."""

    def __init__(self, config: "JudgeConfig", engine: "Engine", *, identity: str, owns_engine: bool = False):
        self.config = config
        self.engine = engine
        self.identity = identity  # part of every cache key: another judge model asks again
        self.owns_engine = owns_engine
        self.cache = JudgeCache(config.cache_path)
        self.stats = JudgeStats()
        preset = judge_prompts.PRESETS[config.prompts]
        self.templates = {
            "extraction": config.extraction_template or preset["extraction"],
            "choice": config.choice_template or preset["choice"],
            "equivalence": config.equivalence_template or preset["equivalence"],
        }
        for task, template in self.templates.items():
            missing = judge_prompts.REQUIRED_FIELDS[task] - judge_prompts.template_fields(template)
            if missing:
                raise ValueError(f"verifier.judge: the {task} template never uses {sorted('{' + m + '}' for m in missing)}")

    def _tail(self, response: str) -> str:
        """The end of a response, where the answer is: at most `max_response_chars`."""
        limit = self.config.max_response_chars
        return response if len(response) <= limit else "…" + response[-limit:]

    async def extract(self, *, question: str, choices: list[str], response: str, budget: JudgeBudget) -> JudgeNote:
        """The answer the response gives ('' = none), as the judge reads it."""
        task = "choice" if choices else "extraction"
        prompt = judge_prompts.render(self.templates[task], question=question, choices=choices, response=self._tail(response))
        text, cached, error = await self._ask(task, prompt, budget)
        if text is None:
            return JudgeNote(task="extraction", cached=cached, error=error)
        outcome = judge_prompts.read_extraction(text, choices)
        if outcome is None:
            self.stats.unreadable += 1
            return JudgeNote(task="extraction", cached=cached, error=f"unreadable extraction: {text[:80]!r}")
        return JudgeNote(task="extraction", outcome=outcome, cached=cached)

    async def equivalent(self, *, question: str, answer: str, gold: str, budget: JudgeBudget) -> JudgeNote:
        """'1' when the judge says `answer` means `gold`, '0' when not; outcome None when unreadable."""
        prompt = judge_prompts.render(self.templates["equivalence"], question=question, answer=answer, gold=gold)
        text, cached, error = await self._ask("equivalence", prompt, budget)
        if text is None:
            return JudgeNote(task="equivalence", cached=cached, error=error)
        said = judge_prompts.read_judgement(text)
        if said is None:
            self.stats.unreadable += 1
            return JudgeNote(task="equivalence", cached=cached, error=f"unreadable judgement: {text[:80]!r}")
        return JudgeNote(task="equivalence", outcome="1" if said else "0", cached=cached)

    async def _ask(self, task: str, prompt: str, budget: JudgeBudget) -> tuple[str | None, bool, str | None]:
        """(text, cached, error): the judge's raw answer, from the cache or one call."""
        from qvq_ray.config import SamplingConfig

        cfg = self.config
        key = cache_key({"judge": self.identity, "task": task, "prompt": prompt, "max_tokens": cfg.max_tokens})
        found = await self.cache.aget(key)
        if found is not None:
            self.stats.cached += 1
            return found, True, None
        if budget.calls >= cfg.max_calls_per_problem or budget.tokens >= cfg.max_tokens_per_problem:
            self.stats.over_budget += 1
            return None, False, (f"over budget ({budget.calls} calls, {budget.tokens} tokens for this problem; "
                                 f"limits {cfg.max_calls_per_problem} and {cfg.max_tokens_per_problem})")
        budget.calls += 1
        self.stats.calls += 1
        sampling = SamplingConfig(temperature=0.0, max_tokens=cfg.max_tokens)
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        try:
            completions = await asyncio.wait_for(self.engine.generate(messages, sampling), timeout=cfg.timeout_s)
        except asyncio.TimeoutError:
            self.stats.failed += 1
            return None, False, f"timed out after {cfg.timeout_s:g} s"
        except Exception as exc:  # the engine's own errors, a dead endpoint: not judged, never fatal
            self.stats.failed += 1
            logger.warning("judge call failed: %s: %s", type(exc).__name__, exc)
            return None, False, f"judge failed: {type(exc).__name__}: {exc}"[:300]
        completion = completions[0]
        spent = completion.prompt_tokens + completion.completion_tokens
        budget.tokens += spent
        self.stats.tokens += spent
        await self.cache.aput(key, completion.text)
        return completion.text, False, None

    async def close(self) -> None:
        if self.owns_engine:
            await self.engine.close()


class JudgingChecker:
    """A `Verifier` with a judge for what its rules cannot decide (the `AnswerChecker` the solver needs)."""

    def __init__(self, verifier: Any, judge: Judge):
        self.verifier = verifier
        self.judge = judge
        self.config = judge.config
        self._budgets: OrderedDict[str, JudgeBudget] = OrderedDict()
        self._solve_budgets: dict[int, JudgeBudget] = {}

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

    async def check(self, response: str, spec: AnswerSpec | None = None, *, gold: str | None = None,
                    finish_reason: str | None = "stop", problem: Any = None, **keywords: Any) -> Verdict:
        verdict = await self.verifier.check(response, spec, gold=gold, finish_reason=finish_reason, problem=problem, **keywords)
        question = getattr(problem, "question", "") or ""
        return await self.judge_verdict(verdict, response, spec, gold=gold, question=question, budget=self._solve_budget(problem))

    def _solve_budget(self, problem: Any) -> JudgeBudget:
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

    async def compare(self, answer: str, gold: str, spec: AnswerSpec | None = None, **keywords: Any) -> bool | None:
        return (await self.compare_detailed(answer, gold, spec, **keywords))[0]

    async def compare_detailed(self, answer: str | None, gold: str, spec: AnswerSpec | None = None, *,
                               question: str = "", problem_key: str | None = None,
                               timeout_s: float | None = None) -> tuple[bool | None, str | None]:
        """Rules and sympy first; a free-text gold they call different goes to the judge."""
        correct, by = await self.verifier.compare_detailed(answer, gold, spec, timeout_s=timeout_s)
        if not self._wants_equivalence(answer, gold, spec, correct):
            return correct, by
        note = await self.judge.equivalent(question=question, answer=answer, gold=str(gold), budget=self.budget_for(problem_key))
        return _judged(note)

    # -- the judge's part of a verdict

    def _wants_equivalence(self, answer: str | None, gold: str | None, spec: AnswerSpec | None, correct: bool | None) -> bool:
        return (
            "equivalence" in self.config.tasks
            and correct is False
            and answer is not None
            and is_free_text(gold, spec)
        )

    async def judge_verdict(self, verdict: Verdict, response: str, spec: AnswerSpec | None, *, gold: str | None,
                            question: str, problem_key: str | None = None, budget: JudgeBudget | None = None) -> Verdict:
        """`verdict` (the rules' and sympy's) with the judge's part: an answer read where the rules
        found none, a free-text match where the rules said different; unchanged otherwise. Spending
        goes to `budget`, else to the job row `problem_key`'s."""
        from qvq_ray.verify.equivalence import canonical_form

        spec = spec or AnswerSpec()
        gold_given = has_gold(gold)
        budget = budget if budget is not None else self.budget_for(problem_key)
        verdict = verdict.model_copy(deep=True)
        if "extraction" in self.config.tasks and verdict.answer is None and (response or "").strip():
            note = await self.judge.extract(question=question, choices=list(spec.choices), response=response, budget=budget)
            verdict.judge.append(note)
            if note.outcome is None:  # the judge did not answer: not judged, never "wrong"
                verdict.decided_by = None
                if gold_given:
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
                if gold_given:
                    verdict.correct, _ = await self.verifier.compare_detailed(note.outcome, gold, spec)
                    if verdict.correct is None:
                        verdict.decided_by = None
        if gold_given and self._wants_equivalence(verdict.answer, gold, spec, verdict.correct):
            note = await self.judge.equivalent(question=question, answer=verdict.answer, gold=str(gold), budget=budget)
            verdict.judge.append(note)
            verdict.correct, verdict.decided_by = _judged(note)
        return verdict

    async def close(self) -> None:
        await self.judge.close()


def _judged(note: JudgeNote) -> tuple[bool | None, str | None]:
    """An equivalence note as (correct, decided_by): not judged when the judge gave no outcome."""
    if note.outcome is None:
        return None, None
    return note.outcome == "1", "judge"


def judge_identity(config: "QvqConfig") -> str:
    """Who judges, for the cache key: the endpoint and model, or the solving engine's model."""
    judge = config.verifier.judge
    engine = judge.engine if judge is not None and judge.engine is not None else config.engine
    if engine.kind == "openai":
        return f"openai|{engine.base_url}|{engine.remote_model or config.model.served_model_name or config.model.path}"
    return f"{engine.kind}|{config.model.path}|{config.model.dtype}"


def judging_checker(verifier: Any, config: "QvqConfig", solving_engine: "Engine | None" = None) -> Any:
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
