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

API_KEY = "fuzz-key-1"
APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": 50176, "max_model_len": 2048},
    "engine": {"max_batch_size": 8, "torch_threads": 1},
    "sampling": {"max_tokens": 8},
    "policy": {"max_attempts": 2},
    # a judge (the served engine itself) on every /v1/solve the rules cannot decide
    "verifier": {"workers": 1, "judge": {"cache_path": None, "max_tokens": 8}},
    "resources": {"num_cpus": 0.5},
    "serve": {
        "max_tokens_limit": 16, "max_request_bytes": 1024 * 1024, "api_keys": [API_KEY], "docs_public": True,
        "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1},
    },
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


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


def _operations(base_url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return [(path, method.upper()) for path, methods in spec["paths"].items() for method in methods]


def test_the_schema_lists_every_route(base_url):
    operations = set(_operations(base_url))
    expected = {("/v1/chat/completions", "POST"), ("/v1/completions", "POST"), ("/v1/solve", "POST"), ("/v1/models", "GET"),
                ("/health", "GET"), ("/healthz", "GET"), ("/readyz", "GET"), ("/livez", "GET"), ("/metrics", "GET")}
    assert expected <= operations, expected - operations
    schemas = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "SolveRequest"):  # this server's limits, stated
        bounds = [o.get("maximum") for o in schemas[name]["properties"]["max_tokens"]["anyOf"] if o.get("type") == "integer"]
        assert bounds == [APP_CONFIG["serve"]["max_tokens_limit"]], (name, bounds)
    assert schemas["SolveRequest"]["properties"]["images"]["maxItems"] == 8
    assert "content" in schemas["ChatMessage"]["required"]  # null content is refused: the schema says so


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_over_every_operation_with_a_key_never_gets_a_server_error(base_url, mode):
    """Every operation in the app's own /openapi.json, with the API key sent (so bodies reach the
    model and the judge), valid and schema-breaking cases; then the same without a key: 401s."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation.modes import GenerationMode

    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    counts: dict[str, list[int]] = {}
    for path, method in _operations(base_url):
        operation = schema[path][method]
        calls = counts.setdefault(f"{method} {path}", [])
        examples = 25 if method == "POST" else 5

        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def fuzz(case):
            response = case.call(base_url=base_url, headers=AUTH, timeout=120)
            calls.append(response.status_code)
            _assert_openai_answer(response)
            if "json" in response.headers.get("content-type", ""):
                case.validate_response(response)  # the body and its status are the ones /openapi.json documents

        try:
            fuzz()
        except Exception as exc:
            if "Unsatisfiable" in type(exc).__name__ or "cannot generate" in str(exc).lower():
                continue  # nothing to break in an operation without parameters (negative mode)
            raise
    print(f"schemathesis {mode}: " + ", ".join(f"{op} {len(c)} calls, statuses {sorted(set(c))}" for op, c in counts.items()))
    posts = [c for op, c in counts.items() if op.startswith("POST")]
    assert all(len(c) >= 10 for c in posts), counts
    if mode == "negative":
        assert all(400 <= c < 500 for calls in posts for c in calls), counts
    else:
        assert all(any(200 <= c < 300 for c in calls) for calls in posts), counts
    assert httpx.get(f"{base_url}/v1/models", headers=AUTH, timeout=30).status_code == 200


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
        response = httpx.post(f"{base_url}/v1/chat/completions", json=payload, headers=AUTH, timeout=120)
        _assert_openai_answer(response)

    fuzz()


@pytest.mark.parametrize("prompt", ["", ["x", ""], [], ["", ""]])
def test_empty_prompts_are_refused_as_vllm_refuses_them(base_url, prompt):
    response = httpx.post(f"{base_url}/v1/completions", json={"prompt": prompt, "max_tokens": 2}, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error" and "empty" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe-not-ascii", b"Bearer fuzz-key-1\xe9", "Bearer ключ".encode(), b"Bearer", b"Basic Zm9vOmJhcg==", b"Bearer two words"],
)
@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/solve"), ("POST", "/v1/completions")])
def test_malformed_or_non_ascii_api_keys_are_a_401(base_url, authorization, method, path):
    response = httpx.request(method, f"{base_url}{path}", headers=[(b"authorization", authorization)], json={}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_integer_valued_floats_are_integers_as_vllm_reads_them(base_url):
    chat = {"messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 3.0, "n": 2.0, "seed": 7.0}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=chat, headers=AUTH, timeout=60)
    assert response.status_code == 200 and len(response.json()["choices"]) == 2, response.text
    assert response.json()["usage"]["completion_tokens"] <= 6
    legacy = httpx.post(f"{base_url}/v1/completions", json={"prompt": "a", "max_tokens": 2.0, "logprobs": 1.0}, headers=AUTH, timeout=60)
    assert legacy.status_code == 200 and legacy.json()["choices"][0]["logprobs"] is not None, legacy.text
    for bad in (2.5, "2", True):
        refused = httpx.post(f"{base_url}/v1/chat/completions", json={**chat, "n": bad}, headers=AUTH, timeout=60)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "n", (bad, refused.text)


def test_an_sse_event_is_one_line_for_readers_that_split_like_str_splitlines():
    """The untrained model writes U+0085 and U+2028 (so may any model): json.dumps keeps them raw,
    and httpx's iter_lines, like str.splitlines, broke such an event in two (JSONDecodeError in a
    client reading /v1/solve streams under the soak of benchmarks/serve_kill_soak.py)."""
    from qvq_ray.serve.ingress import _sse

    text = "a\x85b\u2028c\u2029d\x0be\x1cf é 数 \\u2028"
    event = _sse({"choices": [{"delta": {"content": text}}]})
    lines = [line for line in event.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("data: ")
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["content"] == text
