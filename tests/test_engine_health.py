"""Liveness and fairness of the transformers engine (real tiny Qwen2-VL, real generate).

A health probe reads the engine's step clock: it passes at once while a long generation runs,
fails when a step hangs past the stall limit, and never queues a generation of its own. Stop
strings and long prompts cost the request that sends them, not the batch in flight.
"""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
from qvq_ray.engines.base import EngineError, InvalidRequestError


def _chat(text: str):
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


@pytest.fixture
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=4, batch_wait_ms=5, stall_limit_s=0.5, torch_threads=1))
    yield engine
    asyncio.run(engine.close())


def test_a_busy_engine_is_alive_and_the_probe_does_not_wait_for_it(engine):
    """The model's forward is slowed by 2 ms a step (a wrapper over the real one, named as such) so
    the generation spans many probes on any machine: a fast one ran 400 tokens in 0.2 s."""
    real_forward = engine.model.forward

    @functools.wraps(real_forward)  # generate reads the forward's signature
    def slowed_forward(*args, **kwargs):
        time.sleep(0.002)
        return real_forward(*args, **kwargs)

    engine.model.forward = slowed_forward

    async def scenario():
        sampling = SamplingConfig(max_tokens=400, min_tokens=400)  # no early end of sequence
        generation = asyncio.ensure_future(engine.generate(_chat("count"), sampling))
        while (await engine.health()).running == 0 and not generation.done():
            await asyncio.sleep(0.01)
        probes = []
        while not generation.done():
            await engine.check_health()  # raises if not alive
            health = await engine.health()
            probes.append((health.running, generation.done()))  # was the generation still on when it answered?
            await asyncio.sleep(0.05)
        return probes, (await generation)[0]

    probes, completion = asyncio.run(scenario())
    assert completion.completion_tokens == 400, completion
    # a probe that waited on the model would answer only once the 400-step generation had ended
    answered_during = [running for running, generation_done in probes if not generation_done]
    assert len(answered_during) >= 3 and all(running == 1 for running in answered_during), probes


def test_a_step_that_hangs_past_the_stall_limit_fails_liveness(engine):
    """The model's forward is slowed (a wrapper over the real one, named as such) on one step."""
    real_forward = engine.model.forward
    calls = {"n": 0}

    @functools.wraps(real_forward)  # generate reads the forward's signature
    def hanging_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            time.sleep(1.5)  # three times the stall limit
        return real_forward(*args, **kwargs)

    engine.model.forward = hanging_forward

    async def scenario():
        generation = asyncio.ensure_future(engine.generate(_chat("count"), SamplingConfig(max_tokens=8)))
        verdicts = []
        while not generation.done():
            try:
                await engine.check_health()
                verdicts.append("alive")
            except EngineError as exc:
                verdicts.append(str(exc))
            await asyncio.sleep(0.1)
        await generation
        await engine.check_health()  # the step finished: alive again
        return verdicts

    verdicts = asyncio.run(scenario())
    stalled = [v for v in verdicts if v != "alive"]
    assert stalled and "no generation step for" in stalled[0], verdicts
    assert verdicts[0] == "alive"


def test_an_idle_engine_is_never_stalled(engine):
    asyncio.run(engine.generate(_chat("hi"), SamplingConfig(max_tokens=2)))
    time.sleep(0.8)  # longer than the stall limit, with nothing in flight
    health = asyncio.run(engine.health())
    assert health.alive and not health.stalled and health.running == 0 and health.waiting == 0


def test_long_stop_strings_cost_the_same_per_step(engine):
    """Stop-string matching is per new token over a short window: a 1,000-character stop string
    (the cap) costs about what a 1-character one does (transformers' StopStringCriteria took 0.33 s
    per 1,000 characters before the first token)."""

    async def timed(stop):
        started = time.perf_counter()
        completion = (await engine.generate(_chat("count"), SamplingConfig(max_tokens=64, stop=stop)))[0]
        return time.perf_counter() - started, completion

    short, _ = asyncio.run(timed(["\x00"]))
    long, completion = asyncio.run(timed(["\x00" * 1000, "y" * 1000, "z" * 1000, "w" * 1000]))
    assert completion.completion_tokens == 64 or completion.finish_reason == "stop"
    assert long < short * 3 + 0.5, (short, long)


def test_a_stop_string_still_stops_the_row_and_is_cut(engine):
    async def run():
        free = (await engine.generate(_chat("count"), SamplingConfig(max_tokens=40)))[0]
        stop = free.text[10:13]
        cut = (await engine.generate(_chat("count"), SamplingConfig(max_tokens=40, stop=[stop])))[0]
        return free, stop, cut

    free, stop, cut = asyncio.run(run())
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.index(stop)]
    assert cut.completion_tokens < free.completion_tokens


def test_an_over_long_prompt_is_refused_before_tokenizing(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir, max_prompt_chars=10_000), HFEngineConfig(torch_threads=1))
    tokenized = []
    real_call = type(engine.tokenizer).__call__  # chat text is tokenized by the tokenizer itself (prompt_tokens.py)
    type(engine.tokenizer).__call__ = lambda self, *a, **k: tokenized.append(1) or real_call(self, *a, **k)
    try:
        started = time.perf_counter()
        with pytest.raises(InvalidRequestError, match="max_prompt_chars"):
            asyncio.run(engine.generate(_chat("x" * 18_000_000), SamplingConfig(max_tokens=2)))
        assert time.perf_counter() - started < 1.0 and tokenized == []
        asyncio.run(engine.generate(_chat("fine"), SamplingConfig(max_tokens=2)))
        assert tokenized == [1]
    finally:
        type(engine.tokenizer).__call__ = real_call
        asyncio.run(engine.close())


def test_a_slow_prompt_does_not_hold_the_batch_in_flight(engine):
    """A prompt being prepared (images decoded, tokenized) does not stop another request's batch."""

    async def scenario():
        slow = asyncio.ensure_future(engine.generate(_chat("1 + 2 = 3. " * 20_000), SamplingConfig(max_tokens=2)))
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        await engine.generate(_chat("hi"), SamplingConfig(max_tokens=2))
        small = time.perf_counter() - started
        with pytest.raises(InvalidRequestError):  # 220k characters: over the tiny model's 32k tokens
            await slow
        return small, time.perf_counter() - started

    small, slow_done = asyncio.run(scenario())
    assert small < slow_done, (small, slow_done)
