"""The judge model, asked one question at a time within a budget, a timeout and a cache.

Two questions (`JudgeConfig.tasks`): extract the answer of a response the rules found none in
(`extract`), and say whether an answer means a free-text gold (`equivalent`). Each call's raw text
is cached by its exact inputs (cache.py); a call that fails, times out, is over budget or answers
something unreadable gives a note with the reason and no outcome, never a guess. The engine is
the solving engine itself (batched with the solves in flight) or an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from qvq_ray.judge import prompts as judge_prompts
from qvq_ray.judge.budget import JudgeBudget, JudgeStats
from qvq_ray.judge.cache import JudgeCache, cache_key
from qvq_ray.verify.checker import JudgeHandle
from qvq_ray.verify.verdict import JudgeNote

if TYPE_CHECKING:
    from qvq_ray.config import JudgeConfig, QvqConfig
    from qvq_ray.engines.base import Engine

logger = logging.getLogger(__name__)


class Judge(JudgeHandle):
    """Asks the judge model one question at a time, within budget, timeout and cache."""

    def __init__(self, config: "JudgeConfig", engine: "Engine", *, identity: str, owns_engine: bool = False) -> None:
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

    # -- the JudgeHandle surface (what the callers of a checker reach of its judge)

    async def check_health(self) -> None:
        """The engine's error when it cannot answer (a wrong URL or model name), before any case is asked."""
        await self.engine.check_health()

    def stats_line(self) -> str:
        return self.stats.line()

    async def close(self) -> None:
        """Close the engine when this judge built it; the solving engine is its owner's."""
        if self.owns_engine:
            await self.engine.close()


def judge_identity(config: "QvqConfig") -> str:
    """Who judges, for the cache key: the endpoint and model, or the solving engine's model."""
    judge = config.verifier.judge
    engine = judge.engine if judge is not None and judge.engine is not None else config.engine
    if engine.kind == "openai":
        return f"openai|{engine.base_url}|{engine.remote_model or config.model.served_model_name or config.model.path}"
    return f"{engine.kind}|{config.model.path}|{config.model.dtype}"
