"""Fuzzers against the live Serve app on 127.0.0.1: bounded, seeded, 0 server errors.

schemathesis generates request bodies from the app's own /openapi.json (valid ones, and invalid
ones that break the schema); hypothesis generates valid-shaped chat requests across the sampling
parameters. Every answer is a 2xx or a 4xx in OpenAI's error shape, no stream ends in a server
error, and the app keeps serving.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import running_app

APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": 50176, "max_model_len": 2048},
    "engine": {"max_batch_size": 8, "torch_threads": 1},
    "sampling": {"max_tokens": 8},
    "policy": {"max_attempts": 2},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {"max_tokens_limit": 16, "max_request_bytes": 1024 * 1024, "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    with running_app(APP_CONFIG, "qvq-fuzz") as url:
        yield url


def _assert_openai_answer(response) -> None:
    """2xx, or a 4xx whose body is OpenAI's error object; a stream never carries a server error."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["type"] == "invalid_request_error", error
    elif "text/event-stream" in str(response.headers.get("content-type", "")):  # schemathesis: a list
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", response.text[-300:]
        for event in events[:-1]:
            assert "error" not in json.loads(event) or json.loads(event)["error"]["type"] != "server_error", event


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/solve"])
def test_schemathesis_bodies_from_the_apps_own_schema_never_get_a_server_error(base_url, path, mode):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation.modes import GenerationMode

    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    operation = schemathesis.openapi.from_dict(spec)[path]["POST"]
    calls = []

    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def fuzz(case):
        response = case.call(base_url=base_url, timeout=120)
        calls.append(response.status_code)
        _assert_openai_answer(response)

    fuzz()
    assert len(calls) >= 10
    if mode == "negative":
        assert all(400 <= c < 500 for c in calls), calls
    assert httpx.get(f"{base_url}/v1/models", timeout=30).status_code == 200


def test_hypothesis_sampling_parameters_never_get_a_server_error(base_url):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    floats = st.floats(allow_nan=False, allow_infinity=False)
    optional = lambda s: st.none() | s  # noqa: E731
    body = st.fixed_dictionaries(
        {"messages": st.just([{"role": "user", "content": "2+2?"}])},
        optional={
            "temperature": optional(st.sampled_from([0.0, 1e-300, 1e-38, 1e-6, 1e-5, 0.5, 1.0, 2.0]) | floats),
            "top_p": optional(st.sampled_from([1e-300, 1e-9, 0.5, 1.0]) | floats),
            "top_k": optional(st.integers(-5, 10**20)),
            "max_tokens": optional(st.integers(-2, 40)),
            "n": optional(st.integers(0, 20)),
            "seed": optional(st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1]) | st.integers()),
            "repetition_penalty": optional(st.sampled_from([1e-300, 0.01, 1.0, 100.0, 1e300]) | floats),
            "stop": optional(st.text(max_size=8) | st.lists(st.text(max_size=6), max_size=6)),
            "stream": st.booleans(),
        },
    )

    @settings(max_examples=100, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(payload=body)
    def fuzz(payload):
        response = httpx.post(f"{base_url}/v1/chat/completions", json=payload, timeout=120)
        _assert_openai_answer(response)

    fuzz()
