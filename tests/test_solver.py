"""The solve loop (no Ray): the real tiny Qwen2-VL through HFEngine, the real Verifier."""

from __future__ import annotations

import asyncio
import json

import pytest

from qvq_ray.config import HFEngineConfig, ModelConfig, PolicyConfig, SamplingConfig, VerifierConfig
from qvq_ray.engines.base import Completion
from qvq_ray.problem import ImageRef, Problem
from qvq_ray.solver import Solver
from tests.conftest import png_bytes

GOLD = "987654321"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=8, batch_wait_ms=20, torch_threads=1))
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def verifier():
    from qvq_ray.verify import Verifier

    verifier = Verifier(VerifierConfig(workers=1))
    yield verifier
    verifier.close()


class SpyVerifier:
    """The real verifier, recording what every `check` call was given."""

    def __init__(self, real):
        self.real = real
        self.golds: list[object] = []
        self.calls = 0

    async def check(self, response, spec=None, **kwargs):
        self.calls += 1
        self.golds.append(kwargs.get("gold"))
        return await self.real.check(response, spec, **kwargs)

    async def same_answer(self, a, b, spec=None):
        return await self.real.same_answer(a, b, spec)


class RecordingEngine:
    """The real engine, recording the messages and sampling of each generate call."""

    def __init__(self, real):
        self.real = real
        self.model_name = real.model_name
        self.calls: list[tuple[list, SamplingConfig]] = []

    async def generate(self, messages, sampling):
        self.calls.append((messages, sampling))
        return await self.real.generate(messages, sampling)

    async def stream(self, messages, sampling):
        self.calls.append((messages, sampling))
        async for item in self.real.stream(messages, sampling):
            yield item


class ScriptedEngineFake:
    """A fake engine: the random tiny model never writes a final answer, and the acceptance path
    needs controlled text. Returns the scripted texts in order and records each call's sampling."""

    model_name = "scripted-fake"

    def __init__(self, texts: list[str]):
        self.texts = list(texts)
        self.samplings: list[SamplingConfig] = []

    async def generate(self, messages, sampling):
        self.samplings.append(sampling)
        text = self.texts[min(len(self.samplings), len(self.texts)) - 1]
        return [Completion(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=len(text) // 4 + 1)]

    async def stream(self, messages, sampling):
        (completion,) = await self.generate(messages, sampling)
        yield completion.text
        yield completion


def _problem(pid: str = "p1", text: str = "12 + 30", answer: str | None = None, **extra) -> Problem:
    return Problem(
        id=pid,
        question=f"<image1>What is {text}?",
        images=[ImageRef(bytes=png_bytes(text))],
        answer=answer,
        **extra,
    )


def _texts_of(messages) -> str:
    parts = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for part in content:
            if part.get("type") == "text":
                parts.append(part["text"])
    return "\n".join(parts)


def test_self_mode_never_reads_gold(engine, verifier, tiny_model_dir):
    spy = SpyVerifier(verifier)
    recorder = RecordingEngine(engine)
    solver = Solver(
        recorder,
        spy,
        policy=PolicyConfig(max_attempts=2),
        sampling=SamplingConfig(max_tokens=12),
        model=ModelConfig(path=str(tiny_model_dir)),
    )
    # the gold also sits in meta (MathVision rows carry the worked solution there)
    problem = _problem(answer=GOLD, choices=["1", "2", "3", "4"], meta={"solution": f"so it is {GOLD}"})
    solution = asyncio.run(solver.solve(problem))

    assert spy.calls == len(solution.attempts) >= 1
    assert spy.golds == [None] * spy.calls
    assert len(recorder.calls) == spy.calls
    for messages, _ in recorder.calls:
        assert GOLD not in json.dumps(messages, default=lambda b: "<bytes>")
        assert GOLD not in _texts_of(messages)
    assert solution.verdict.correct is None
    assert all(a.verdict.correct is None for a in solution.attempts)
    assert solution.mode == "self"


def test_resamples_until_budget_with_warmer_sampling(engine, verifier):
    # seeded, so re-samples (seed + attempt index) are reproducible with the fixed tiny checkpoint
    sampling = SamplingConfig(max_tokens=12, temperature=0.0, seed=1234)
    recorder = RecordingEngine(engine)
    solver = Solver(recorder, verifier, policy=PolicyConfig(max_attempts=3), sampling=sampling)
    solution = asyncio.run(solver.solve(_problem(answer="42")))

    assert len(solution.attempts) == 3
    for attempt in solution.attempts:
        assert "no_final_answer" in attempt.verdict.issues, attempt.text
        assert isinstance(attempt.text, str) and attempt.completion_tokens > 0 and attempt.prompt_tokens > 0
    assert solution.attempts[0].sampling == sampling
    assert recorder.calls[0][1].temperature == 0.0
    for attempt, (_, used) in zip(solution.attempts[1:], recorder.calls[1:]):
        assert attempt.sampling.temperature >= 0.7
        assert used.temperature >= 0.7
        assert attempt.sampling.max_tokens == sampling.max_tokens
        assert attempt.sampling.seed != sampling.seed
    assert solution.answer is None
    assert "no_final_answer" in solution.verdict.issues
    assert solution.completion_tokens == sum(a.completion_tokens for a in solution.attempts)
    assert solution.prompt_tokens == sum(a.prompt_tokens for a in solution.attempts)
    assert solution.latency_s > 0


def test_accepts_first_attempt_with_a_final_answer(verifier):
    fake = ScriptedEngineFake(["I am not sure", "**Final Answer**\n\\[ \\boxed{42} \\]"])
    sampling = SamplingConfig(max_tokens=64, seed=5)
    solver = Solver(fake, verifier, policy=PolicyConfig(max_attempts=4), sampling=sampling)
    solution = asyncio.run(solver.solve(_problem(answer="42")))

    assert len(solution.attempts) == 2
    assert solution.answer == "42"
    assert solution.verdict.issues == []
    assert solution.verdict.correct is None  # self mode: no gold while solving
    assert solution.attempts[0].verdict.issues == ["no_final_answer"]
    assert [s.temperature for s in fake.samplings] == [0.0, 0.7]
    assert all(s.n == 1 for s in fake.samplings)
    assert fake.samplings[1].seed == 6  # a seeded re-sample gets its own seed
    assert solution.completion_tokens == sum(a.completion_tokens for a in solution.attempts)


def test_many_concurrent_solves_on_one_engine(engine, verifier):
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=2), sampling=SamplingConfig(max_tokens=8))
    problems = [_problem(f"q{i}", f"{i} + {i * 7}") for i in range(6)]

    async def run():
        return await asyncio.wait_for(asyncio.gather(*(solver.solve(p) for p in problems)), timeout=300)

    solutions = asyncio.run(run())
    assert [s.id for s in solutions] == [p.id for p in problems]
    for solution in solutions:
        assert solution.error is None
        assert 1 <= len(solution.attempts) <= 2
        assert solution.completion_tokens == sum(a.completion_tokens for a in solution.attempts)
