"""The OpenAI-compatible engine: any chat-completions endpoint as an `Engine`.

A `vllm serve` server, a hosted QVQ, or another qvq-ray app, through the official `openai` SDK
(`AsyncOpenAI`): the SDK owns the HTTP client, the SSE parsing, the retries (exponential backoff
with jitter, `Retry-After` honoured, `engine.max_retries` times) and the error classes. This module
maps our Engine API onto it:

- images travel as `image_url` parts with data URLs (the bytes' own format; anything else is
  decoded and re-encoded as PNG, and undecodable bytes are refused before any request);
- sampling is explicit: temperature, top_p, max_tokens, n, seed and stop always; top_k and
  repetition_penalty too (as `extra_body`) unless `send_extra_sampling` is off (a `vllm serve`
  would otherwise apply the checkpoint's generation_config). Greedy with n > 1 asks for one
  sample and repeats it (greedy is deterministic; vLLM refuses greedy n > 1);
- at most `max_concurrency` requests in flight per engine;
- the SDK retries 408, 409, 429, 5xx, timeouts and failed connections; other 4xx never. An
  endpoint still answering 429 or 503 when retries run out raises EngineOverloadedError
  (retryable: our own ingress answers 503), any other failure an EngineError. 400/413/422 become
  InvalidRequestError (the request is bad); 401/403/404 an EngineError naming the likely
  misconfiguration (key, base_url, model);
- the API key (`api_key`, else the `api_key_env` variable) is read per request; without one no
  Authorization header is sent (a local `vllm serve`);
- message text goes as text: the endpoint applies its chat template and tokenizes it (another
  qvq-ray app tokenizes special tokens typed in it as text; a plain `vllm serve` parses them). With
  `model.special_tokens_in_text: refuse`, text holding one of Qwen2-VL's special tokens is refused
  here, before any request. A raw prompt goes to /v1/completions as is (the endpoint parses its
  special tokens: that is what a raw prompt is for);
- streaming asks for `stream_options.include_usage` (token counts); closing the stream early
  closes the HTTP response, so the server sees its client go and aborts. A stream that fails after
  it started (a dropped connection, an in-band error event) is reported, never retried.

Token counts per sample: the chat API reports usage for the whole request. With n = 1 (every
solver attempt) they are exact; with n > 1 a sample that hit max_tokens counts max_tokens and the
rest of the total is shared by the other samples in proportion to their text length.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from typing import Any, AsyncGenerator, AsyncIterator, Iterator, Sequence

from qvq_ray.config import ModelConfig, OpenAIEngineConfig, QvqConfig, SamplingConfig
from qvq_ray.engines.base import (
    Completion,
    EngineError,
    EngineHealth,
    EngineOverloadedError,
    FinishReason,
    InvalidRequestError,
    Message,
    PromptLogprob,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    raw_prompt_ids,
    raw_prompt_text,
)
from qvq_ray.engines.prompt_tokens import QWEN2_VL_SPECIAL_TOKENS, check_no_special_tokens

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_INVALID_REQUEST_STATUSES = {400, 413, 422}


# --------------------------------------------------------------------------- pure parts


def image_mime(data: bytes) -> str | None:
    """The MIME type of encoded image bytes from their magic number, or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_data_url(data: bytes) -> str:
    """A data URL for encoded image bytes; other formats are re-encoded as PNG."""
    data = bytes(data)
    mime = image_mime(data)
    if mime is None:
        import io

        from qvq_ray.images import decode_image

        try:
            image = decode_image(data)
        except Exception as exc:
            raise InvalidRequestError(f"cannot decode image: {exc}") from exc
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our chat messages in the OpenAI shape (image bytes -> data URLs)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list")
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"unsupported message role: {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content or []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image":
                data = part.get("image")
                if not isinstance(data, (bytes, bytearray)):
                    raise InvalidRequestError("image parts must carry encoded image bytes")
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(bytes(data))}})
            else:
                raise InvalidRequestError(f"unsupported content part type: {kind!r}")
        out.append({"role": role, "content": parts})
    return out


def chat_request_body(
    model: str, messages: list[dict[str, Any]], sampling: SamplingConfig, *, stream: bool, extra_sampling: bool
) -> tuple[dict[str, Any], int]:
    """The chat-completions body for one request, and how often to repeat its samples."""
    greedy = sampling.greedy
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "n": 1 if greedy else sampling.n,
        "stream": stream,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if sampling.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = sampling.logprobs
    if extra_sampling:
        body["top_k"] = 0 if greedy else sampling.top_k
        body["repetition_penalty"] = sampling.repetition_penalty
    # vLLM's extensions, sent only when set: an OpenAI server would refuse fields it does not know
    if sampling.min_p and not greedy:
        body["min_p"] = sampling.min_p
    if sampling.min_tokens:
        body["min_tokens"] = sampling.min_tokens
    if sampling.ignore_eos:
        body["ignore_eos"] = True
    if sampling.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(sampling.chat_template_kwargs)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body, (sampling.n if greedy else 1)


def finish_reason_from_openai(reason: str | None) -> FinishReason:
    if reason == "length":
        return "length"
    if reason in (None, "abort", "cancelled"):
        return "abort"
    return "stop"  # stop, eos, content_filter, tool_calls: the sample ended by itself


def split_completion_tokens(total: int, texts: list[str], finish: Sequence[str], max_tokens: int) -> list[int]:
    """Per-sample token counts from a request's total (exact for one sample; see module doc)."""
    if len(texts) == 1:
        return [total]
    counts = [max_tokens if f == "length" else 0 for f in finish]
    rest = [i for i, f in enumerate(finish) if f != "length"]
    remaining = max(total - sum(counts), 0)
    if rest:
        weights = [max(len(texts[i]), 1) for i in rest]
        shares = [remaining * w // sum(weights) for w in weights]
        shares[-1] += remaining - sum(shares)
        for i, share in zip(rest, shares):
            counts[i] = min(share, max_tokens)
    return counts


def logprobs_from_openai(logprobs: Any) -> list[TokenLogprob] | None:
    """A choice's `logprobs` -> ours: chat's {"content": [{token, logprob, bytes, top_logprobs}]}
    or /v1/completions' legacy {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]}."""
    if not isinstance(logprobs, dict):
        return None
    if logprobs.get("content") is not None:
        return [TokenLogprob.model_validate(step) for step in logprobs["content"]]
    if logprobs.get("tokens") is not None:
        tops = logprobs.get("top_logprobs") or [{}] * len(logprobs["tokens"])
        return [
            TokenLogprob(token=t, logprob=lp if lp is not None else -9999.0,
                         top_logprobs=[TopLogprob.model_validate({"token": k, "logprob": v}) for k, v in (top or {}).items()])
            for t, lp, top in zip(logprobs["tokens"], logprobs.get("token_logprobs") or [], tops)
        ]
    return None


def split_echo(choice: dict[str, Any], prompt_tokens: int, top: int) -> tuple[dict[str, Any], list[PromptLogprob]]:
    """A /v1/completions choice asked with echo and logprobs (the prompt's text and tokens first)
    -> the choice of the completion alone, and the prompt's log-probabilities (`top` alternatives)."""
    legacy = choice.get("logprobs") or {}
    tokens, values = legacy.get("tokens") or [], legacy.get("token_logprobs") or []
    tops, offsets = legacy.get("top_logprobs") or [None] * len(tokens), legacy.get("text_offset") or []
    prompt = [
        PromptLogprob(
            token=t, logprob=v, bytes=list(t.encode()),
            top_logprobs=[
                TopLogprob.model_validate({"token": k, "logprob": x})
                for k, x in sorted((alt or {}).items(), key=lambda kv: -kv[1])[:top]
            ],
        )
        for t, v, alt in zip(tokens[:prompt_tokens], values, tops)
    ]
    cut = offsets[prompt_tokens] if len(offsets) > prompt_tokens else len("".join(tokens[:prompt_tokens]))
    rest = {key: value[prompt_tokens:] for key, value in legacy.items() if isinstance(value, list)}
    if "text_offset" in rest:
        rest["text_offset"] = [offset - cut for offset in rest["text_offset"]]
    return {**choice, "text": (choice.get("text") or "")[cut:], "logprobs": rest}, prompt


def completions_from_response(
    body: dict[str, Any], *, repeat: int, max_tokens: int, latency_s: float, prompt_logprobs: int | None = None,
    logprobs: int | None = None,
) -> list[Completion]:
    """Our Completions from a chat or completions body; with `prompt_logprobs` it was asked with
    echo (split_echo), and its generated tokens' log-probabilities kept only when `logprobs` is set."""
    choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
    prompt_entries = None
    if prompt_logprobs is not None:
        prompt_count = int((body.get("usage") or {}).get("prompt_tokens") or 0)
        split = [split_echo(c, prompt_count, prompt_logprobs) for c in choices]
        choices = [c if logprobs is not None else {**c, "logprobs": None} for c, _ in split]
        prompt_entries = split[0][1] if split else None
    if not choices:
        raise EngineError(f"endpoint returned no choices: {json.dumps(body)[:300]}")
    # chat choices carry message.content; /v1/completions choices carry text
    texts = [((c.get("message") or {}).get("content") or c.get("text") or "") for c in choices]
    finish = [finish_reason_from_openai(c.get("finish_reason")) for c in choices]
    usage = body.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    counts = split_completion_tokens(int(usage.get("completion_tokens") or 0), texts, finish, max_tokens)
    completions = [
        Completion(
            text=t, finish_reason=f, prompt_tokens=prompt_tokens, completion_tokens=k, latency_s=latency_s,
            logprobs=logprobs_from_openai(c.get("logprobs")),
            prompt_logprobs=prompt_entries,
        )
        for t, f, k, c in zip(texts, finish, counts, choices)
    ]
    if repeat > 1:
        completions = [c.model_copy() for c in completions for _ in range(repeat)]
    return completions


def error_message(status: int, text: str) -> str:
    """The server's own error message, from OpenAI's shape, FastAPI's, or plain text."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text.strip()[:500] or f"HTTP {status}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in data:
            return str(data["detail"])[:500]
        if "message" in data:
            return str(data["message"])[:500]
    return text.strip()[:500]


# Parameters `chat.completions.create` takes by name (every openai>=1.40 has them).
_SDK_CHAT_PARAMS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "n", "stream", "stream_options", "seed", "stop",
    "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias", "user",
})
_SDK_COMPLETION_PARAMS = frozenset({
    "model", "prompt", "temperature", "top_p", "max_tokens", "n", "stream", "stream_options", "seed", "stop",
    "presence_penalty", "frequency_penalty", "logprobs", "logit_bias", "user",
})
# Statuses the SDK retries (its `_should_retry`): by the time one reaches us, retries ran out.
_RETRIED_STATUSES = {408, 409, 429}
_OVERLOADED_STATUSES = {429, 503}
_HINTS = {
    401: "check the API key (engine.api_key_env / engine.api_key)",
    403: "the API key may not use this model or endpoint",
    404: "check engine.base_url (it should end in /v1) and the model name",
}


def _status_text(exc: Any) -> str:
    """The server's own message of an SDK status error (the response body is read by then)."""
    try:
        return error_message(exc.status_code, exc.response.text)
    except Exception:
        return str(getattr(exc, "message", "") or exc)


def engine_error(what: str, url: str, exc: Exception, *, attempts: int) -> EngineError | InvalidRequestError:
    """Our error for an SDK failure of one request (after the SDK's own retries)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status, message = exc.status_code, _status_text(exc)
        if status in _INVALID_REQUEST_STATUSES:
            return InvalidRequestError(f"the endpoint rejected the request (HTTP {status}): {message}")
        if status in _RETRIED_STATUSES or status >= 500:
            text = f"{what} at {url} failed after {attempts} attempt(s): HTTP {status}: {message}"
            return EngineOverloadedError(text) if status in _OVERLOADED_STATUSES else EngineError(text)
        hint = _HINTS.get(status)
        return EngineError(f"{url} answered HTTP {status}: {message}" + (f" ({hint})" if hint else ""))
    if isinstance(exc, openai.APITimeoutError):
        return EngineError(f"{what} at {url} failed after {attempts} attempt(s): timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return EngineError(f"{what} at {url} failed after {attempts} attempt(s): connection failed ({type(cause).__name__}: {cause})")
    if isinstance(exc, openai.APIError):  # an error event inside a stream, or a body the SDK cannot read
        body = exc.body if isinstance(exc.body, dict) else {}
        message = f"the endpoint reported: {body.get('message') or exc.message}"
        return InvalidRequestError(message) if body.get("type") == "invalid_request_error" else EngineError(message)
    return EngineError(f"{what} at {url} failed: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- the engine


class OpenAIEngine:
    """`Engine` over an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, model: ModelConfig, engine: OpenAIEngineConfig):
        if not engine.base_url:
            raise ValueError("engine.kind 'openai' needs engine.base_url, e.g. 'http://host:8000/v1'")
        self.model_config = model
        self.engine_config = engine
        self.base_url = engine.base_url.rstrip("/")
        self.model_name = engine.remote_model or model.served_model_name or model.path
        self._per_loop: dict[int, tuple[asyncio.AbstractEventLoop, Any, asyncio.Semaphore]] = {}
        self._closed = False
        self._in_flight = 0  # requests sent and not yet answered (health reports)

    @classmethod
    def from_config(cls, config: QvqConfig) -> "OpenAIEngine":
        if not isinstance(config.engine, OpenAIEngineConfig):  # build_engine picks this engine by engine.kind
            raise TypeError(f"OpenAIEngine needs an OpenAIEngineConfig, got {type(config.engine).__name__}")
        return cls(config.model, config.engine)

    # ------------------------------------------------------------------ plumbing

    def _auth_headers(self) -> dict[str, Any]:
        """Authorization for one request: the key as it is now, or no header at all without one."""
        import openai

        key = self.engine_config.api_key or os.environ.get(self.engine_config.api_key_env)
        return {"Authorization": f"Bearer {key}" if key else openai.Omit()}

    def _client(self) -> tuple[Any, asyncio.Semaphore]:
        """One AsyncOpenAI client and one concurrency gate per event loop (clients are loop-bound)."""
        import openai

        if self._closed:
            raise EngineError("engine is closed")
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(id(loop))
        if entry is None or entry[0] is not loop or entry[1].is_closed():
            cfg = self.engine_config
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                # The key goes per request (_auth_headers); the SDK insists on one at construction.
                api_key="set-per-request",
                max_retries=cfg.max_retries,
                timeout=openai.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
                # A client of our own: the SDK's default one schedules its close on whatever loop
                # runs when it is collected, which fails for a client of a loop already closed.
                http_client=openai.DefaultAsyncHttpxClient(),
            )
            entry = (loop, client, asyncio.Semaphore(cfg.max_concurrency))
            self._per_loop = {k: v for k, v in self._per_loop.items() if not v[0].is_closed()}
            self._per_loop[id(loop)] = entry
        return entry[1], entry[2]

    def _request(self, sampling: SamplingConfig, messages: list[Message], *, stream: bool) -> tuple[dict[str, Any], int]:
        """Keyword arguments of `chat.completions.create` (or, for a raw prompt, of
        `completions.create`), and how often to repeat its samples."""
        raw = raw_prompt_text(messages)
        if raw is None and self.model_config.special_tokens_in_text == "refuse":
            check_no_special_tokens(messages, QWEN2_VL_SPECIAL_TOKENS)
        body, repeat = chat_request_body(
            self.model_name, [] if raw is not None else openai_messages(messages), sampling, stream=stream,
            extra_sampling=self.engine_config.send_extra_sampling,
        )
        known = _SDK_CHAT_PARAMS
        if raw is not None:  # /v1/completions: a prompt (text or token ids), and logprobs as a count
            del body["messages"]
            ids = raw_prompt_ids(messages)
            body["prompt"] = ids if ids is not None else raw
            body.pop("top_logprobs", None)
            body.pop("chat_template_kwargs", None)
            if sampling.logprobs is not None:
                body["logprobs"] = sampling.logprobs
            if sampling.prompt_logprobs is not None:  # echo: the prompt's tokens come first
                if stream:
                    raise InvalidRequestError("prompt log-probabilities are not streamed by the openai engine")
                body["echo"] = True
                body["logprobs"] = max(sampling.logprobs or 0, sampling.prompt_logprobs)
            known = _SDK_COMPLETION_PARAMS | {"echo"}
        elif sampling.prompt_logprobs is not None:
            raise InvalidRequestError("prompt log-probabilities are only asked of /v1/completions prompts")
        # Fields the SDK does not name (top_k, repetition_penalty, vLLM's min_p, ...) travel as extra_body.
        extra = {k: body.pop(k) for k in list(body) if k not in known}
        if extra:
            body["extra_body"] = extra
        body["extra_headers"] = self._auth_headers()
        return body, repeat

    # ------------------------------------------------------------------ Engine API

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        import openai

        started = time.perf_counter()
        request, repeat = self._request(sampling, messages, stream=False)
        client, gate = self._client()
        create = client.completions.create if "prompt" in request else client.chat.completions.create
        try:
            async with gate:
                with self._counted():
                    response = await create(**request)
        except openai.OpenAIError as exc:
            raise engine_error("chat completion", self.base_url, exc, attempts=self.engine_config.max_retries + 1) from exc
        return completions_from_response(
            response.model_dump(), repeat=repeat, max_tokens=sampling.max_tokens, latency_s=time.perf_counter() - started,
            prompt_logprobs=sampling.prompt_logprobs, logprobs=sampling.logprobs,
        )

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncGenerator[str | Completion, None]:
        """Text deltas of the one sample as the endpoint streams them, then the final Completion.

        Closing it early closes the HTTP stream; the server sees its client go and aborts."""
        import openai

        if sampling.n != 1:
            raise InvalidRequestError("streaming supports n=1 per request")
        started = time.perf_counter()
        request, _ = self._request(sampling, messages, stream=True)
        client, gate = self._client()
        raw = "prompt" in request
        create = client.completions.create if raw else client.chat.completions.create
        what = "streamed completion" if raw else "streamed chat completion"
        text, deltas, finish, usage = "", 0, None, None
        logprobs: list[TokenLogprob] | None = [] if sampling.logprobs is not None else None
        async with gate, self._counted_async():
            try:  # the SDK retries until the response starts; after that a failure is reported
                response = await create(**request)
            except openai.OpenAIError as exc:
                raise engine_error(what, self.base_url, exc, attempts=self.engine_config.max_retries + 1) from exc
            try:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or []:
                        if choice.index != 0:
                            continue
                        if raw:
                            content = getattr(choice, "text", None)
                        else:
                            content = choice.delta.content if choice.delta is not None else None
                        entries = []
                        if logprobs is not None and getattr(choice, "logprobs", None) is not None:
                            entries = logprobs_from_openai(choice.logprobs.model_dump()) or []
                            logprobs.extend(entries)
                        if content:
                            text += content
                            deltas += 1
                            counts = (int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)) if usage else None
                            yield TextDelta(content, entries, counts)
                        if choice.finish_reason:
                            finish = choice.finish_reason
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                raise EngineError(f"{what} at {self.base_url} failed mid-stream: {type(exc).__name__}: {exc}") from exc
            except openai.APIError as exc:  # an error event the server sent in-band
                raise engine_error(what, self.base_url, exc, attempts=1) from exc
            except Exception as exc:  # the transport's own error (older SDKs do not wrap it)
                raise EngineError(f"{what} at {self.base_url} failed mid-stream: {type(exc).__name__}: {exc}") from exc
            finally:
                await response.close()  # early exit included: the server sees the client go
        if finish is None:
            raise EngineError(f"the stream from {self.base_url}/chat/completions ended without a finish_reason")
        yield Completion(
            text=text,
            finish_reason=finish_reason_from_openai(finish),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            # Without usage (a server ignoring stream_options), one content chunk ~ one token.
            completion_tokens=int(usage.completion_tokens if usage is not None else deltas),
            latency_s=time.perf_counter() - started,
            logprobs=logprobs,
        )

    # ------------------------------------------------------------------ tokenizer (TokenizerAccess)

    async def tokenize(
        self, messages: list[Message], *, add_special_tokens: bool = True, add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The endpoint's own /tokenize (vLLM's, or another qvq-ray app's): this engine has no tokenizer."""
        raw = raw_prompt_text(messages)
        body: dict[str, Any] = {"model": self.model_name, "add_special_tokens": add_special_tokens}
        if raw is not None:
            body["prompt"] = raw
        else:
            body.update(messages=openai_messages(messages), add_generation_prompt=add_generation_prompt)
            if chat_template_kwargs:
                body["chat_template_kwargs"] = chat_template_kwargs
        reply = await self._server_call("POST", "/tokenize", body)
        return {"tokens": list(reply.get("tokens") or []), "max_model_len": int(reply.get("max_model_len") or 0)}

    async def detokenize(self, tokens: list[int]) -> str:
        return str((await self._server_call("POST", "/detokenize", {"model": self.model_name, "tokens": tokens})).get("prompt", ""))

    async def tokenizer_info(self) -> dict[str, Any]:
        return await self._server_call("GET", "/tokenizer_info", None)

    async def _server_call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One call to a route vLLM serves at the server's root (base_url without its /v1)."""
        import httpx

        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        headers = {k: v for k, v in self._auth_headers().items() if isinstance(v, str)}
        timeout = httpx.Timeout(self.engine_config.request_timeout_s, connect=self.engine_config.connect_timeout_s)
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.request(method, root + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EngineError(f"{root}{path} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code in _INVALID_REQUEST_STATUSES:
            raise InvalidRequestError(f"the endpoint rejected the request (HTTP {response.status_code}): {error_message(response.status_code, response.text)}")
        if response.status_code != 200:
            raise EngineError(f"{root}{path} answered HTTP {response.status_code}: {error_message(response.status_code, response.text)}")
        answer: dict[str, Any] = response.json()
        return answer

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        """Counts a request in flight (health reports) however it ends: answered, failed, cancelled."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    @contextlib.asynccontextmanager
    async def _counted_async(self) -> AsyncIterator[None]:
        with self._counted():
            yield

    async def health(self) -> EngineHealth:
        """This client's state (the model runs at the endpoint: `check_health` asks it)."""
        return EngineHealth(alive=not self._closed, running=self._in_flight, reason="engine is closed" if self._closed else None)

    async def check_health(self) -> None:
        """GET {base_url}/models (once, no retries): the endpoint answers and lists our model."""
        import openai

        client, _ = self._client()
        url = f"{self.base_url}/models"
        try:
            page = await client.with_options(max_retries=0, timeout=self.engine_config.connect_timeout_s + 20).models.list(
                extra_headers=self._auth_headers()
            )
            ids = [getattr(m, "id", None) for m in page.data]
        except openai.APIStatusError as exc:
            raise EngineError(f"{url} answered HTTP {exc.status_code}: {_status_text(exc)}") from exc
        except openai.APIConnectionError as exc:
            raise EngineError(f"{url} unreachable: {type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}") from exc
        except Exception:
            return  # answered; a server without a model list is still serving
        if ids and self.model_name not in ids:
            raise EngineError(f"{self.base_url} does not serve model {self.model_name!r}; it lists {ids}")

    async def close(self) -> None:
        self._closed = True
        entries, self._per_loop = list(self._per_loop.values()), {}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for owner, client, _ in entries:
            if owner is loop:
                await client.close()


__all__ = [
    "OpenAIEngine",
    "chat_request_body",
    "completions_from_response",
    "engine_error",
    "image_data_url",
    "openai_messages",
    "split_completion_tokens",
]
