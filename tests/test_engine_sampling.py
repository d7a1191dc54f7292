"""vLLM/OpenAI sampling parameters on the transformers engine (real tiny Qwen2-VL, real generate):
log-probabilities, presence/frequency penalties, min_p, min_tokens."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig


def _chat(text: str):
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=4, torch_threads=1))
    yield engine
    asyncio.run(engine.close())


def _one(engine, text="count", **sampling):
    return asyncio.run(engine.generate(_chat(text), SamplingConfig(**sampling)))[0]


def test_greedy_logprobs_name_the_argmax_token_at_every_step(engine):
    completion = _one(engine, max_tokens=12, logprobs=3)
    assert completion.logprobs is not None and len(completion.logprobs) == completion.completion_tokens
    for step in completion.logprobs:
        assert len(step.top_logprobs) == 3
        assert step.top_logprobs[0].token == step.token and step.logprob == pytest.approx(step.top_logprobs[0].logprob)
        assert step.logprob <= 0 and sum(math.exp(t.logprob) for t in step.top_logprobs) <= 1.0 + 1e-6
        assert bytes(step.bytes).decode(errors="replace") == step.token
    assert "".join(s.token for s in completion.logprobs) == completion.text
    assert _one(engine, max_tokens=12).logprobs is None


def test_sampled_logprobs_are_of_the_sampled_tokens(engine):
    completion = _one(engine, max_tokens=16, temperature=1.0, seed=7, logprobs=0)
    assert len(completion.logprobs) == completion.completion_tokens
    assert all(step.top_logprobs == [] and step.logprob <= 0 for step in completion.logprobs)


def test_frequency_and_presence_penalties_reduce_repetition(engine):
    plain = _one(engine, max_tokens=60)
    freq = _one(engine, max_tokens=60, frequency_penalty=2.0)
    presence = _one(engine, max_tokens=60, presence_penalty=2.0)
    most = lambda c: Counter(c.text).most_common(1)[0][1] / max(1, len(c.text))  # noqa: E731
    assert freq.text != plain.text and presence.text != plain.text
    assert most(freq) < most(plain) and most(presence) < most(plain), (plain.text, freq.text, presence.text)


def test_min_p_of_one_keeps_only_the_top_token(engine):
    greedy = _one(engine, max_tokens=20)
    sampled = [_one(engine, max_tokens=20, temperature=1.5, seed=s, min_p=1.0).text for s in (1, 2)]
    assert sampled == [greedy.text, greedy.text]
    assert _one(engine, max_tokens=20, temperature=1.5, seed=1).text != greedy.text


def test_min_tokens_holds_back_the_end_of_sequence():
    """The trained tiny model answers and ends (EOS) early; min_tokens makes it go on."""
    from qvq_ray.engines.hf_engine import HFEngine
    from tests.conftest import png_bytes

    engine = HFEngine(ModelConfig(path="tiny"), HFEngineConfig(torch_threads=1))
    messages = [{"role": "user", "content": [{"type": "image", "image": png_bytes("12 + 30")}, {"type": "text", "text": "What is the result?"}]}]
    try:
        plain = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=400)))[0]
        held = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=400, min_tokens=plain.completion_tokens + 20)))[0]
    finally:
        asyncio.run(engine.close())
    assert plain.finish_reason == "stop" and plain.completion_tokens < 380
    assert held.completion_tokens >= plain.completion_tokens + 20


@pytest.mark.parametrize("model", ["trained", "tiny-random"])
def test_logprob_tokens_joined_are_the_text(engine, model):
    """However the sample ended: an end of sequence (no token text), a stop string cutting a token,
    the length limit, sampled text of the untrained model (characters split over byte tokens)."""
    from qvq_ray.engines.hf_engine import HFEngine

    subject = engine if model == "trained" else HFEngine(ModelConfig(path="tiny-random"), HFEngineConfig(torch_threads=1))
    free = _one(subject, max_tokens=60, temperature=1.0, seed=3, logprobs=2)
    stop = free.text[7:10] if len(free.text) > 12 else None
    cases = [free, _one(subject, max_tokens=60, logprobs=0), _one(subject, "x", max_tokens=3, temperature=1.0, seed=5, logprobs=1)]
    if stop:
        cases.append(_one(subject, max_tokens=60, temperature=1.0, seed=3, logprobs=2, stop=[stop]))
    for completion in cases:
        tokens = [step.token for step in completion.logprobs]
        assert "".join(tokens) == completion.text, (completion.finish_reason, tokens[-4:], completion.text[-20:])
        assert len(tokens) == completion.completion_tokens
        for step in completion.logprobs:
            assert bytes(step.bytes).decode() == step.token
            # the chosen token, when among the alternatives, reads there as it does in the text
            assert all(alt.token == step.token for alt in step.top_logprobs if alt.logprob == step.logprob)
    if stop:
        assert cases[-1].finish_reason == "stop" and stop not in cases[-1].text
