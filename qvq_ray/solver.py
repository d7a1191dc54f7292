"""The solve loop shared by the batch job and the online endpoint.

`Solver.solve(problem)` runs samples of one problem, verifies each the moment it ends, and decides:
accept, re-sample, or (self-consistency) keep voting until a quorum. Many solves run concurrently on
one engine (the engine batches them), and a re-sample starts as soon as its failure is known: there
are no rounds and no barrier waiting for the slowest chain of thought.

Two modes, never mixed up:
- `self`: gold is never read here. The verifier is called without it; scoring against gold happens
  later in its own stage. The only mode online.
- `oracle`: rejection sampling for data generation: an attempt is accepted when it matches gold.
  Its accuracy is pass@k, and the Solution says `mode="oracle"` so reports label it so.

With the loop cut-off on (`policy.loop_cutoff`), every sample is streamed, and one that falls into
a repetition loop is cut off early (the attempt records `repetition_loop` and the tokens it saved).

An engine call that fails (a 5xx from an endpoint, a replica restart) is kept as an attempt with
`error` set, no text and no verdict: it counts against `max_attempts` (a request was spent) but is
never shown to the policy, never a vote, and scoring skips it. The solution's `error` is set only
when no attempt produced an answer; when the first call fails with nothing else to keep, the
exception goes to the caller (a 4xx/5xx online, an error row in batch).

The decisions (accept, re-sample with which sampling, stop, which answer to give) are a policy's
(`qvq_ray/policies.py`): a built-in one chosen by the config, or a user class named by
`policy.import_path`; this module keeps the mechanics and the limits that bound every policy.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from qvq_ray.config import ModelConfig, PolicyConfig, QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, Engine, ReplicaLostError
from qvq_ray.policies import Accept, Resample, SolveState, Stop, load_policy
from qvq_ray.problem import Attempt, Problem, Solution
from qvq_ray.prompt_config import PromptConfig
from qvq_ray.verify.checker import AnswerChecker
from qvq_ray.verify.health import LoopDetector
from qvq_ray.verify.verdict import Verdict

STREAM_RESTARTS = 2  # a streamed sample whose engine replica died mid-way is started again this often


class Solver:
    def __init__(
        self,
        engine: Engine,
        verifier: AnswerChecker,
        *,
        policy: PolicyConfig | None = None,
        sampling: SamplingConfig | None = None,
        model: ModelConfig | None = None,
        prompt: PromptConfig | None = None,
    ):
        self.engine = engine
        self.verifier = verifier
        self.policy = policy or PolicyConfig()
        self.sampling = sampling or SamplingConfig()
        self.model = model or ModelConfig()
        self.prompt = prompt or PromptConfig()
        self._template = self.prompt.resolved()  # resolved once: every solve renders the same recipe
        self._template_sha: str | None = None
        self._policy_factory = load_policy(self.policy)  # a bad import_path fails here, not mid-job

    @classmethod
    def from_config(cls, engine: Engine, verifier: AnswerChecker, config: QvqConfig) -> "Solver":
        return cls(engine, verifier, policy=config.policy, sampling=config.sampling, model=config.model, prompt=config.prompt)

    def with_limits(self, *, max_attempts: int | None = None, max_tokens: int | None = None) -> "Solver":
        """This solver with a request's own attempt and token limits (the online `/v1/solve`)."""
        policy = self.policy if max_attempts is None else self.policy.model_copy(update={"max_attempts": max_attempts})
        sampling = self.sampling if max_tokens is None else self.sampling.model_copy(update={"max_tokens": max_tokens})
        return Solver(self.engine, self.verifier, policy=policy, sampling=sampling, model=self.model, prompt=self.prompt)

    # ------------------------------------------------------------------ sampling schedule

    @staticmethod
    def _per_attempt(chosen: SamplingConfig, attempt_index: int) -> SamplingConfig:
        """One sample per request, and a seeded schedule's seed moved on per attempt (else it would repeat)."""
        seed = None if chosen.seed is None else chosen.seed + attempt_index
        return chosen.model_copy(update={"seed": seed, "n": 1})

    def _messages_for(self, base: list[dict[str, Any]], attempt_index: int) -> list[dict[str, Any]]:
        hint = self.policy.retry_hint
        if attempt_index == 0 or not hint:
            return base
        messages = [dict(m) for m in base]
        user = messages[-1]
        user["content"] = list(user["content"]) + [{"type": "text", "text": "\n" + hint}]
        return messages

    # ------------------------------------------------------------------ solving

    async def solve(
        self,
        problem: Problem,
        image_bytes: list[bytes] | None = None,
        on_attempt: Callable[[int, Attempt], Awaitable[None]] | None = None,
    ) -> Solution:
        """Solve one problem. `image_bytes`: images already prepared (decoded, resized), else loaded here.

        `on_attempt(index, attempt)` is awaited as each attempt is judged, or its engine call
        fails (`attempt.error` set) (the online endpoint streams these as events).
        """
        from qvq_ray.images import prepare_problem_images
        from qvq_ray.prompt import build_messages, prompt_record, template_sha

        started = time.perf_counter()
        if image_bytes is None:
            image_bytes = prepare_problem_images(problem.images, self.model)
        messages = build_messages(problem, image_bytes, system_prompt=self.model.system_prompt, prompt=self._template)
        if self._template_sha is None:
            self._template_sha = template_sha(self._template, self.model.system_prompt)
        record = prompt_record(messages, self.prompt, self.model.system_prompt, sha=self._template_sha)
        gold = problem.answer if self.policy.mode == "oracle" else None  # `self` never reads gold

        attempts: dict[int, Attempt] = {}  # judged attempts: what the policy sees
        failed: dict[int, Attempt] = {}  # engine calls that failed: no text, no verdict, kept for the record
        state = SolveState(
            problem=problem if self.policy.mode == "oracle" else problem.gold_free(),
            config=self.policy,
            sampling=self.sampling,
            verifier=self.verifier,
            attempts=attempts,
        )
        policy = self._policy_factory(state)
        requested: list[SamplingConfig] = []  # samplings asked for by Resample decisions, next first
        running: dict[asyncio.Task[Any], int] = {}
        calls: dict[asyncio.Task[Any], tuple[int, SamplingConfig, float]] = {}  # (samples, sampling, start) per request
        launched = 0
        decided: int | None = None  # index of the accepted attempt
        stopped = False
        stop_reason: str | None = None
        error: str | None = None

        def tokens_used() -> int:
            return sum(a.completion_tokens for a in attempts.values())

        def launch_more() -> None:
            nonlocal launched
            while (
                len(running) < policy.max_in_flight()
                and launched < self.policy.max_attempts
                and (self.policy.token_budget is None or tokens_used() < self.policy.token_budget)
            ):
                index = launched
                count = min(self.policy.samples_per_request, self.policy.max_attempts - launched)
                if requested:
                    sampling = requested.pop(0).model_copy(update={"n": 1})
                else:
                    sampling = self._per_attempt(policy.sampling_for(index), index)
                task = asyncio.ensure_future(
                    self._attempts(problem, self._messages_for(messages, index), index, count, gold, sampling)
                )
                running[task] = index
                calls[task] = (count, sampling, time.perf_counter())
                launched += count
                state.launched = launched

        launch_more()
        try:
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=running.__getitem__):
                    index = running.pop(task)
                    count, sampling, call_started = calls.pop(task)
                    try:
                        batch = task.result()
                    except Exception as exc:
                        if index == 0 and not attempts and not running:
                            raise  # nothing to keep: the caller reports it (a 4xx online, an error row in batch)
                        error = f"engine failed on attempt {index + 1}: {exc}"
                        for offset in range(count):  # recorded on its own attempts; never a vote
                            failure = Attempt(
                                text="",
                                sampling=sampling,
                                latency_s=time.perf_counter() - call_started,
                                finish_reason="error",
                                error=f"{type(exc).__name__}: {exc}",
                            )
                            failed[index + offset] = failure
                            if on_attempt is not None:
                                await on_attempt(index + offset, failure)
                        continue
                    for offset, attempt in enumerate(batch):
                        attempts[index + offset] = attempt
                        if on_attempt is not None:
                            await on_attempt(index + offset, attempt)
                        decision = await policy.on_attempt(index + offset, attempt)  # every vote counts
                        if decided is not None or stopped:
                            continue  # the first decision that ends the solve wins
                        if isinstance(decision, Accept):
                            decided = decision.index
                        elif isinstance(decision, Stop):
                            stopped = True
                            stop_reason = decision.reason or "stopped by the policy"
                        elif isinstance(decision, Resample):
                            if decision.sampling is not None:
                                requested.append(decision.sampling)
                        else:
                            raise TypeError(f"a policy returned {decision!r}, not Accept, Resample or Stop")
                if decided is not None or stopped:
                    break
                launch_more()
        finally:
            for task in running:
                task.cancel()  # a streaming engine aborts the request; the tokens are not spent
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if any(a.verdict.answer is not None for a in attempts.values()):
            error = None  # an answer was produced: a failed call on the way is on its attempt, not the problem's
        solution = self._solution(problem, {**attempts, **failed}, policy.choose(decided), started, error)
        solution.prompt = record
        solution.stop_reason = stop_reason if decided is None else None
        return solution

    async def _attempts(
        self, problem: Problem, messages: list[dict[str, Any]], index: int, count: int, gold: str | None, sampling: SamplingConfig
    ) -> list[Attempt]:
        """`count` samples from one request (n=count), or one streamed sample when count is 1."""
        if count == 1:
            completion, saved = await self._generate(messages, sampling)
            return [await self._judge(problem, sampling, completion, saved, gold)]
        completions = await self.engine.generate(messages, sampling.model_copy(update={"n": count}))
        return [await self._judge(problem, sampling, c, None, gold) for c in completions]

    async def _judge(
        self, problem: Problem, sampling: SamplingConfig, completion: Completion, saved: int | None, gold: str | None
    ) -> Attempt:
        verdict = await self.verifier.check(
            completion.text, problem.spec, gold=gold, finish_reason=completion.finish_reason, problem=problem
        )
        if saved is not None and "repetition_loop" not in verdict.issues:
            verdict.issues.append("repetition_loop")
        return Attempt(
            text=completion.text,
            sampling=sampling,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=completion.latency_s,
            finish_reason=completion.finish_reason,
            verdict=verdict,
            cut_off=saved is not None,
            tokens_saved=saved or 0,
        )

    async def _generate(self, messages: list[dict[str, Any]], sampling: SamplingConfig) -> tuple[Completion, int | None]:
        """One sample; with loop cut-off on, it is streamed and stopped once it loops.

        Returns the completion and, when cut off, the tokens saved (max_tokens - tokens generated).
        """
        if not self.policy.loop_cutoff:
            return (await self.engine.generate(messages, sampling))[0], None
        for restart in range(STREAM_RESTARTS + 1):
            try:
                return await self._stream_one(messages, sampling)
            except ReplicaLostError:
                # The engine copy died mid-sample. Nothing of it left the solver (an attempt is
                # reported only once judged), so the sample starts again on a live one.
                if restart == STREAM_RESTARTS:
                    raise
        raise AssertionError("unreachable")

    async def _stream_one(self, messages: list[dict[str, Any]], sampling: SamplingConfig) -> tuple[Completion, int | None]:
        detector = LoopDetector(min_chars=self.policy.loop_min_chars, repeats=self.policy.loop_repeats)
        started = time.perf_counter()
        pieces: list[str] = []
        generator = self.engine.stream(messages, sampling)
        try:
            async for item in generator:
                if isinstance(item, Completion):
                    return item, None
                pieces.append(item)
                if detector.feed(item):
                    break
        finally:
            await generator.aclose()  # aborts the request on the engine when we stop early
        generated = len(pieces)  # the engines stream one delta per token (at most)
        completion = Completion(
            text="".join(pieces),
            finish_reason="abort",
            completion_tokens=generated,
            latency_s=time.perf_counter() - started,
        )
        return completion, max(sampling.max_tokens - generated, 0)

    def _solution(
        self,
        problem: Problem,
        attempts_by_index: dict[int, Attempt],
        choice: tuple[int | None, float | None],
        started: float,
        error: str | None,
    ) -> Solution:
        attempts = [attempts_by_index[i] for i in sorted(attempts_by_index)]
        position = {index: pos for pos, index in enumerate(sorted(attempts_by_index))}
        chosen_index, confidence = choice
        chosen = attempts_by_index.get(chosen_index) if chosen_index is not None else None
        return Solution(
            id=problem.id,
            answer=chosen.verdict.answer if chosen else None,
            verdict=chosen.verdict if chosen else Verdict(),
            confidence=confidence,
            mode=self.policy.mode,
            chosen_attempt=position.get(chosen_index) if chosen_index is not None else None,
            attempts=attempts,
            prompt_tokens=sum(a.prompt_tokens for a in attempts),
            completion_tokens=sum(a.completion_tokens for a in attempts),
            tokens_saved=sum(a.tokens_saved for a in attempts),
            latency_s=time.perf_counter() - started,
            error=error,
        )
