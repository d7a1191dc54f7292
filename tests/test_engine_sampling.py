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


# --------------------------------------------------------------------------- issue 22: lm-eval and load generators


def test_prompt_logprobs_come_from_the_prefill_and_agree_with_generation(engine):
    """Echo's prompt log-probabilities: the first token has none; the last prompt token's equals the
    log-probability greedy generation gave the same token after the same context."""
    from qvq_ray.engines.base import raw_prompt

    context = asyncio.run(engine.tokenize(raw_prompt("1 + 1 = 2, 2 + 2 =")))["tokens"]
    generated = asyncio.run(engine.generate(raw_prompt(context), SamplingConfig(max_tokens=1, logprobs=0)))[0]
    token = asyncio.run(engine.tokenize(raw_prompt("1 + 1 = 2, 2 + 2 =" + generated.text)))["tokens"][len(context):]
    assert len(token) == 1, "the greedy token re-tokenizes as itself"
    echoed = asyncio.run(engine.generate(raw_prompt(context + token), SamplingConfig(max_tokens=1, prompt_logprobs=2)))[0]
    steps = echoed.prompt_logprobs
    assert len(steps) == len(context) + 1 and steps[0].logprob is None and steps[0].top_logprobs == []
    assert all(s.logprob is not None and s.logprob <= 0 and len(s.top_logprobs) == 2 for s in steps[1:])
    assert steps[-1].logprob == pytest.approx(generated.logprobs[0].logprob, abs=1e-4)
    assert steps[-1].top_logprobs[0].token == steps[-1].token  # greedy picked the argmax
    assert "".join(s.token for s in steps[:-1]) == "1 + 1 = 2, 2 + 2 ="
    assert _one(engine, max_tokens=2).prompt_logprobs is None


def test_a_token_id_prompt_is_the_model_input_as_given(engine):
    from qvq_ray.engines.base import InvalidRequestError, raw_prompt

    ids = asyncio.run(engine.tokenize(raw_prompt("count: 1 2 3")))["tokens"]
    by_text = asyncio.run(engine.generate(raw_prompt("count: 1 2 3"), SamplingConfig(max_tokens=8)))[0]
    by_ids = asyncio.run(engine.generate(raw_prompt(ids), SamplingConfig(max_tokens=8)))[0]
    assert (by_ids.text, by_ids.prompt_tokens) == (by_text.text, len(ids))
    assert asyncio.run(engine.detokenize(ids)) == "count: 1 2 3"
    pad = engine.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for bad in ([5, pad], [len(engine.tokenizer)]):
        with pytest.raises(InvalidRequestError):
            asyncio.run(engine.generate(raw_prompt(bad), SamplingConfig(max_tokens=2)))


def test_streamed_deltas_carry_the_logprobs_of_their_tokens(engine):
    from qvq_ray.engines.base import TextDelta

    items = asyncio.run(_collect(engine.stream(_chat("count"), SamplingConfig(max_tokens=12, logprobs=1))))
    deltas, final = items[:-1], items[-1]
    assert deltas and all(isinstance(d, TextDelta) for d in deltas)
    streamed = [entry for d in deltas for entry in d.logprobs]
    assert [e.token for e in streamed] == [e.token for e in final.logprobs[: len(streamed)]]
    assert sum(len(d.logprobs) for d in deltas[:1]) >= 1 and len(streamed) >= final.completion_tokens - 1
    assert [d.usage[1] for d in deltas] == sorted(d.usage[1] for d in deltas) and deltas[-1].usage[0] == final.prompt_tokens


async def _collect(stream):
    return [item async for item in stream]


def test_chat_template_kwargs_reach_the_template_or_are_refused_by_name(engine):
    from qvq_ray.engines.base import InvalidRequestError
    from tests.conftest import png_bytes

    messages = [{"role": "user", "content": [{"type": "image", "image": png_bytes("1")}, {"type": "text", "text": "n?"}]}]
    plain = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=2)))[0]
    numbered = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=2, chat_template_kwargs={"add_vision_id": True})))[0]
    tokens = asyncio.run(engine.tokenize(messages, chat_template_kwargs={"add_vision_id": True}))["tokens"]
    assert numbered.prompt_tokens == len(tokens) > plain.prompt_tokens  # "Picture 1: " before the image
    with pytest.raises(InvalidRequestError, match="'enable_thinking'"):
        asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=2, chat_template_kwargs={"enable_thinking": False})))


def test_ignore_eos_generates_past_the_end_of_sequence():
    """The trained tiny model ends (EOS) early; with ignore_eos it goes on to max_tokens."""
    from qvq_ray.engines.hf_engine import HFEngine
    from tests.conftest import png_bytes

    engine = HFEngine(ModelConfig(path="tiny"), HFEngineConfig(torch_threads=1))
    messages = [{"role": "user", "content": [{"type": "image", "image": png_bytes("12 + 30")}, {"type": "text", "text": "What is the result?"}]}]
    try:
        plain = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=400)))[0]
        limit = plain.completion_tokens + 15
        ignoring = asyncio.run(engine.generate(messages, SamplingConfig(max_tokens=limit, ignore_eos=True)))[0]
        streamed = asyncio.run(_collect(engine.stream(messages, SamplingConfig(max_tokens=limit, ignore_eos=True))))[-1]
    finally:
        asyncio.run(engine.close())
    assert plain.finish_reason == "stop" and plain.completion_tokens < 380
    assert (ignoring.finish_reason, ignoring.completion_tokens) == ("length", limit)
    assert (streamed.finish_reason, streamed.completion_tokens) == ("length", limit)
    assert ignoring.text.startswith(plain.text)
