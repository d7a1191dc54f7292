"""The embedded tiny Qwen2-VL and the transformers engine (real model, real generate)."""

from __future__ import annotations

import asyncio
import json

import pytest

from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
from tests.conftest import png_bytes


def _messages(text: str, image: bytes | None = None):
    content = ([{"type": "image", "image": image}] if image else []) + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def test_make_tiny_model_is_offline_deterministic_and_in_qvq_layout(tmp_path):
    from qvq_ray.models.tiny import checkpoint_digest, make_tiny_model

    a = make_tiny_model(tmp_path / "a", seed=0)
    b = make_tiny_model(tmp_path / "b", seed=0)
    c = make_tiny_model(tmp_path / "c", seed=1)
    assert checkpoint_digest(a) == checkpoint_digest(b)
    assert checkpoint_digest(a) != checkpoint_digest(c)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json"):
        assert (a / name).exists(), name
    config = json.loads((a / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    text = config["text_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    assert json.loads((a / "tokenizer_config.json").read_text())["padding_side"] == "left"
    assert json.loads((a / "preprocessor_config.json").read_text())["patch_size"] == 14


def test_tokenizer_and_chat_template_match_qwen2vl(tiny_model_dir):
    from qvq_ray.models.processor import load_processor

    processor = load_processor(tiny_model_dir)
    tok = processor.tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    assert tok.encode("1234", add_special_tokens=False) == [tok.convert_tokens_to_ids(d) for d in "1234"]
    text = processor.apply_chat_template(_messages("What is 2+3?", b"x"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful and harmless assistant. You are Qwen developed by Alibaba.")
    assert "<|vision_start|><|image_pad|><|vision_end|>What is 2+3?<|im_end|>\n<|im_start|>assistant\n" in text


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine

    return HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=8, batch_wait_ms=20))


def test_batched_greedy_equals_single_greedy(engine):
    prompts = [(f"What is {a} + {b}?", png_bytes(f"{a} + {b}")) for a, b in [(1, 2), (35, 47), (90, 9), (7, 70), (13, 31)]]
    sampling = SamplingConfig(max_tokens=24)

    async def run():
        singles = [(await engine.generate(_messages(t, im), sampling))[0] for t, im in prompts]
        batched = await asyncio.gather(*(engine.generate(_messages(t, im), sampling) for t, im in prompts))
        return singles, [b[0] for b in batched]

    singles, batched = asyncio.run(run())
    assert [s.text for s in singles] == [b.text for b in batched]
    assert len({s.text for s in singles}) > 1, "outputs should depend on the input"
    for s in singles:
        assert s.completion_tokens > 0 and s.prompt_tokens > 10
        assert s.finish_reason in ("stop", "length")


def test_sampling_n_seed_and_lengths(engine):
    async def run():
        msg = _messages("Count the shapes.", png_bytes("o o o"))
        a = await engine.generate(msg, SamplingConfig(temperature=1.0, seed=7, n=3, max_tokens=12))
        b = await engine.generate(msg, SamplingConfig(temperature=1.0, seed=7, n=3, max_tokens=12))
        short = await engine.generate(msg, SamplingConfig(max_tokens=3))
        return a, b, short

    a, b, short = asyncio.run(run())
    assert len(a) == 3 and [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a}) > 1
    assert short[0].completion_tokens <= 3
    if short[0].completion_tokens == 3:
        assert short[0].finish_reason == "length"


def test_streaming_matches_generate_and_bad_image_fails_alone(engine):
    from qvq_ray.engines.base import InvalidRequestError

    async def run():
        msg = _messages("What is 4 + 4?", png_bytes("4 + 4"))
        *deltas, final = [item async for item in engine.stream(msg, SamplingConfig(max_tokens=16))]
        full = await engine.generate(msg, SamplingConfig(max_tokens=16))
        good, bad = await asyncio.gather(
            engine.generate(msg, SamplingConfig(max_tokens=8)),
            engine.generate(_messages("?", b"not an image"), SamplingConfig(max_tokens=8)),
            return_exceptions=True,
        )
        return deltas, final, full, good, bad

    deltas, final, full, good, bad = asyncio.run(run())
    assert "".join(deltas) == final.text == full[0].text and len(deltas) > 1
    assert all(isinstance(d, str) for d in deltas) and final.completion_tokens == full[0].completion_tokens
    assert isinstance(bad, InvalidRequestError) and "image" in str(bad)
    assert not isinstance(good, Exception) and good[0].completion_tokens > 0


@pytest.mark.parametrize("offset", [2, 5, 13])  # 13: the stop string straddles a multi-byte character
def test_stop_string_cuts_text_and_counts_only_the_tokens_up_to_it(engine, offset):
    """Any stop string, ASCII or not (one seen only after decoding does not stop `generate`)."""
    msg = _messages("What is 12 + 30?", png_bytes("12 + 30"))

    async def gen(**kwargs):
        return (await engine.generate(msg, SamplingConfig(**kwargs)))[0]

    full = asyncio.run(gen(max_tokens=24))
    stop = full.text[offset : offset + 2]
    cut = full.text.find(stop)
    out = asyncio.run(gen(max_tokens=24, stop=[stop]))
    assert out.finish_reason == "stop" and out.text == full.text[:cut]

    async def streamed():
        return [item async for item in engine.stream(msg, SamplingConfig(max_tokens=24, stop=[stop]))]

    *deltas, final = asyncio.run(streamed())
    assert "".join(deltas) == final.text == out.text  # no delta runs past the stop string
    k = out.completion_tokens
    assert stop in asyncio.run(gen(max_tokens=k)).text  # k tokens produce the stop string...
    assert k == 1 or stop not in asyncio.run(gen(max_tokens=k - 1)).text  # ...and k - 1 do not


def test_streamed_text_is_decoded_from_a_short_window(engine):
    """The streamer's deltas join to the whole decode (multi-byte characters split over tokens
    included) while each step decodes only a few recent tokens, never the whole sequence."""
    from qvq_ray.engines.hf_engine import _IncrementalDecoder

    class WindowSpy:
        def __init__(self, tokenizer):
            self.tokenizer, self.longest = tokenizer, 0

        def decode(self, tokens, **kwargs):
            self.longest = max(self.longest, len(tokens))
            return self.tokenizer.decode(tokens, **kwargs)

    tokenizer = engine.tokenizer
    text = " ".join(["résumé", "所以答案是", "\\boxed{24}", "97-73=24", "😀 done"] * 200)
    ids = tokenizer(text)["input_ids"]
    spy = WindowSpy(tokenizer)
    decoder = _IncrementalDecoder(spy)
    assert "".join(decoder.push(i) for i in ids) == tokenizer.decode(ids, skip_special_tokens=True)
    assert len(ids) > 1000 and spy.longest <= 16
