"""The vLLM engine for real, on a CUDA host (skipped without CUDA and vLLM).

One command on a GPU host (the conformance suite's vllm case runs with it):

    pip install -e '.[vllm,dev]'
    python -m pytest tests/test_vllm_engine_gpu.py tests/test_engine_conformance.py -k "vllm or gpu" -q

The model is $QVQ_VLLM_TEST_MODEL, by default the embedded tiny Qwen2-VL (built offline); point it
at a real checkpoint (e.g. Qwen/Qwen2-VL-2B-Instruct) if this vLLM build has no attention kernel
for the tiny model's head size of 16. The tensor-parallel Serve test needs 2 GPUs.
"""

from __future__ import annotations

import asyncio
import os

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
vllm = pytest.importorskip("vllm", reason="needs vLLM: pip install 'qvq-ray[vllm]'")

from qvq_ray.config import QVQ_SYSTEM_PROMPT, ModelConfig, OpenAIEngineConfig, ResourcesConfig, SamplingConfig, VLLMEngineConfig  # noqa: E402
from qvq_ray.engines.base import InvalidRequestError  # noqa: E402
from tests.conftest import png_bytes  # noqa: E402


def _messages(text, images=()):
    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": text}]
    return [{"role": "system", "content": [{"type": "text", "text": QVQ_SYSTEM_PROMPT}]}, {"role": "user", "content": content}]


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def model_path(tiny_model_dir):
    return os.environ.get("QVQ_VLLM_TEST_MODEL", tiny_model_dir)


@pytest.fixture(scope="module")
def engine(model_path, loop):
    from qvq_ray.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        ModelConfig(path=model_path, max_pixels=200704, max_images_per_prompt=2, max_model_len=4096),
        VLLMEngineConfig(max_batch_size=32, gpu_memory_utilization=0.3, enforce_eager=True),
        ResourcesConfig(num_gpus=1),
    )
    yield engine
    loop.run_until_complete(engine.close())


def test_engine_is_built_with_explicit_sampling_and_our_limits(engine):
    model_config = engine._llm.model_config
    assert model_config.generation_config == "vllm"  # the checkpoint's generation_config never applies
    assert model_config.max_model_len == 4096
    assert engine._llm.vllm_config.scheduler_config.max_num_seqs == 32


def test_continuous_batching_matches_one_at_a_time(engine, loop):
    prompts = [_messages(f"What is {a} + {b}?", [png_bytes(f"{a} + {b}")]) for a, b in [(1, 2), (35, 47), (90, 9), (7, 70), (13, 31), (2, 2)]]
    greedy = SamplingConfig(max_tokens=32)

    async def run():
        singles = [(await engine.generate(m, greedy))[0] for m in prompts]
        together = await asyncio.gather(*(engine.generate(m, greedy) for m in prompts))
        return singles, [t[0] for t in together]

    singles, together = loop.run_until_complete(run())
    same = sum(s.text == t.text for s, t in zip(singles, together))
    assert same >= len(prompts) - 1, [(s.text, t.text) for s, t in zip(singles, together)]  # bf16 kernels vary with batch shape
    assert len({s.text for s in singles}) > 1
    assert all(s.prompt_tokens > 10 and 0 < s.completion_tokens <= 32 for s in singles)


def test_n_samples_with_seed_are_all_kept_and_reproducible(engine, loop):
    msg = _messages("Count the shapes.", [png_bytes("o o o")])
    sampling = SamplingConfig(temperature=1.0, seed=5, n=6, max_tokens=16)
    a = loop.run_until_complete(engine.generate(msg, sampling))
    b = loop.run_until_complete(engine.generate(msg, sampling))
    assert len(a) == 6 and [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a}) > 1


def test_stopped_stream_aborts_its_request_and_engine_serves_on(engine, loop):
    msg = _messages("Tell a long story.", [png_bytes("story")])

    async def run():
        agen = engine.stream(msg, SamplingConfig(max_tokens=2000, temperature=1.0, seed=1))
        got = [await agen.__anext__() for _ in range(3)]
        await agen.aclose()
        await asyncio.sleep(0.5)
        processor = engine._llm.output_processor
        unfinished = processor.get_num_unfinished_requests() if hasattr(processor, "get_num_unfinished_requests") else 0
        after = await engine.generate(_messages("2+2?"), SamplingConfig(max_tokens=4))
        return got, unfinished, after

    got, unfinished, after = loop.run_until_complete(run())
    assert len(got) == 3 and all(isinstance(g, str) for g in got)
    assert unfinished == 0
    assert after[0].completion_tokens > 0


def test_prompt_longer_than_max_model_len_is_an_invalid_request(engine, loop):
    with pytest.raises(InvalidRequestError):
        loop.run_until_complete(engine.generate(_messages("1 " * 5000), SamplingConfig(max_tokens=4)))
    ok = loop.run_until_complete(engine.generate(_messages("2+2?"), SamplingConfig(max_tokens=4)))
    assert ok[0].completion_tokens > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="tensor parallel needs 2 GPUs")
def test_serve_replica_with_tensor_parallel_2_in_its_placement_group(model_path):
    """The engine deployment with TP 2: a STRICT_PACK group of 2 GPU bundles, vLLM's Ray workers in it."""
    import ray
    from ray import serve

    from qvq_ray.engines.openai_engine import OpenAIEngine
    from qvq_ray.serve.app import build_app
    from tests.conftest import free_port

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"config": {
            "model": {"path": model_path, "served_model_name": "qvq-tp2", "max_model_len": 4096, "max_pixels": 200704},
            "engine": {"kind": "vllm", "max_batch_size": 16, "gpu_memory_utilization": 0.3, "enforce_eager": True},
            "verifier": {"workers": 1},
            "resources": {"num_cpus": 1, "tensor_parallel_size": 2},
        }}), name="qvq-tp2", route_prefix="/")
        client = OpenAIEngine(ModelConfig(path="qvq-tp2"), OpenAIEngineConfig(base_url=f"http://127.0.0.1:{port}/v1"))
        out = asyncio.run(client.generate(_messages("What is 3 + 4?", [png_bytes("3 + 4")]), SamplingConfig(max_tokens=8)))
        assert out[0].completion_tokens > 0
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
