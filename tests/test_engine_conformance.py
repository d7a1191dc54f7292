"""One conformance suite every engine passes: the Engine contract, held the same way for all.

- hf: the transformers engine in this process (tiny Qwen2-VL);
- openai: the OpenAI-compatible engine against OUR OWN Serve app over real HTTP on 127.0.0.1
  (ingress -> engine deployment -> transformers engine), started on the session's Ray cluster;
- vllm: the vLLM engine; runs only where CUDA and vLLM are present (skipped here). On a GPU host:
  `python -m pytest tests/test_engine_conformance.py -k vllm -q` (model from $QVQ_VLLM_TEST_MODEL,
  default the tiny checkpoint).

The contract: temperature 0 is deterministic and seeds are honoured; finish reasons are 'length'
at max_tokens and 'stop' on a stop string; token counts are exact (the prompt's visual tokens
included); `n` returns n samples; `stream` yields non-empty text deltas in order and then
exactly one final Completion, agreeing with `generate`, whose text the deltas join to (stop
strings included); closing a stream early leaves the engine serving; bad input raises
InvalidRequestError and the engine keeps serving.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from qvq_ray.config import QVQ_SYSTEM_PROMPT, HFEngineConfig, ModelConfig, OpenAIEngineConfig, SamplingConfig, VLLMEngineConfig
from qvq_ray.engines.base import Completion, InvalidRequestError
from tests.conftest import png_bytes, running_app

MAX_IMAGES = 2
MAX_PIXELS = 200704  # 256 x 28^2
# 112 x 56 px = 4 x 2 patches of 28 px -> 8 visual tokens, plus <|vision_start|> and <|vision_end|>.
IMAGE_PROMPT_TOKENS = 8 + 2


def _vllm_available() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


ENGINES = [
    "hf",
    pytest.param("openai", marks=pytest.mark.slow),  # through our own Serve app on the Ray cluster
    pytest.param("vllm", marks=pytest.mark.skipif(not _vllm_available(), reason="needs CUDA and vLLM")),
]


def messages(text: str, images: list[bytes] = ()) -> list[dict]:
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": text}]
    return [
        {"role": "system", "content": [{"type": "text", "text": QVQ_SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]


@pytest.fixture(scope="module")
def loop():
    """One event loop for the module: vLLM's AsyncLLM binds its output handler to the first loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def serve_url(ray_cluster):
    """Our own Serve app (tiny model, transformers engine) on 127.0.0.1, as tests/test_serve.py starts it."""
    app_config = {
        "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": MAX_PIXELS, "max_images_per_prompt": MAX_IMAGES},
        "engine": {"max_batch_size": 4, "torch_threads": 1},
        "verifier": {"workers": 1},
        "resources": {"num_cpus": 0.5},
        "serve": {"ingress_num_cpus": 0.25},
    }
    with running_app(app_config, "qvq-conformance") as url:
        yield url


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tiny_model_dir, loop):
    kind = request.param
    if kind == "hf":
        from qvq_ray.engines.hf_engine import HFEngine

        engine = HFEngine(
            ModelConfig(path=tiny_model_dir, max_pixels=MAX_PIXELS, max_images_per_prompt=MAX_IMAGES),
            HFEngineConfig(max_batch_size=4, batch_wait_ms=5),
        )
    elif kind == "openai":
        from qvq_ray.engines.openai_engine import OpenAIEngine

        url = request.getfixturevalue("serve_url")
        engine = OpenAIEngine(
            ModelConfig(path="qvq-tiny"),
            OpenAIEngineConfig(base_url=f"{url}/v1", api_key="unused", max_retries=1),
        )
    else:
        from qvq_ray.config import ResourcesConfig
        from qvq_ray.engines.vllm_engine import VLLMEngine

        path = os.environ.get("QVQ_VLLM_TEST_MODEL", tiny_model_dir)
        engine = VLLMEngine(
            ModelConfig(path=path, max_pixels=MAX_PIXELS, max_images_per_prompt=MAX_IMAGES, max_model_len=4096),
            VLLMEngineConfig(max_batch_size=16, gpu_memory_utilization=0.3, enforce_eager=True),
            ResourcesConfig(),
        )
    yield engine
    loop.run_until_complete(engine.close())


@pytest.fixture(scope="module")
def run(loop):
    return loop.run_until_complete


def collect(run, agen) -> list:
    async def go():
        return [item async for item in agen]

    return run(go())


GREEDY = SamplingConfig(max_tokens=16)
IMAGE = png_bytes("12 + 30")


def test_temperature_zero_is_deterministic_and_sees_the_image(engine, run):
    a = run(engine.generate(messages("What is the result?", [IMAGE]), GREEDY))
    b = run(engine.generate(messages("What is the result?", [IMAGE]), GREEDY))
    other = run(engine.generate(messages("What is the result?", [png_bytes("95 - 17")]), GREEDY))
    assert len(a) == 1 and isinstance(a[0], Completion)
    assert a[0].text and a[0].text == b[0].text
    assert other[0].text != a[0].text  # the image reaches the model


def test_seed_is_honoured(engine, run):
    msg = messages("Count the shapes.", [png_bytes("o o o")])
    seeded = SamplingConfig(temperature=1.0, seed=11, max_tokens=12)
    a = run(engine.generate(msg, seeded))[0].text
    b = run(engine.generate(msg, seeded))[0].text
    c = run(engine.generate(msg, seeded.model_copy(update={"seed": 12})))[0].text
    assert a == b
    assert c != a


def test_length_finish_and_exact_token_counts(engine, run):
    with_image = run(engine.generate(messages("Describe it.", [IMAGE]), SamplingConfig(max_tokens=5)))[0]
    text_only = run(engine.generate(messages("Describe it."), SamplingConfig(max_tokens=5)))[0]
    assert with_image.finish_reason == "length" and with_image.completion_tokens == 5
    assert with_image.prompt_tokens - text_only.prompt_tokens == IMAGE_PROMPT_TOKENS
    assert text_only.prompt_tokens > 20  # the system prompt is counted
    assert with_image.latency_s > 0


def test_stop_string_ends_with_stop_and_is_cut(engine, run):
    msg = messages("What is the result?", [IMAGE])
    full = run(engine.generate(msg, SamplingConfig(max_tokens=24)))[0]
    # Any two characters the sample contains (not at its start), multi-byte ones included.
    stop = next(s for k in range(2, len(full.text) - 1) if (s := full.text[k : k + 2]).strip() and full.text.find(s) >= 2)
    cut = full.text.find(stop)
    out = run(engine.generate(msg, SamplingConfig(max_tokens=24, stop=[stop])))[0]
    assert out.finish_reason == "stop"
    assert out.text == full.text[:cut]
    assert 0 < out.completion_tokens < full.completion_tokens


def test_n_samples(engine, run):
    msg = messages("Count the shapes.", [png_bytes("o o o")])
    sampled = SamplingConfig(temperature=1.0, seed=5, n=3, max_tokens=8)
    first = run(engine.generate(msg, sampled))
    again = run(engine.generate(msg, sampled))
    assert len(first) == 3
    assert [c.text for c in first] == [c.text for c in again]
    assert len({c.text for c in first}) > 1
    assert len({c.prompt_tokens for c in first}) == 1 and first[0].prompt_tokens > 0
    for c in first:
        assert c.finish_reason in ("stop", "length") and 1 <= c.completion_tokens <= 8
    greedy_one = run(engine.generate(msg, SamplingConfig(max_tokens=8)))[0]
    greedy_two = run(engine.generate(msg, SamplingConfig(max_tokens=8, n=2)))
    assert [c.text for c in greedy_two] == [greedy_one.text] * 2


def stream_items(run, engine, msg, sampling) -> tuple[list[str], Completion]:
    """One `Engine.stream`, held to the contract: non-empty str deltas, then exactly one
    Completion, last; the deltas joined are its text."""
    items = collect(run, engine.stream(msg, sampling))
    assert items and isinstance(items[-1], Completion)
    deltas, final = items[:-1], items[-1]
    assert all(isinstance(d, str) and d for d in deltas)  # no second Completion, no empty delta
    assert "".join(deltas) == final.text
    return deltas, final


def test_streaming_yields_ordered_deltas_then_one_final_completion(engine, run):
    msg = messages("What is the result?", [IMAGE])
    full = run(engine.generate(msg, GREEDY))[0]
    deltas, final = stream_items(run, engine, msg, GREEDY)
    assert len(deltas) > 1 and final.text == full.text
    assert (final.finish_reason, final.completion_tokens, final.prompt_tokens) == (
        full.finish_reason,
        full.completion_tokens,
        full.prompt_tokens,
    )
    with pytest.raises(InvalidRequestError):
        collect(run, engine.stream(msg, SamplingConfig(max_tokens=4, n=2, temperature=1.0)))


def test_streaming_stops_at_a_stop_string_like_generate(engine, run):
    msg = messages("What is the result?", [IMAGE])
    full = run(engine.generate(msg, SamplingConfig(max_tokens=24)))[0]
    stop = next(s for k in range(2, len(full.text) - 1) if (s := full.text[k : k + 2]).strip() and full.text.find(s) >= 2)
    sampling = SamplingConfig(max_tokens=24, stop=[stop])
    expected = run(engine.generate(msg, sampling))[0]
    _, final = stream_items(run, engine, msg, sampling)  # no delta runs past the stop string
    assert (final.text, final.finish_reason) == (expected.text, "stop") and stop not in final.text


def test_closing_a_stream_early_leaves_the_engine_serving(engine, run):
    msg = messages("Describe it.", [IMAGE])

    async def first_delta_then_close():
        agen = engine.stream(msg, SamplingConfig(max_tokens=64))
        first = await anext(agen)
        await agen.aclose()  # aborts the request on the engine
        return first

    assert isinstance(run(first_delta_then_close()), str)
    assert run(engine.generate(msg, SamplingConfig(max_tokens=4)))[0].completion_tokens == 4


def test_serve_client_stream_cancels_the_replica_call_when_closed_early():
    """`QvqEngineClient` (the ingress's engine) keeps the close-aborts rule across the Serve hop:
    closing its stream cancels the handle call, which stops the replica's `QvqEngine.stream` and
    so the engine's request; a stream read to its end is not cancelled."""
    from types import SimpleNamespace

    from qvq_ray.serve.engine_deployment import QvqEngineClient

    class StreamingResponseFake:
        """ray.serve.handle.DeploymentResponseGenerator: an async iterator with `cancel()`."""

        def __init__(self):
            self.items = ["a", "b", Completion(text="ab", finish_reason="stop")]
            self.cancelled = False

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.items:
                raise StopAsyncIteration
            return self.items.pop(0)

        def cancel(self):
            self.cancelled = True

    responses: list[StreamingResponseFake] = []

    def remote(messages, sampling):
        responses.append(StreamingResponseFake())
        return responses[-1]

    handle = SimpleNamespace(options=lambda stream: SimpleNamespace(stream=SimpleNamespace(remote=remote)))
    client = QvqEngineClient(handle, "qvq-tiny")

    async def go():
        agen = client.stream(messages("?"), GREEDY)
        assert await anext(agen) == "a"
        await agen.aclose()
        return [item async for item in client.stream(messages("?"), GREEDY)]

    whole = asyncio.run(go())
    assert [r.cancelled for r in responses] == [True, False] and whole[-1].text == "ab"


def test_bad_input_raises_invalid_request_and_engine_keeps_serving(engine, run):
    truncated_png = png_bytes()[:60]
    with pytest.raises(InvalidRequestError, match="(?i)image"):
        run(engine.generate(messages("?", [truncated_png]), SamplingConfig(max_tokens=4)))
    with pytest.raises(InvalidRequestError, match="(?i)image"):
        run(engine.generate(messages("?", [IMAGE] * (MAX_IMAGES + 1)), SamplingConfig(max_tokens=4)))
    bad_part = [{"role": "user", "content": [{"type": "audio", "audio": b"..."}]}]
    with pytest.raises(InvalidRequestError, match="audio"):
        run(engine.generate(bad_part, SamplingConfig(max_tokens=4)))
    ok = run(engine.generate(messages("2+2?"), SamplingConfig(max_tokens=4)))
    assert ok[0].completion_tokens > 0


SPECIAL_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def _engine_tokenizer(engine, tiny_model_dir):
    """The tokenizer of the model behind `engine` (the openai one asks our own app: the tiny model's)."""
    processor = getattr(engine, "processor", None)
    if processor is not None:
        return processor.tokenizer
    from qvq_ray.models.processor import load_processor

    return load_processor(tiny_model_dir).tokenizer


def test_special_tokens_typed_in_text_are_text(engine, run, tiny_model_dir):
    """A model special token typed in message text is answered (never a hang, never a 500) and is
    read as the characters typed: the prompt grows by exactly their text tokens, the image's visual
    tokens stay what the image needs."""
    tok = _engine_tokenizer(engine, tiny_model_dir)
    sampling = SamplingConfig(max_tokens=2)

    def prompt_tokens(text: str, images: list[bytes]) -> int:
        return run(asyncio.wait_for(engine.generate(messages(text, images), sampling), 60))[0].prompt_tokens

    def text_tokens(text: str) -> int:
        return len(tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    for images in ([IMAGE], []):
        plain = prompt_tokens("what is here", images)
        for token in SPECIAL_TOKENS:
            typed = f"what is {token} here"
            assert prompt_tokens(typed, images) == plain - text_tokens("what is here") + text_tokens(typed), (token, len(images))


def test_health_is_read_without_generating_and_logprobs_match_the_tokens(engine, run):
    """Every engine reports its state at once (a probe never queues a generation), and one that
    supports logprobs gives one entry per generated token, the greedy token first among the top."""
    from qvq_ray.engines.base import EngineHealth

    health = run(engine.health())
    assert isinstance(health, EngineHealth) and health.alive and health.reason is None
    run(engine.check_health())
    (completion,) = run(engine.generate(messages("What is the result?", [IMAGE]), SamplingConfig(max_tokens=6, logprobs=2)))
    assert completion.logprobs is not None and len(completion.logprobs) == completion.completion_tokens
    assert all(step.top_logprobs and step.top_logprobs[0].token == step.token for step in completion.logprobs)
