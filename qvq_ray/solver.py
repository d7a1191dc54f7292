"""The solve loop shared by the batch job and the online endpoint.

`Solver.solve(problem)` generates, verifies and re-samples until an attempt passes the gold-free
checks or the attempt budget ends. Many solves run concurrently on one engine (the engine batches
them), and each problem re-samples the moment its own failure is known: there are no rounds and
no barrier waiting for the slowest chain of thought.

In the `self` mode the gold answer is never read here: the verifier is called without it, and
scoring against gold happens later in its own stage.
"""

from __future__ import annotations

import time
from typing import Any

from qvq_ray.config import ModelConfig, PolicyConfig, QvqConfig, SamplingConfig
from qvq_ray.engines.base import Engine
from qvq_ray.problem import Attempt, Problem, Solution


class Solver:
    def __init__(
        self,
        engine: Engine,
        verifier: Any,
        *,
        policy: PolicyConfig | None = None,
        sampling: SamplingConfig | None = None,
        model: ModelConfig | None = None,
    ):
        self.engine = engine
        self.verifier = verifier
        self.policy = policy or PolicyConfig()
        self.sampling = sampling or SamplingConfig()
        self.model = model or ModelConfig()

    @classmethod
    def from_config(cls, engine: Engine, verifier: Any, config: QvqConfig) -> "Solver":
        return cls(
            engine,
            verifier,
            policy=config.policy,
            sampling=config.sampling,
            model=config.model,
        )

    def sampling_for(self, attempt_index: int) -> SamplingConfig:
        """Attempt 0 uses the configured sampling; re-samples must differ or they repeat the failure."""
        if attempt_index == 0:
            return self.sampling
        base = self.policy.resample_sampling or self.sampling.model_copy(
            update={"temperature": max(self.sampling.temperature, 0.7)}
        )
        seed = None if base.seed is None else base.seed + attempt_index
        return base.model_copy(update={"seed": seed, "n": 1})

    async def solve(self, problem: Problem, image_bytes: list[bytes] | None = None) -> Solution:
        """Solve one problem. `image_bytes`: images already prepared (decoded, resized), else loaded here."""
        from qvq_ray.images import prepare_problem_images
        from qvq_ray.prompt import build_messages

        started = time.perf_counter()
        if image_bytes is None:
            image_bytes = prepare_problem_images(problem.images, self.model)
        messages = build_messages(problem, image_bytes, system_prompt=self.model.system_prompt)
        attempts: list[Attempt] = []
        accepted: Attempt | None = None
        for index in range(self.policy.max_attempts):
            sampling = self.sampling_for(index)
            try:
                completion = (await self.engine.generate(messages, sampling.model_copy(update={"n": 1})))[0]
            except Exception as exc:
                if not attempts:
                    raise  # nothing to keep: the caller reports the error (a 4xx online, an error row in batch)
                return self._solution(problem, attempts, None, started, error=f"engine failed on attempt {index + 1}: {exc}")
            verdict = await self.verifier.check(
                completion.text, gold=None, choices=problem.choices or None, finish_reason=completion.finish_reason
            )
            attempt = Attempt(
                text=completion.text,
                sampling=sampling,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=completion.latency_s,
                finish_reason=completion.finish_reason,
                verdict=verdict,
            )
            attempts.append(attempt)
            if not set(verdict.issues) & set(self.policy.resample_on):
                accepted = attempt
                break
        return self._solution(problem, attempts, accepted, started)

    def _solution(
        self, problem: Problem, attempts: list[Attempt], accepted: Attempt | None, started: float, error: str | None = None
    ) -> Solution:
        """The accepted attempt, else the last one with an answer, else the last one; totals over all."""
        chosen = accepted or next((a for a in reversed(attempts) if a.verdict.answer is not None), attempts[-1])
        return Solution(
            id=problem.id,
            answer=chosen.verdict.answer,
            verdict=chosen.verdict,
            mode=self.policy.mode,
            attempts=attempts,
            prompt_tokens=sum(a.prompt_tokens for a in attempts),
            completion_tokens=sum(a.completion_tokens for a in attempts),
            latency_s=time.perf_counter() - started,
            error=error,
        )
