"""The Serve app over real HTTP on 127.0.0.1: the real `openai` client, the real tiny model."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import free_port, png_bytes, running_app

APP_CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny", "max_pixels": 200704, "max_model_len": 4096},
    "engine": {"max_batch_size": 4, "torch_threads": 1},
    "sampling": {"max_tokens": 24},
    "policy": {"max_attempts": 2},
    # a judge on the serving engine itself: /v1/solve asks it where the rules find no answer
    "verifier": {"workers": 1, "judge": {"cache_path": None, "max_tokens": 8}},
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
    with running_app(APP_CONFIG, "qvq-test") as url:
        yield url


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
    # the random tiny model writes no answer the rules can find: the judge (the engine deployment
    # itself) was asked to extract one, from the question and the response (no gold in mode self)
    first = body["attempts"][0]["verdict"]
    assert first["extraction"] in (None, "judge") and [n["task"] for n in first["judge"]] == ["extraction"], first
    assert first["decided_by"] == ("judge" if first["judge"][0]["outcome"] is not None else None), first
    metrics = httpx.get(f"{base_url}/metrics", timeout=30).text
    assert 'qvq_ray_judge_total{outcome=' in metrics and 'task="extraction"' in metrics, metrics[-2000:]


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
        ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}, 400, "'response_format' is not supported"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop_token_ids": [5]}, 400, "'stop_token_ids' is not supported"),
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
            f"POST {url.path}/v1/chat/completions HTTP/1.1\r\n".encode()
            + b"Host: x\r\nAuthorization: Bearer test-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: 120000000\r\n\r\n{"
        )
        reply = b""
        while b"exceeds the limit" not in reply and (chunk := conn.recv(65536)):
            reply += chunk  # headers and body may come in separate packets
    assert reply.startswith(b"HTTP/1.1 413") and b"exceeds the limit" in reply


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


def test_the_engine_deployment_hands_the_ingress_its_tokenizer_and_context(base_url):
    """The ingress's screen (EngineScreen) is built from what an engine replica says: its own
    tokenizer's definition and the context of this app (model.max_model_len 4096)."""
    from ray import serve

    from qvq_ray.engines.context_bound import ContextScreen, ScreenSource

    engine = serve.get_deployment_handle("QvqEngine", app_name="qvq-test")
    source = ScreenSource(**engine.context_screen_source.remote().result(timeout_s=60))
    assert source.max_model_len == 4096
    screen = ContextScreen.from_source(source)
    assert screen is not None and screen.counter("12 + 30 = 42. " * 10) > 10
    screen.close()


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


def test_stream_with_n_streams_each_choice_by_index(client):
    chunks = list(
        client.chat.completions.create(
            model="qvq-tiny", messages=[{"role": "user", "content": "count"}], max_tokens=8, n=3,
            temperature=1.0, seed=11, stream=True,
        )
    )
    texts = {i: "" for i in range(3)}
    finished = set()
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1, 2} and len(set(texts.values())) > 1, texts


def test_logprobs_and_vllm_sampling_fields_are_honoured(base_url, client):
    messages = [{"role": "user", "content": "count"}]
    reply = client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=6, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in content)
    assert all(t.token == t.top_logprobs[0].token for t in content)  # greedy: the top token
    streamed = list(client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=6, logprobs=True, stream=True))
    assert sum(len(c.choices[0].logprobs.content) for c in streamed if c.choices and c.choices[0].logprobs) == len(content)
    penalised = client.chat.completions.create(
        model="qvq-tiny", messages=messages, max_tokens=40, frequency_penalty=2.0, presence_penalty=1.0,
        extra_body={"min_p": 0.1, "min_tokens": 2},
    )
    plain = client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=40)
    assert penalised.choices[0].message.content != plain.choices[0].message.content
    refused = httpx.post(
        f"{base_url}/v1/chat/completions", headers=AUTH, timeout=60,
        json={"messages": messages, "top_logprobs": 2},
    )
    assert refused.status_code == 400 and "top_logprobs needs logprobs" in refused.json()["error"]["message"]


def test_metrics_are_prometheus_text_counting_requests_tokens_and_verification(base_url, client):
    def scrape() -> dict[str, float]:
        text = httpx.get(f"{base_url}/metrics", timeout=60).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    before = scrape()
    client.chat.completions.create(model="qvq-tiny", messages=[{"role": "user", "content": "2+2?"}], max_tokens=3)
    httpx.post(f"{base_url}/v1/chat/completions", json={"messages": []}, headers=AUTH, timeout=60)
    httpx.post(f"{base_url}/v1/solve", json={"question": "What is 2 + 2?", "max_attempts": 2}, headers=AUTH, timeout=120)
    after = scrape()
    ok = 'qvq_ray_requests_total{route="/v1/chat/completions",status="200"}'
    bad = 'qvq_ray_requests_total{route="/v1/chat/completions",status="400"}'
    assert after[ok] - before.get(ok, 0) >= 1 and after[bad] - before.get(bad, 0) == 1
    assert after["qvq_ray_completion_tokens_total"] - before.get("qvq_ray_completion_tokens_total", 0) >= 3
    attempts = sum(v for k, v in after.items() if k.startswith("qvq_ray_solve_attempts_total")) - sum(
        v for k, v in before.items() if k.startswith("qvq_ray_solve_attempts_total")
    )
    assert 1 <= attempts <= 2 and after["qvq_ray_engine_up"] == 1
    assert 'qvq_ray_request_latency_seconds_bucket{le="0.5",route="/v1/chat/completions"}' in after


def test_legacy_completions_take_the_prompt_as_is(base_url, client):
    """/v1/completions: no chat template (a chat request with the same text differs), prompt lists,
    n, legacy logprobs, streaming; the openai client's own `completions` API."""
    reply = client.completions.create(model="qvq-tiny", prompt=["1 + 1 =", "count:"], max_tokens=5, n=2, logprobs=2)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    assert reply.choices[0].text == reply.choices[1].text  # greedy: the same sample n times
    assert len(reply.choices[0].logprobs.tokens) == len(reply.choices[0].logprobs.token_logprobs) <= 5
    chat = client.chat.completions.create(model="qvq-tiny", messages=[{"role": "user", "content": "1 + 1 ="}], max_tokens=5)
    assert chat.usage.prompt_tokens > reply.usage.prompt_tokens / 2 + 5  # the template adds the system prompt
    streamed = list(client.completions.create(model="qvq-tiny", prompt="1 + 1 =", max_tokens=5, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == reply.choices[0].text
    bad = httpx.post(f"{base_url}/v1/completions", json={"prompt": [], "max_tokens": 2}, headers=AUTH, timeout=60)
    assert bad.status_code == 400 and "prompt" in bad.json()["error"]["message"]


def test_greedy_stream_with_n_sends_the_one_greedy_text_to_every_choice(client):
    chunks = list(
        client.chat.completions.create(
            model="qvq-tiny", messages=[{"role": "user", "content": "count"}], max_tokens=8, n=2, stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    plain = client.chat.completions.create(model="qvq-tiny", messages=[{"role": "user", "content": "count"}], max_tokens=8, n=2)
    assert texts[0] == texts[1] == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_our_own_app_is_a_judge_endpoint_for_rescore(base_url, tmp_path):
    """The Serve app with the tiny model as the judge of `qvq-ray rescore` (a real OpenAI endpoint):
    asked only about the cases the rules leave undecided, labelled, and not asked again on a re-run."""
    import json

    from qvq_ray.batch.rescore import rescore
    from qvq_ray.config import JudgeConfig, OpenAIEngineConfig, QvqConfig
    from qvq_ray.report.summary import read_output, write_report

    cases = {
        "marked": ("12", "5 + 7 = 12, so the answer is \\boxed{12}."),
        "silent": ("7", "I cannot make out the figure, so I will not say."),
        "free": ("hydrogen gas", "Zinc and acid react. The answer is H2 is released."),
    }
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": k, "question": f"case {k}?", "answer": g}) + "\n" for k, (g, _) in cases.items()))
    results = tmp_path / "results.json"
    results.write_text(json.dumps({k: {"response": r} for k, (_, r) in cases.items()}))
    config = QvqConfig()
    config.verifier.judge = JudgeConfig(
        engine=OpenAIEngineConfig(base_url=f"{base_url}/v1", remote_model="qvq-tiny", api_key="test-key", max_retries=0),
        cache_path=str(tmp_path / "judge.sqlite3"), max_tokens=8,
    )
    first = rescore(results, problems, tmp_path / "one", problems_format="problems", config=config, workers=1)
    rows = {r["id"]: r for r in read_output(tmp_path / "one").to_pylist()}
    assert first.judge_stats.startswith("judge calls 2 (cached 0, failed 0"), first.judge_stats
    assert rows["marked"]["decided_by"] == "rules" and rows["marked"]["attempts"][0]["verdict"]["judge"] == []
    for name, task in (("silent", "extraction"), ("free", "equivalence")):
        notes = rows[name]["attempts"][0]["verdict"]["judge"]
        assert [n["task"] for n in notes][:1] == [task], notes
        # the tiny model answers something: an answer read (decided by the judge), or an unreadable
        # judgement (not judged); never a guess
        assert rows[name]["decided_by"] == ("judge" if notes[-1]["outcome"] is not None else None), (name, notes)
    report = write_report(tmp_path / "one", plots=False)["report.md"].read_text()
    all_row = next(ln for ln in report.split("Who decided", 1)[1].splitlines() if ln.startswith("| all"))
    cells = [c.strip() for c in all_row.strip("|").split("|")]  # all, scored, rules, sympy, judge, not judged, ...
    assert cells[1] == "3" and cells[4] == str(sum(r["decided_by"] == "judge" for r in rows.values())), all_row
    second = rescore(results, problems, tmp_path / "two", problems_format="problems", config=config, workers=1)
    assert second.judge_stats.startswith("judge calls 0 (cached"), second.judge_stats
