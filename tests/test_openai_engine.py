"""The OpenAI-compatible engine against a scripted HTTP server on 127.0.0.1 (real sockets).

The conformance suite runs it against our own Serve app; here a small threaded HTTP server
answers with scripted statuses, delays and SSE streams to pin down what only a misbehaving
endpoint shows: the openai SDK's retries on 429 / 5xx / timeouts / dropped connections and never on
other 4xx (408 and 409 aside: the SDK retries those), clear errors, the concurrency limit, the
request body (data URLs, explicit sampling, greedy n), the API key from the environment, streaming
failures before and after a delta, and the abort of a stream closed early.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qvq_ray.config import ModelConfig, OpenAIEngineConfig, SamplingConfig
from qvq_ray.engines.base import EngineError, EngineOverloadedError, InvalidRequestError
from qvq_ray.engines.openai_engine import (
    OpenAIEngine,
    chat_request_body,
    image_data_url,
    split_completion_tokens,
)
from tests.conftest import free_port, png_bytes


def ok_body(texts=("hello",), finish="stop", prompt_tokens=30, completion_tokens=5):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish} for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def sse(*deltas, finish="stop", usage=None):
    lines = []
    for d in deltas:
        lines.append({"choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]})
    lines.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        lines.append({"choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"


class Scripted:
    """A threaded HTTP server answering each request with the next scripted step.

    A step is (status, body) or a dict: {"status", "body", "delay", "headers", "sse", "drop_after"}.
    With no step left, `answer(request_body)` gives the step when set (answers that depend on the
    request, for clients that send many at once), else a plain 200.
    """

    def __init__(self, answer=None):
        self.answer = answer
        self.steps: list = []
        self.requests: list[dict] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.client_gone = threading.Event()  # a paced stream's write failed: the client closed it
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with scripted.lock:
                    scripted.requests.append(
                        {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                    )
                    step = scripted.steps.pop(0) if scripted.steps else None
                    scripted.active += 1
                    scripted.max_active = max(scripted.max_active, scripted.active)
                if step is None:
                    step = scripted.answer(body) if scripted.answer else (200, ok_body())
                try:
                    if isinstance(step, dict) and "paced_sse" in step:
                        scripted.respond_paced(self, step)
                    else:
                        scripted.respond(self, step)
                finally:
                    with scripted.lock:
                        scripted.active -= 1

            do_GET = do_POST = _handle

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def respond_paced(self, handler, step):
        """SSE events one by one, `every` seconds apart, until the client closes the connection."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        try:
            for event in step["paced_sse"]:
                handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
                time.sleep(step.get("every", 0.05))
        except (BrokenPipeError, ConnectionResetError):
            self.client_gone.set()
        handler.close_connection = True

    @staticmethod
    def respond(handler, step):
        if not isinstance(step, dict):
            step = {"status": step[0], "body": step[1]}
        time.sleep(step.get("delay", 0))
        status = step.get("status", 200)
        if "sse" in step:
            payload = step["sse"].encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "text/event-stream")
            if "drop_after" in step:  # send part of the stream, then cut the connection
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload[: step["drop_after"]])
                handler.wfile.flush()
                handler.close_connection = True
                return
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        body = step.get("body")
        payload = (body if isinstance(body, str) else json.dumps(body)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (step.get("headers") or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = Scripted()
    yield s
    s.close()


def make_engine(url, **overrides):
    cfg = dict(kind="openai", base_url=url, remote_model="m", max_retries=2)
    cfg.update(overrides)
    return OpenAIEngine(ModelConfig(path="qvq"), OpenAIEngineConfig(**cfg))


MSG = [{"role": "user", "content": [{"type": "image", "image": png_bytes("1 + 1")}, {"type": "text", "text": "What?"}]}]


def generate(engine, sampling=None):
    return asyncio.run(engine.generate(MSG, sampling or SamplingConfig(max_tokens=8)))


def test_request_body_is_explicit_with_data_url_and_key_from_env(server, monkeypatch):
    monkeypatch.setenv("QVQ_TEST_KEY", "sk-test-123")
    engine = make_engine(server.url, api_key_env="QVQ_TEST_KEY")
    out = generate(engine, SamplingConfig(temperature=0.7, top_p=0.9, top_k=20, seed=3, stop=["END"], max_tokens=8, repetition_penalty=1.05))
    assert out[0].text == "hello" and out[0].completion_tokens == 5 and out[0].prompt_tokens == 30
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-123"
    assert "openai/python" in request["headers"]["user-agent"].lower()  # sent by the SDK, not a client of ours
    body = request["body"]
    assert {k: body[k] for k in ("model", "temperature", "top_p", "top_k", "seed", "stop", "max_tokens", "n", "repetition_penalty", "stream")} == {
        "model": "m", "temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 3, "stop": ["END"],
        "max_tokens": 8, "n": 1, "repetition_penalty": 1.05, "stream": False,
    }
    image_part, text_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "What?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png_bytes("1 + 1")


def test_no_key_no_header_and_extras_can_be_left_out(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    generate(make_engine(server.url, send_extra_sampling=False))
    request = server.requests[0]
    assert "authorization" not in request["headers"]
    assert "top_k" not in request["body"] and "repetition_penalty" not in request["body"]


def test_vllm_sampling_fields_and_logprobs_travel_and_come_back(server):
    body = ok_body(texts=("hi",))
    body["choices"][0]["logprobs"] = {"content": [
        {"token": "hi", "logprob": -0.5, "bytes": [104, 105], "top_logprobs": [{"token": "hi", "logprob": -0.5, "bytes": None}]}
    ]}
    server.steps = [(200, body)]
    sampling = SamplingConfig(temperature=0.8, max_tokens=8, presence_penalty=0.5, frequency_penalty=0.25, min_p=0.1, min_tokens=2, logprobs=1)
    (out,) = generate(make_engine(server.url), sampling)
    sent = server.requests[0]["body"]
    assert (sent["presence_penalty"], sent["frequency_penalty"], sent["min_p"], sent["min_tokens"]) == (0.5, 0.25, 0.1, 2)
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 1)
    assert [(t.token, t.logprob, [x.token for x in t.top_logprobs]) for t in out.logprobs] == [("hi", -0.5, ["hi"])]
    assert "min_p" not in chat_request_body("m", [], SamplingConfig(max_tokens=4), stream=False, extra_sampling=True)[0]


def test_a_raw_prompt_goes_to_the_completions_endpoint(server):
    from qvq_ray.engines.base import raw_prompt

    server.steps = [(200, {"id": "cmpl-1", "object": "text_completion", "model": "m",
                           "choices": [{"index": 0, "text": " 2", "finish_reason": "stop", "logprobs": None}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})]
    engine = make_engine(server.url)
    (out,) = asyncio.run(engine.generate(raw_prompt("1 + 1 ="), SamplingConfig(max_tokens=4)))
    request = server.requests[0]
    assert request["path"] == "/v1/completions" and request["body"]["prompt"] == "1 + 1 =" and "messages" not in request["body"]
    assert out.text == " 2" and out.completion_tokens == 1
    assert asyncio.run(engine.health()).alive


def test_greedy_n_asks_once_and_repeats(server):
    out = generate(make_engine(server.url), SamplingConfig(max_tokens=8, n=3))
    assert server.requests[0]["body"]["n"] == 1
    assert [c.text for c in out] == ["hello"] * 3


def test_n_samples_share_usage(server):
    server.steps = [(200, ok_body(texts=("aaaa", "bb", "cccccccc"), finish="length", completion_tokens=24))]
    out = generate(make_engine(server.url), SamplingConfig(temperature=1.0, n=3, max_tokens=8))
    assert server.requests[0]["body"]["n"] == 3
    assert [c.completion_tokens for c in out] == [8, 8, 8]
    assert split_completion_tokens(10, ["aaaa", "a"], ["stop", "stop"], 8) == [8, 2]
    assert split_completion_tokens(11, ["abc", "x"], ["length", "stop"], 8) == [8, 3]
    assert split_completion_tokens(7, ["abc"], ["stop"], 8) == [7]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retryable_statuses_are_retried_then_succeed(server, status):
    server.steps = [{"status": status, "body": {"error": {"message": "busy"}}, "headers": {"Retry-After": "0"}}, (200, ok_body())]
    out = generate(make_engine(server.url))
    assert out[0].text == "hello" and len(server.requests) == 2


def test_retries_run_out_with_a_clear_error(server):
    server.steps = [(503, {"error": {"message": "overloaded"}})] * 3
    with pytest.raises(EngineOverloadedError, match=r"failed after 3 attempt\(s\): HTTP 503: overloaded"):
        generate(make_engine(server.url, max_retries=2))
    assert len(server.requests) == 3
    server.steps = [(500, {"error": {"message": "broken"}})] * 2  # a failure, not a busy endpoint
    with pytest.raises(EngineError, match="HTTP 500: broken") as info:
        generate(make_engine(server.url, max_retries=1))
    assert not isinstance(info.value, EngineOverloadedError)


def test_an_endpoint_busy_past_the_retries_is_overloaded_when_streaming_too(server):
    server.steps = [{"status": 429, "body": {"error": {"message": "slow down"}}, "headers": {"Retry-After": "0"}}] * 2
    engine = make_engine(server.url, max_retries=1)

    async def go():
        return [x async for x in engine.stream(MSG, SamplingConfig(max_tokens=3))]

    with pytest.raises(EngineOverloadedError, match=r"after 2 attempt\(s\): HTTP 429: slow down"):
        asyncio.run(go())
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "status, error, needle",
    [
        (400, InvalidRequestError, "rejected the request (HTTP 400): bad image"),
        (413, InvalidRequestError, "HTTP 413"),
        (422, InvalidRequestError, "HTTP 422"),
        (401, EngineError, "check the API key"),
        (403, EngineError, "HTTP 403"),
        (404, EngineError, "check engine.base_url"),
        (418, EngineError, "HTTP 418"),  # (408 and 409 are retried: the SDK's rule)
    ],
)
def test_other_4xx_are_never_retried(server, status, error, needle):
    server.steps = [(status, {"error": {"message": "bad image", "type": "invalid_request_error"}})]
    with pytest.raises(error) as info:
        generate(make_engine(server.url))
    assert needle in str(info.value)
    assert not isinstance(info.value, InvalidRequestError) or error is InvalidRequestError
    assert len(server.requests) == 1


def test_timeouts_are_retried(server):
    server.steps = [{"delay": 1.0, "status": 200, "body": ok_body(texts=("late",))}, (200, ok_body(texts=("on time",)))]
    out = generate(make_engine(server.url, request_timeout_s=0.3))
    assert out[0].text == "on time" and len(server.requests) == 2


def test_unreachable_endpoint_fails_after_retries():
    engine = make_engine(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(EngineError, match=r"failed after 2 attempt\(s\): connection failed"):
        generate(engine)


def test_concurrency_limit(server):
    server.steps = [{"delay": 0.15, "status": 200, "body": ok_body()}] * 6
    engine = make_engine(server.url, max_concurrency=2)

    async def burst():
        return await asyncio.gather(*(engine.generate(MSG, SamplingConfig(max_tokens=4)) for _ in range(6)))

    results = asyncio.run(burst())
    assert len(results) == 6 and server.max_active == 2


def test_streaming_deltas_usage_and_retry_before_first_delta(server):
    usage = {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}
    server.steps = [(503, {"error": {"message": "warming up"}}), {"sse": sse("He", "ll", "o", finish="length", usage=usage)}]
    engine = make_engine(server.url)

    async def go():
        return [x async for x in engine.stream(MSG, SamplingConfig(max_tokens=3))]

    items = asyncio.run(go())
    assert items[:-1] == ["He", "ll", "o"]
    final = items[-1]
    assert (final.text, final.finish_reason, final.prompt_tokens, final.completion_tokens) == ("Hello", "length", 30, 3)
    body = server.requests[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert len(server.requests) == 2


def test_stream_cut_mid_way_is_an_error_not_a_retry(server):
    stream = sse("He", "ll", "o")
    server.steps = [{"sse": stream, "drop_after": stream.index('"ll"')}]  # after the "He" event
    engine = make_engine(server.url)

    async def go():
        return [x async for x in engine.stream(MSG, SamplingConfig(max_tokens=3))]

    with pytest.raises(EngineError, match="mid-stream|without a finish_reason"):
        asyncio.run(go())
    assert len(server.requests) == 1


def test_closing_the_stream_early_closes_the_connection(server):
    """Abort: a consumer that stops after the first delta closes the HTTP response, and the server
    (which would stream for 10 s more) sees its client go at its next write."""
    events = [{"choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]} for i in range(200)]
    server.steps = [{"paced_sse": events, "every": 0.05}]
    engine = make_engine(server.url)

    async def first_delta_then_stop():
        stream = engine.stream(MSG, SamplingConfig(max_tokens=200))
        first = await stream.__anext__()
        assert (await engine.health()).running == 1
        await stream.aclose()
        assert (await engine.health()).running == 0  # a closed stream is no longer in flight
        for _ in range(60):  # the loop (and the engine's client) live on: only closing can end it
            if server.client_gone.is_set():
                break
            await asyncio.sleep(0.05)
        return first

    assert asyncio.run(first_delta_then_stop()) == "t0 "
    assert server.client_gone.is_set(), "the server kept streaming to a consumer that left"


def test_in_band_stream_error_and_stream_n(server):
    server.steps = [{"sse": 'data: {"error": {"message": "generation failed: boom", "type": "server_error"}}\n\ndata: [DONE]\n\n'}]
    engine = make_engine(server.url)

    async def go(sampling):
        return [x async for x in engine.stream(MSG, sampling)]

    with pytest.raises(EngineError, match="boom"):
        asyncio.run(go(SamplingConfig(max_tokens=3)))
    with pytest.raises(InvalidRequestError, match="n=1"):
        asyncio.run(go(SamplingConfig(max_tokens=3, n=2, temperature=1.0)))


def test_bad_messages_fail_before_any_request(server):
    engine = make_engine(server.url)
    for bad in (
        [{"role": "user", "content": [{"type": "image", "image": b"not an image"}]}],
        [{"role": "user", "content": [{"type": "video", "video": b"x"}]}],
        [{"role": "tool", "content": "x"}],
        [],
    ):
        with pytest.raises(InvalidRequestError):
            asyncio.run(engine.generate(bad, SamplingConfig(max_tokens=4)))
    assert server.requests == []


def test_image_formats_travel_as_their_own_type_or_png():
    import io

    from PIL import Image

    assert image_data_url(png_bytes()).startswith("data:image/png;base64,")
    jpeg = io.BytesIO()
    Image.new("RGB", (30, 20), "red").save(jpeg, "JPEG")
    assert image_data_url(jpeg.getvalue()).startswith("data:image/jpeg;base64,")
    tiff = io.BytesIO()
    Image.new("RGB", (30, 20), "blue").save(tiff, "TIFF")
    url = image_data_url(tiff.getvalue())
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (30, 20)


def test_health_check_lists_the_model(server):
    server.steps = [(200, {"object": "list", "data": [{"id": "m"}]}), (200, {"object": "list", "data": [{"id": "other"}]}), (503, "down")]
    engine = make_engine(server.url)
    asyncio.run(engine.check_health())
    with pytest.raises(EngineError, match="does not serve model 'm'"):
        asyncio.run(engine.check_health())
    with pytest.raises(EngineError, match="HTTP 503"):
        asyncio.run(engine.check_health())
    assert server.requests[0]["path"] == "/v1/models"


def test_config_requires_base_url_and_body_helper():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIEngine(ModelConfig(), OpenAIEngineConfig())
    body, repeat = chat_request_body("m", [], SamplingConfig(max_tokens=4, n=2), stream=True, extra_sampling=True)
    assert (body["n"], repeat, body["top_k"], body["stream_options"]) == (1, 2, 0, {"include_usage": True})


# --------------------------------------------------------------------------- issue 22: passed through


def test_ignore_eos_and_chat_template_kwargs_are_passed_through(server):
    generate(make_engine(server.url), SamplingConfig(max_tokens=8, ignore_eos=True, chat_template_kwargs={"add_vision_id": True}))
    sent = server.requests[0]["body"]
    assert (sent["ignore_eos"], sent["chat_template_kwargs"]) == (True, {"add_vision_id": True})
    generate(make_engine(server.url), SamplingConfig(max_tokens=8))
    assert "ignore_eos" not in server.requests[1]["body"] and "chat_template_kwargs" not in server.requests[1]["body"]


def test_token_id_prompts_and_echo_prompt_logprobs_are_passed_through(server):
    """Prompt log-probabilities are asked of the endpoint as echo + logprobs; its answer is split
    into the prompt's entries and the completion (text, logprobs, offsets from the completion's start)."""
    from qvq_ray.engines.base import raw_prompt

    legacy = {"tokens": ["a", " b", "!"], "token_logprobs": [None, -1.5, -0.25],
              "top_logprobs": [None, {" z": -0.5, " b": -1.5}, {"!": -0.25}], "text_offset": [0, 1, 3]}
    server.steps = [(200, {"id": "c", "object": "text_completion", "model": "m",
                           "choices": [{"index": 0, "text": "a b!", "finish_reason": "length", "logprobs": legacy}],
                           "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})]
    (out,) = asyncio.run(make_engine(server.url).generate(raw_prompt([64, 12]), SamplingConfig(max_tokens=1, logprobs=1, prompt_logprobs=1)))
    sent = server.requests[0]["body"]
    assert (sent["prompt"], sent["echo"], sent["logprobs"]) == ([64, 12], True, 1)
    assert [(p.token, p.logprob, [t.token for t in p.top_logprobs]) for p in out.prompt_logprobs] == [("a", None, []), (" b", -1.5, [" z"])]
    assert (out.text, [(t.token, t.logprob) for t in out.logprobs]) == ("!", [("!", -0.25)])
