"""The Serve app over real HTTP on 127.0.0.1: the real `openai` client, the real tiny model."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import free_port, png_bytes

APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": 200704},
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
