"""The Serve app over real HTTP on 127.0.0.1: the real `openai` client, the real tiny model."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import free_port, png_bytes

APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": 200704, "max_model_len": 4096},
    "engine": {"max_batch_size": 4, "torch_threads": 1},
    "sampling": {"max_tokens": 24},
    "policy": {"max_attempts": 2},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {
        "ingress_num_cpus": 0.25,
        "engine_autoscaling": {"min_replicas": 1, "max_replicas": 2},
        "api_keys": ["test-key"],
        "max_request_bytes": 2 * 1024 * 1024,
    },
    "images": {"max_pixels_decoded": 4_000_000},
}
AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    from ray import serve

    from qvq_ray.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config": APP_CONFIG}), name="qvq-test", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(base_url):
    from openai import OpenAI

    return OpenAI(base_url=f"{base_url}/v1", api_key="test-key", max_retries=0, timeout=60)


def _image_part(image: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}


def _image_message(text="What is the result?", image=None):
    url = "data:image/png;base64," + base64.b64encode(image or png_bytes("12 + 30")).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def test_models_and_health(base_url, client):
    assert [m.id for m in client.models.list().data] == ["qvq-tiny"]
    assert httpx.get(f"{base_url}/healthz", timeout=60).json()["status"] == "ok"


def test_chat_with_image_n_and_stream(client):
    first = client.chat.completions.create(model="qvq-tiny", messages=_image_message(), max_tokens=16)
    again = client.chat.completions.create(model="qvq-tiny", messages=_image_message(), max_tokens=16)
    other = client.chat.completions.create(model="qvq-tiny", messages=_image_message(image=png_bytes("95 - 17")), max_tokens=16)
    text = first.choices[0].message.content
    assert text and text == again.choices[0].message.content  # greedy is deterministic
    assert other.choices[0].message.content != text  # the image reaches the model
    assert first.usage.completion_tokens == 16 or first.choices[0].finish_reason == "stop"
    assert first.usage.prompt_tokens > 20  # system prompt + visual tokens

    two = client.chat.completions.create(model="qvq-tiny", messages=_image_message(), max_tokens=8, n=2, temperature=1.0, seed=3)
    assert len(two.choices) == 2 and [c.index for c in two.choices] == [0, 1]

    chunks = list(client.chat.completions.create(model="qvq-tiny", messages=_image_message(), max_tokens=16, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_solve_returns_verified_solution_with_attempts(base_url):
    image = base64.b64encode(png_bytes("40 + 2")).decode()
    response = httpx.post(
        f"{base_url}/v1/solve", json={"id": "p1", "question": "What is the result?", "images": [image]}, headers=AUTH, timeout=120
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "p1" and body["mode"] == "self"
    assert 1 <= len(body["attempts"]) <= 2
    for attempt in body["attempts"]:
        assert attempt["completion_tokens"] > 0 and "issues" in attempt["verdict"]


@pytest.mark.parametrize(
    "payload, status, needle",
    [
        (b"{not json", 400, "not valid JSON"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, 400, "bad image"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]}, 400, "local image files are disabled"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}]}]}, 400, "bad image"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
        ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "not served"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "lots"}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": [1]}, 400, "temperature"),
        ({"messages": "hello"}, 400, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not-base64@@"}}]}]}, 400, "bad image"),
        ({"messages": [{"role": "user", "content": [_image_part(png_bytes("1", (3000, 3000)))]}]}, 400, "pixels"),
        ({"messages": [{"role": "user", "content": [_image_part(png_bytes())] * 9}]}, 400, "images"),
        # what fuzzers and hostile clients send (issue 12): each a 4xx naming the problem
        (b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "NaN is not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', 400, "Infinity is not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', 400, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "stream"),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": 2**64, "temperature": 1.0}, 400, "seed"),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": -(2**63) - 1, "temperature": 1.0}, 400, "seed"),
        ({"messages": [{"role": "user", "content": "hi"}], "repetition_penalty": 1e-300, "temperature": 1.0}, 400, "repetition_penalty"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": "x" * 500_000}, 400, "stop"),
        ({"messages": [{"role": "user", "content": "x" * 300_000}]}, 400, "max_prompt_chars"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "'tools' is not supported"),
        ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400, "'logprobs' is not supported"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
    ],
)
def test_malformed_chat_requests_get_openai_errors_and_service_keeps_serving(base_url, client, payload, status, needle):
    kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    response = httpx.post(f"{base_url}/v1/chat/completions", timeout=60, headers=AUTH, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"
    ok = client.chat.completions.create(model="qvq-tiny", messages=[{"role": "user", "content": "2+2?"}], max_tokens=4)
    assert ok.choices[0].message.content is not None


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"question": "Pick one", "choices": [f"option {i}" for i in range(27)]}, "choices"),
        ({"question": "How far?", "tolerance": -1}, "tolerance"),
        ({"question": "How far?", "stream": "yes"}, "stream"),
        ({"question": "How far?", "max_attempts": 0}, "max_attempts"),
        ({"question": "x" * 300_000}, "max_prompt_chars"),
    ],
)
def test_solve_mistakes_are_400s(base_url, payload, needle):
    response = httpx.post(f"{base_url}/v1/solve", json=payload, headers=AUTH, timeout=60)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]


def test_tiny_temperature_is_greedy_not_a_500(client):
    """temperature in (0, 1e-5) divides logits into inf/NaN; it is greedy, as in vLLM."""
    messages = [{"role": "user", "content": "2+2?"}]
    tiny = client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=6, temperature=1e-38, seed=3)
    greedy = client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=6, temperature=0)
    assert tiny.choices[0].message.content == greedy.choices[0].message.content


def test_http_errors_carry_their_headers(base_url):
    wrong_method = httpx.get(f"{base_url}/v1/chat/completions", headers=AUTH, timeout=60)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    no_key = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": []}, timeout=60)
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"].startswith("Bearer")


def test_a_body_over_the_limit_is_refused_from_its_content_length(base_url):
    """413 before the body is read: the server answers while the client has sent almost nothing."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: 120000000\r\n\r\n{"
        )
        reply = conn.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and "exceeds the limit" in reply


def test_docs_and_openapi_need_a_key_when_keys_are_set_and_document_request_bodies(base_url):
    assert httpx.get(f"{base_url}/openapi.json", timeout=60).status_code == 401
    assert httpx.get(f"{base_url}/docs", timeout=60).status_code == 401
    docs = httpx.get(f"{base_url}/docs", headers=AUTH, timeout=60)
    assert docs.status_code == 200 and "openapi.json" in docs.text
    spec = httpx.get(f"{base_url}/openapi.json", headers=AUTH, timeout=60).json()
    for path, model in (("/v1/chat/completions", "ChatCompletionRequest"), ("/v1/solve", "SolveRequest")):
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
    chat = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert {"messages", "temperature", "seed", "stop", "stream"} <= set(chat["properties"])
    assert spec["components"]["schemas"]["SolveRequest"]["properties"]["choices"]["maxItems"] == 26


def test_stream_refuses_a_bad_prompt_with_a_status_and_honours_include_usage(base_url, client):
    too_long = {"messages": [{"role": "user", "content": "12 + 30 = 42. " * 3000}], "stream": True}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=too_long, headers=AUTH, timeout=60)
    assert response.status_code == 400 and "exceeds the model's limit" in response.json()["error"]["message"]
    messages = [{"role": "user", "content": "2+2?"}]
    plain = list(client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=4, stream=True))
    assert all(getattr(c, "usage", None) is None for c in plain)
    with_usage = list(
        client.chat.completions.create(
            model="qvq-tiny", messages=messages, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens >= 1
    assert with_usage[-2].choices[0].finish_reason in ("stop", "length")


def test_solve_refuses_gold(base_url):
    response = httpx.post(f"{base_url}/v1/solve", json={"question": "What is 1+1?", "answer": "2"}, headers=AUTH, timeout=60)
    assert response.status_code == 400
    assert "gold answers are not accepted" in response.json()["error"]["message"]


def test_api_keys_are_required_when_configured(base_url):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    missing = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
    wrong = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}, timeout=60)
    for response in (missing, wrong):
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{base_url}/v1/models", timeout=60).status_code == 401
    assert httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=60).status_code == 200


def test_request_too_large_gets_413(base_url):
    huge = {"messages": [{"role": "user", "content": "x" * (3 * 1024 * 1024)}]}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=huge, headers=AUTH, timeout=60)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]["message"]


def test_solve_streams_one_event_per_attempt(base_url):
    import json

    events = []
    with httpx.stream(
        "POST", f"{base_url}/v1/solve", json={"question": "What is 2 + 2?", "max_attempts": 2, "stream": True}, headers=AUTH, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "solution" and kinds[:-1] == ["attempt"] * (len(kinds) - 1) and len(kinds) >= 2
    assert len(events[-1]["solution"]["attempts"]) == len(kinds) - 1
