"""/metrics under vLLM's names: time to first token, inter-token latency, end-to-end latency (a
stream's to its last byte), queue time, tokens per sample, successes by finish reason, measured at
the engine (carried back on each Completion) and at the ingress; parsed with prometheus_client's
own text parser."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import httpx
import pytest

from qvq_ray.engines.base import Completion
from qvq_ray.engines.timing import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS, timing_from_token_times
from tests.conftest import running_app


def _families(text: str) -> dict:
    """name -> {(sample name, sorted labels): value}, with prometheus_client's parser (it refuses malformed text)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for family in text_string_to_metric_families(text):
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(families: dict, family: str, sample: str, **labels) -> float:
    return families.get(family, {}).get((sample, tuple(sorted(labels.items()))), 0.0)


def _bounds(families: dict, family: str) -> list[float]:
    return sorted(float(dict(labels)["le"]) for name, labels in families[family] if name.endswith("_bucket"))


def test_token_times_become_bucket_counts_and_a_sum():
    timing = timing_from_token_times(10.0, [10.5, 10.51, 10.6, 13.0], queue_s=0.2)
    assert timing.ttft_s == pytest.approx(0.5) and timing.e2e_s == pytest.approx(3.0) and timing.queue_s == 0.2
    assert timing.itl_count == 3 and timing.itl_sum_s == pytest.approx(2.5)
    assert len(timing.itl_counts) == len(ITL_BUCKETS) + 1
    assert timing.itl_counts[ITL_BUCKETS.index(0.01)] == 1  # 0.01 s is in the le="0.01" bucket
    assert timing.itl_counts[ITL_BUCKETS.index(0.1)] == 1 and timing.itl_counts[ITL_BUCKETS.index(2.5)] == 1
    assert timing_from_token_times(1.0, []).ttft_s is None and timing_from_token_times(1.0, [2.0]).itl_count == 0


def test_samples_render_under_vllms_names_buckets_and_model_label():
    from qvq_ray.serve.metrics import ServeMetrics

    metrics = ServeMetrics("qvq-tiny", max_model_len=4096)
    timed = Completion(
        text="abc", finish_reason="length", prompt_tokens=7, completion_tokens=4,
        timing=timing_from_token_times(0.0, [0.1, 0.2, 0.3, 0.4], queue_s=0.05),
    )
    untimed = Completion(text="", finish_reason="stop", prompt_tokens=7, completion_tokens=1)  # an engine that measures nothing
    request = SimpleNamespace(state=SimpleNamespace(arrived=time.perf_counter() - 1.0))
    metrics.clock(request, 2).finish([timed, untimed])  # n=2: one prompt, two samples
    clock = metrics.clock(request, 1)  # a stream: its first token seen at the ingress
    clock.token([0])
    clock.completions = [timed]
    clock.finish()
    families = _families(metrics.render().decode())

    model = {"model_name": "qvq-tiny"}
    assert _value(families, "vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_count", **model) == 3
    assert _value(families, "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_count", **model) == 3
    assert _value(families, "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_sum", **model) >= 3.0
    assert _value(families, "vllm:request_queue_time_seconds", "vllm:request_queue_time_seconds_count", **model) == 2
    itl = "vllm:inter_token_latency_seconds"
    assert _value(families, itl, itl + "_count", **model) == 6  # 3 gaps per timed sample
    assert _value(families, itl, itl + "_sum", **model) == pytest.approx(0.6)
    assert _value(families, itl, itl + "_bucket", le="+Inf", **model) == 6
    assert _value(families, "vllm:prompt_tokens", "vllm:prompt_tokens_total", **model) == 14  # once per prompt
    assert _value(families, "vllm:generation_tokens", "vllm:generation_tokens_total", **model) == 9
    assert _value(families, "vllm:request_prompt_tokens", "vllm:request_prompt_tokens_count", **model) == 3
    assert _value(families, "vllm:request_generation_tokens", "vllm:request_generation_tokens_sum", **model) == 9
    success = "vllm:request_success"
    assert _value(families, success, success + "_total", finished_reason="length", **model) == 2
    assert _value(families, success, success + "_total", finished_reason="stop", **model) == 1
    assert ("vllm:request_success_total", (("finished_reason", "abort"), ("model_name", "qvq-tiny"))) in families[success]
    # the not-streamed TTFT is the time to the answer less the engine's decode time (0.3 s)
    ttft_sum = _value(families, "vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_sum", **model)
    assert 1.0 + 0.7 - 0.05 <= ttft_sum <= 3.0 + 0.1

    # vLLM's bucket boundaries (vllm/v1/metrics/loggers.py), +Inf last
    assert _bounds(families, "vllm:time_to_first_token_seconds") == [*TTFT_BUCKETS, float("inf")]
    assert _bounds(families, itl) == [*ITL_BUCKETS, float("inf")]
    assert _bounds(families, "vllm:e2e_request_latency_seconds") == [*REQUEST_LATENCY_BUCKETS, float("inf")]
    assert _bounds(families, "vllm:request_prompt_tokens")[:7] == [1, 2, 5, 10, 20, 50, 100]
    assert _bounds(families, "vllm:request_prompt_tokens")[-2] == 2000  # 1-2-5 up to max_model_len
    # ours beside them: the engine's own clock
    assert _value(families, "qvq_ray_engine_time_to_first_token_seconds", "qvq_ray_engine_time_to_first_token_seconds_count", **model) == 2
    assert "qvq_ray_completion_tokens" in families and "qvq_ray_request_latency_seconds" in families


def test_the_transformers_engine_times_every_token(tiny_model_dir):
    """Queue time, TTFT and one inter-token gap per generated token after the first, generated and streamed."""
    from qvq_ray.config import HFEngineConfig, ModelConfig, SamplingConfig
    from qvq_ray.engines.base import raw_prompt
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=4, batch_wait_ms=5, torch_threads=1))

    async def run():
        sampling = SamplingConfig(max_tokens=12, temperature=0.0)
        both = await asyncio.gather(
            engine.generate(raw_prompt("1 + 1 ="), sampling),
            engine.generate(raw_prompt("count: one two"), sampling.model_copy(update={"n": 2, "temperature": 1.0, "seed": 1})),
        )
        items = [item async for item in engine.stream(raw_prompt("hello"), sampling)]
        await engine.close()
        return [c for group in both for c in group] + [items[-1]]

    for completion in asyncio.run(run()):
        timing = completion.timing
        assert timing is not None and completion.completion_tokens >= 1
        assert timing.itl_count == completion.completion_tokens - 1
        assert 0 <= timing.queue_s <= timing.ttft_s <= timing.e2e_s <= completion.latency_s + 1e-6


APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_model_len": 4096},
    "engine": {"max_batch_size": 4, "batch_wait_ms": 5, "torch_threads": 1},
    "sampling": {"max_tokens": 16},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {"ingress_num_cpus": 0.25, "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}


def test_a_load_shows_in_vllms_histograms(ray_cluster):
    """N requests (chat and completions, streamed and not): TTFT, e2e, queue and per-sample token
    histograms count N; the inter-token histogram counts one gap per generated token after the
    first; a stream's e2e covers the stream as the client saw it, to its last byte."""
    model = {"model_name": "qvq-tiny"}
    with running_app(APP_CONFIG, "qvq-metrics") as base_url, httpx.Client(base_url=base_url, timeout=120) as http:
        before = _families(http.get("/metrics").text)
        generated, sent = 0, 0
        for round_ in range(2):
            for stream in (False, True):
                extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
                chat = {"messages": [{"role": "user", "content": f"count to {round_ + 3}"}], "max_tokens": 12, **extra}
                legacy = {"prompt": f"{round_} + 1 =", "max_tokens": 10, **extra}
                for route, body in (("/v1/chat/completions", chat), ("/v1/completions", legacy)):
                    if not stream:
                        reply = http.post(route, json=body)
                        assert reply.status_code == 200, reply.text
                        generated += reply.json()["usage"]["completion_tokens"]
                    else:
                        usage = None
                        with http.stream("POST", route, json=body) as reply:
                            for line in reply.iter_lines():
                                if line.startswith("data: {") and '"usage"' in line:
                                    usage = json.loads(line[6:]).get("usage") or usage
                        generated += usage["completion_tokens"]
                    sent += 1
        # one long stream, timed by the client: its e2e is at least the stream's duration as seen by the client
        e2e_before = _value(_families(http.get("/metrics").text), "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_sum", **model)
        started = time.perf_counter()
        with http.stream("POST", "/v1/completions", json={"prompt": "a b c", "max_tokens": 200, "stream": True,
                                                          "stream_options": {"include_usage": True}}) as reply:
            first_chunk = None
            for line in reply.iter_lines():
                first_chunk = first_chunk or time.perf_counter()
                if line.startswith("data: {") and '"usage"' in line and '"usage":null' not in line:
                    generated += json.loads(line[6:])["usage"]["completion_tokens"]
        last_byte = time.perf_counter()
        sent += 1
        after = _families(http.get("/metrics").text)

    def delta(family: str, suffix: str, **labels) -> float:
        return _value(after, family, family + suffix, **labels) - _value(before, family, family + suffix, **labels)

    for family in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
                   "vllm:request_prompt_tokens", "vllm:request_generation_tokens", "qvq_ray_engine_time_to_first_token_seconds"):
        assert delta(family, "_count", **model) == sent, family
    assert delta("vllm:inter_token_latency_seconds", "_count", **model) == generated - sent
    assert delta("vllm:request_generation_tokens", "_sum", **model) == generated
    assert delta("vllm:generation_tokens", "_total", **model) == generated
    reasons = sum(delta("vllm:request_success", "_total", finished_reason=r, **model) for r in ("stop", "length", "abort"))
    assert reasons == sent
    e2e_long = _value(after, "vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_sum", **model) - e2e_before
    # to the last byte, not to the headers: at least the time from the client's first chunk to its last byte
    assert e2e_long >= (last_byte - first_chunk) * 0.9, (e2e_long, last_byte - first_chunk, last_byte - started)
    assert e2e_long <= last_byte - started + 0.05
    assert _value(after, "vllm:num_requests_running", "vllm:num_requests_running", **model) == 0
