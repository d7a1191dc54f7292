"""The clients people point at a vLLM server (issue 22): lm-eval's loglikelihood requests (echo,
logprobs, max_tokens 0, token-id prompts, /tokenize, /detokenize, /tokenizer_info, /version) and
load generators' fields (ignore_eos, stream_options.continuous_usage_stats, per-chunk logprobs,
chat_template_kwargs), over real HTTP on 127.0.0.1 with the real `openai` client and the trained tiny
model (it ends its answers with an end of sequence, so ignore_eos shows). Last, every field of vLLM's
request models is walked: applied, a label, or refused by name; never ignored."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import png_bytes, running_app
from tests.test_serve import client  # noqa: F401  (the openai client of this module's app: its base_url)

APP_CONFIG = {
    "model": {"path": "tiny", "served_model_name": "qvq-tiny", "max_pixels": 200704, "max_model_len": 4096},
    "engine": {"max_batch_size": 4, "torch_threads": 1},
    "sampling": {"max_tokens": 16},
    "resources": {"num_cpus": 0.5},
    "serve": {"ingress_num_cpus": 0.25, "api_keys": ["test-key"], "engine_autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}
AUTH = {"Authorization": "Bearer test-key"}
IMAGE_CHAT = [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png_bytes("12 + 30")).decode()}},
    {"type": "text", "text": "What is the result?"},
]}]


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    with running_app(APP_CONFIG, "qvq-compat") as url:
        yield url


def post(base_url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", json=body, headers=AUTH, timeout=120)


def sse(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


# --------------------------------------------------------------------------- lm-eval's requests


def test_echo_with_max_tokens_0_returns_the_prompt_and_its_logprobs(client):
    """lm-eval's loglikelihood request (local-completions): echo, logprobs 1, max_tokens 0."""
    reply = client.completions.create(model="qvq-tiny", prompt="12 + 30 = 42", echo=True, logprobs=1, max_tokens=0)
    (choice,) = reply.choices
    legacy = choice.logprobs
    assert choice.text == "12 + 30 = 42" and "".join(legacy.tokens) == "12 + 30 = 42"
    assert len(legacy.tokens) == len(legacy.token_logprobs) == len(legacy.top_logprobs) == reply.usage.prompt_tokens
    assert legacy.token_logprobs[0] is None and legacy.top_logprobs[0] is None
    assert all(lp <= 0 and len(top) == 1 for lp, top in zip(legacy.token_logprobs[1:], legacy.top_logprobs[1:]))
    assert legacy.text_offset == [sum(len(t) for t in legacy.tokens[:i]) for i in range(len(legacy.tokens))]
    assert reply.usage.completion_tokens == 0


def test_token_id_prompts_echo_their_text_then_the_completion(base_url, client):
    """lm-eval's default tokenized_requests=True: list[list[int]] prompts; echo decodes them, and the
    logprobs are the prompt's then the generated token's."""
    first = post(base_url, "/tokenize", {"prompt": "12 + 30 ="}).json()["tokens"]
    second = post(base_url, "/tokenize", {"prompt": "7 + 8 ="}).json()["tokens"]
    reply = client.completions.create(model="qvq-tiny", prompt=[first, second], echo=True, logprobs=2, max_tokens=1)
    plain = client.completions.create(model="qvq-tiny", prompt=first, max_tokens=1)
    a, b = reply.choices
    assert a.text == "12 + 30 =" + plain.choices[0].text and b.text.startswith("7 + 8 =")
    assert len(a.logprobs.token_logprobs) == len(first) + 1 and len(b.logprobs.token_logprobs) == len(second) + 1
    assert reply.usage.prompt_tokens == len(first) + len(second)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens: 0 needs echo"),
        ({"prompt": "x", "suffix": "y"}, "'suffix' is not supported"),
        ({"prompt": [[1, 2], []]}, "prompt cannot be empty"),
        ({"prompt": [1, -2]}, "prompt"),
        ({"prompt": [10**9]}, "out of the vocabulary"),
        ({"prompt": "x", "echo": True, "logprobs": 1, "stream": True}, "not streamed"),
    ],
)
def test_completions_mistakes_are_400s_naming_them(base_url, body, needle):
    reply = post(base_url, "/v1/completions", {"max_tokens": 2, **body})
    assert reply.status_code == 400 and needle in reply.json()["error"]["message"], reply.text


def test_tokenize_detokenize_tokenizer_info_and_version(base_url, client):
    text = post(base_url, "/tokenize", {"prompt": "12 + 30 = 42", "model": "qvq-tiny"}).json()
    assert text["count"] == len(text["tokens"]) and text["max_model_len"] == 4096
    assert post(base_url, "/detokenize", {"tokens": text["tokens"]}).json() == {"prompt": "12 + 30 = 42"}
    chat = post(base_url, "/tokenize", {"messages": IMAGE_CHAT}).json()
    reply = client.chat.completions.create(model="qvq-tiny", messages=IMAGE_CHAT, max_tokens=1)
    assert chat["count"] == reply.usage.prompt_tokens  # the image's tokens included, as generation counts them
    bare = post(base_url, "/tokenize", {"messages": IMAGE_CHAT, "add_generation_prompt": False}).json()
    assert bare["count"] < chat["count"]
    info = httpx.get(f"{base_url}/tokenizer_info", headers=AUTH, timeout=60).json()
    assert info["tokenizer_class"] and info["eos_token"] == "<|im_end|>" and "add_vision_id" in info["chat_template"]
    assert httpx.get(f"{base_url}/tokenizer_info", timeout=60).status_code == 401
    version = httpx.get(f"{base_url}/version", timeout=60).json()["version"]
    from qvq_ray import __version__

    assert version == __version__
    assert post(base_url, "/detokenize", {"tokens": [10**9]}).status_code == 400
    assert post(base_url, "/tokenize", {"prompt": "x", "return_token_strs": True}).status_code == 400


# --------------------------------------------------------------------------- load generators' fields


def test_ignore_eos_generates_to_max_tokens(client):
    plain = client.chat.completions.create(model="qvq-tiny", messages=IMAGE_CHAT, max_tokens=200)
    assert plain.choices[0].finish_reason == "stop" and plain.usage.completion_tokens < 190
    limit = plain.usage.completion_tokens + 10
    ignoring = client.chat.completions.create(model="qvq-tiny", messages=IMAGE_CHAT, max_tokens=limit, extra_body={"ignore_eos": True})
    assert (ignoring.choices[0].finish_reason, ignoring.usage.completion_tokens) == ("length", limit)
    streamed = client.completions.create(
        model="qvq-tiny", prompt="<|im_start|>user\n2 + 2?<|im_end|>\n<|im_start|>assistant\n", max_tokens=40,
        stream=True, extra_body={"ignore_eos": True}, stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert chunks[-1].usage.completion_tokens == 40
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_continuous_usage_stats_put_the_usage_in_every_chunk(base_url):
    body = {"messages": [{"role": "user", "content": "count"}], "max_tokens": 8, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    chunks = sse(post(base_url, "/v1/chat/completions", body))
    assert chunks and all("usage" in c for c in chunks)
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    prompt = {c["usage"]["prompt_tokens"] for c in chunks}
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 8 and len(prompt) == 1
    plain = sse(post(base_url, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}))
    assert [c for c in plain if "usage" in c] == plain[-1:]


def test_streamed_logprobs_come_with_each_chunk(base_url, client):
    messages = [{"role": "user", "content": "count"}]
    whole = client.chat.completions.create(model="qvq-tiny", messages=messages, max_tokens=12, logprobs=True, top_logprobs=1)
    chunks = list(client.chat.completions.create(
        model="qvq-tiny", messages=messages, max_tokens=12, logprobs=True, top_logprobs=1, stream=True))
    carrying = [c for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    assert len(carrying) > 2, "the logprobs came in one chunk"
    streamed = [t for c in carrying for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in whole.choices[0].logprobs.content]
    for c in carrying:  # each delta carries its own tokens' logprobs
        if c.choices[0].delta.content:
            assert "".join(t.token for t in c.choices[0].logprobs.content) == c.choices[0].delta.content
    legacy = sse(post(base_url, "/v1/completions", {"prompt": "count:", "max_tokens": 8, "logprobs": 0, "stream": True, "ignore_eos": True}))
    assert sum(1 for c in legacy if c["choices"] and c["choices"][0]["logprobs"] and c["choices"][0]["logprobs"]["tokens"]) > 2


def test_chat_template_kwargs_are_applied_or_refused_by_name(base_url, client):
    plain = client.chat.completions.create(model="qvq-tiny", messages=IMAGE_CHAT, max_tokens=1)
    numbered = client.chat.completions.create(
        model="qvq-tiny", messages=IMAGE_CHAT, max_tokens=1, extra_body={"chat_template_kwargs": {"add_vision_id": True}})
    assert numbered.usage.prompt_tokens > plain.usage.prompt_tokens  # "Picture 1: " before the image
    for extra, needle in (({"chat_template_kwargs": {"enable_thinking": False}}, "'enable_thinking'"),
                          ({"reasoning_effort": "low"}, "'reasoning_effort'")):
        reply = post(base_url, "/v1/chat/completions", {"messages": IMAGE_CHAT, "max_tokens": 1, **extra})
        assert reply.status_code == 400 and needle in reply.json()["error"]["message"], reply.text
    accepted = post(base_url, "/v1/chat/completions", {"messages": IMAGE_CHAT, "max_tokens": 1, "parallel_tool_calls": False})
    assert accepted.status_code == 200


# --------------------------------------------------------------------------- vLLM's request fields, walked

# The fields of vLLM's request models, as written in its source (vllm-project/vllm, the version this
# project is written against, vLLM 0.33): vllm/entrypoints/openai/chat_completion/protocol.py
# `ChatCompletionRequest` (commit 002032ee2b18e1f7bd924ec47b62504ba3866063) and
# vllm/entrypoints/openai/completion/protocol.py `CompletionRequest` (commit
# d5dba2d7b0ab9b98096560c69db7126b54b14d79), in their order there.
VLLM_CHAT_FIELDS = (
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream", "stream_options",
    "temperature", "top_p", "tools", "tool_choice", "reasoning_effort", "thinking_token_budget", "include_reasoning",
    "parallel_tool_calls", "user", "use_beam_search", "top_k", "min_p", "repetition_penalty", "watermarking",
    "length_penalty", "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "truncation_side", "prompt_logprobs", "logprob_token_ids",
    "allowed_token_ids", "bad_words", "echo", "add_generation_prompt", "continue_final_message", "add_special_tokens",
    "documents", "chat_template", "chat_template_kwargs", "media_io_kwargs", "mm_processor_kwargs", "structured_outputs",
    "priority", "request_id", "session_id", "return_tokens_as_token_ids", "return_token_ids",
    "routed_experts_prompt_start", "return_token_offsets", "return_prompt_text", "return_mm_kwargs", "cache_salt",
    "kv_transfer_params", "ec_transfer_params", "vllm_xargs", "repetition_detection", "stream_interval",
)
VLLM_COMPLETION_FIELDS = (
    "model", "prompt", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n", "presence_penalty",
    "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user", "use_beam_search", "top_k",
    "min_p", "repetition_penalty", "length_penalty", "stop_token_ids", "include_stop_str_in_output", "ignore_eos",
    "min_tokens", "skip_special_tokens", "spaces_between_special_tokens", "truncate_prompt_tokens", "allowed_token_ids",
    "prompt_logprobs", "prompt_embeds", "add_special_tokens", "response_format", "structured_outputs", "priority",
    "request_id", "logits_processors", "return_tokens_as_token_ids", "return_token_ids", "cache_salt",
    "kv_transfer_params", "vllm_xargs", "max_repetition_pattern_size", "min_repetition_pattern_size",
    "repetition_min_count",
)
# Values that change the output unless the field is applied, tried in order: the first one that is
# not the field's no-op value is sent.
CANDIDATES = (True, False, 7, "x", [1], {"type": "json_object"}, {"a": 1})


def _classify(fields: tuple[str, ...], model) -> tuple[list[str], list[str], list[str]]:
    from qvq_ray.serve.openai_api import LABEL_FIELDS

    applied = [f for f in fields if f in model.model_fields]
    labels = [f for f in fields if f not in applied and f in LABEL_FIELDS]
    refused = [f for f in fields if f not in applied and f not in labels and f in model.refused_fields]
    unknown = sorted(set(fields) - set(applied) - set(labels) - set(refused))
    assert not unknown, f"vLLM fields neither applied, a label, nor refused (they would be ignored): {unknown}"
    return applied, labels, refused


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_every_vllm_request_field_is_applied_or_refused_by_name(base_url, path):
    from qvq_ray.serve.openai_api import ChatCompletionRequest, CompletionRequest

    chat = path == "/v1/chat/completions"
    model = ChatCompletionRequest if chat else CompletionRequest
    applied, labels, refused = _classify(VLLM_CHAT_FIELDS if chat else VLLM_COMPLETION_FIELDS, model)
    base = {"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"}
    base["max_tokens"] = 1
    assert {"ignore_eos", "stream_options", "logprobs", "min_p", "echo" if not chat else "chat_template_kwargs"} <= set(applied)
    for field in refused:
        value = next(v for v in CANDIDATES if v not in model.refused_fields[field])
        reply = post(base_url, path, {**base, field: value})
        assert reply.status_code == 400 and f"'{field}'" in reply.json()["error"]["message"], (field, value, reply.text)
        no_op = model.refused_fields[field][-1]
        assert post(base_url, path, {**base, field: no_op}).status_code == 200, (field, no_op)
    for field in labels:
        assert post(base_url, path, {**base, field: "label-1"}).status_code == 200, field
